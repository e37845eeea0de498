"""The bounds every RTMP connection lives within; one frozen object, set from fmspy.cfg."""
from dataclasses import dataclass, field

from .budget import ValueBudget


@dataclass(frozen=True)
class Limits:
    """Per-connection limits; crossing one closes that connection with a logged reason.

    Together they bound the memory a connection can hold, whatever it sends:
    at most ``max_buffered_bytes`` of incomplete messages across at most
    ``max_chunk_streams`` chunk streams, no message above ``max_message_size``.
    """

    #: Largest RTMP message (header length field) accepted, in bytes.
    max_message_size: int = 4 * 1024 * 1024
    #: Largest Set Chunk Size the peer may announce, in bytes.
    max_chunk_size: int = 1024 * 1024
    #: Most chunk streams a connection may have open at once.
    max_chunk_streams: int = 256
    #: Most bytes of incomplete messages buffered across all chunk streams.
    max_buffered_bytes: int = 16 * 1024 * 1024
    #: How far one command or data message's values may expand (``maxValueNodes``, ``maxValueBytes``):
    #: a message past it is refused, the connection stays open.
    value_budget: ValueBudget = field(default_factory=ValueBudget)

    def __post_init__(self):
        for name in ("max_message_size", "max_chunk_size", "max_chunk_streams", "max_buffered_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer")
