"""The chunk layer: a table of (messages, wire bytes) driving both reader and writer,
hypothesis round trips, and every way a peer can break or abuse the chunk stream."""
import pytest
from hypothesis import given, settings, strategies as st

from fmspy_gateway.rtmp.chunks import ChunkReader, ChunkWriter, Message, SharedChunkStream
from fmspy_gateway.rtmp.errors import LimitExceeded, RemoteProtocolError
from fmspy_gateway.rtmp.limits import Limits


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def feed_whole(wire, chunk_size=128, limits=Limits()):
    reader = ChunkReader(limits)
    reader.chunk_size = chunk_size
    return reader.feed(wire), reader


def feed_bytewise(wire, chunk_size=128, limits=Limits()):
    reader = ChunkReader(limits)
    reader.chunk_size = chunk_size
    out = []
    for i in range(len(wire)):
        out.extend(reader.feed(wire[i:i + 1]))
    return out, reader


# (description, chunk size, messages, wire bytes).  Each message is written in
# sequence by one ChunkWriter, so later rows show header compression.
CASES = [
    ("format 0, 1-byte basic header", 128,
     [Message(20, 0, 0, b"abc", 3)],
     h("03 000000 000003 14 00000000") + b"abc"),
    ("2-byte basic header (csid 64..319)", 128,
     [Message(9, 1, 10, b"v", 100)],
     h("00 24 00000a 000001 09 01000000") + b"v"),
    ("3-byte basic header (csid 320..65599)", 128,
     [Message(9, 1, 10, b"v", 65599)],
     h("01 ffff 00000a 000001 09 01000000") + b"v"),
    ("message split into a format 3 continuation", 4,
     [Message(18, 1, 5, b"123456", 4)],
     h("04 000005 000006 12 01000000") + b"1234" + h("c4") + b"56"),
    ("format 1, then 3 while the delta repeats, 2 when it changes", 128,
     [Message(8, 1, 100, b"aa", 6), Message(8, 1, 120, b"bbb", 6),
      Message(8, 1, 140, b"ccc", 6), Message(8, 1, 170, b"ddd", 6), Message(8, 1, 200, b"eee", 6)],
     h("06 000064 000002 08 01000000") + b"aa"
     + h("46 000014 000003 08") + b"bbb"
     + h("c6") + b"ccc"
     + h("86 00001e") + b"ddd"
     + h("c6") + b"eee"),
    ("extended timestamp, repeated on the continuation chunk", 2,
     [Message(9, 1, 0x01000000, b"xyz", 7)],
     h("07 ffffff 000003 09 01000000 01000000") + b"xy" + h("c7 01000000") + b"z"),
    ("extended timestamp delta on format 2", 128,
     [Message(9, 1, 0, b"a", 7), Message(9, 1, 0x01000005, b"b", 7)],
     h("07 000000 000001 09 01000000") + b"a" + h("87 ffffff 01000005") + b"b"),
    ("different stream id forces format 0", 128,
     [Message(20, 0, 0, b"a", 3), Message(20, 1, 0, b"a", 3)],
     h("03 000000 000001 14 00000000") + b"a" + h("03 000000 000001 14 01000000") + b"a"),
    ("empty message", 128,
     [Message(20, 0, 0, b"", 3)],
     h("03 000000 000000 14 00000000")),
]


@pytest.mark.parametrize("name, chunk_size, messages, wire", CASES, ids=[c[0] for c in CASES])
def test_writer_produces_wire_bytes(name, chunk_size, messages, wire):
    writer = ChunkWriter()
    writer.chunk_size = chunk_size
    assert b"".join(writer.write(m) for m in messages) == wire


@pytest.mark.parametrize("feed", [feed_whole, feed_bytewise])
@pytest.mark.parametrize("name, chunk_size, messages, wire", CASES, ids=[c[0] for c in CASES])
def test_reader_reassembles_messages(name, chunk_size, messages, wire, feed):
    got, reader = feed(wire, chunk_size)
    assert got == messages
    assert reader.buffered_bytes == 0


@pytest.mark.parametrize("name, chunk_size, messages, wire", CASES, ids=[c[0] for c in CASES])
def test_reader_keeps_trailing_bytes_unconsumed(name, chunk_size, messages, wire):
    # The start of another chunk (a format 0 header cut short) must wait, not be lost.
    trailing = h("03 000000 0000")
    got, reader = feed_whole(wire + trailing, chunk_size)
    assert got == messages
    assert reader.buffered_bytes == len(trailing)
    # ...and completes once the rest arrives.
    assert reader.feed(h("01 14 00000000") + b"!") == [Message(20, 0, 0, b"!", 3)]


def test_interleaved_messages_on_two_chunk_streams():
    wire = (h("04 000000 000006 09 01000000") + b"AAAA"
            + h("05 000000 000002 08 01000000") + b"BB"
            + h("c4") + b"AA")
    got, _ = feed_whole(wire, chunk_size=4)
    assert got == [Message(8, 1, 0, b"BB", 5), Message(9, 1, 0, b"AAAAAA", 4)]


def test_set_chunk_size_applies_to_the_next_chunk():
    wire = (h("02 000000 000004 01 00000000 00000003")
            + h("03 000000 000004 14 00000000") + b"abc" + h("c3") + b"d")
    got, reader = feed_bytewise(wire)
    assert got[1] == Message(20, 0, 0, b"abcd", 3)
    assert reader.chunk_size == 3


def test_abort_drops_the_partial_message():
    wire = (h("04 000000 000008 09 01000000") + b"AAAA"
            + h("02 000000 000004 02 00000000 00000004")
            + h("04 000000 000002 09 01000000") + b"ok")
    got, reader = feed_whole(wire, chunk_size=4)
    assert [m.type_id for m in got] == [2, 9]
    assert got[1].payload == b"ok"
    assert reader.buffered_bytes == 0


def test_type3_new_message_reuses_last_delta():
    wire = (h("06 000064 000001 08 01000000") + b"a"
            + h("86 00000a") + b"b" + h("c6") + b"c")
    got, _ = feed_whole(wire)
    assert [m.timestamp for m in got] == [100, 110, 120]


def test_timestamp_wraps_modulo_2_32():
    writer, reader = ChunkWriter(), ChunkReader()
    msgs = [Message(9, 1, 0xFFFFFFF0, b"a", 7), Message(9, 1, 0x10, b"b", 7)]
    assert reader.feed(b"".join(writer.write(m) for m in msgs)) == msgs


# -- hostile and malformed input ----------------------------------------------

MALFORMED = [
    ("format 1 first on a chunk stream", h("43 000000 000001 14") + b"a", RemoteProtocolError),
    ("format 3 first on a chunk stream", h("c3") + b"a", RemoteProtocolError),
    ("format 0 in the middle of a message",
     h("03 000000 000100 14 00000000") + b"x" * 128 + h("03 000000 000001 14 00000000") + b"y", RemoteProtocolError),
    ("chunk size zero", h("02 000000 000004 01 00000000 00000000"), RemoteProtocolError),
    ("chunk size with the top bit set", h("02 000000 000004 01 00000000 80000010"), RemoteProtocolError),
    ("short Set Chunk Size", h("02 000000 000002 01 00000000 0001"), RemoteProtocolError),
]


@pytest.mark.parametrize("name, wire, error", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_input_raises_protocol_error(name, wire, error):
    with pytest.raises(error):
        feed_whole(wire)


def test_message_larger_than_limit_is_refused_at_its_header():
    limits = Limits(max_message_size=1000)
    with pytest.raises(LimitExceeded) as e:
        feed_whole(h("04 000000 0003e9 09 01000000"), limits=limits)
    assert e.value.limit == "max_message_size"
    assert "1001" in e.value.reason and "maxMessageSize" in e.value.reason


def test_chunk_size_above_limit_is_refused():
    with pytest.raises(LimitExceeded) as e:
        feed_whole(h("02 000000 000004 01 00000000 00010001"), limits=Limits(max_chunk_size=65536))
    assert e.value.limit == "max_chunk_size"


def test_too_many_chunk_streams_are_refused():
    limits = Limits(max_chunk_streams=10)
    reader = ChunkReader(limits)
    for csid in range(3, 13):
        reader.feed(bytes((csid,)) + h("000000 000001 09 01000000") + b"a")
    with pytest.raises(LimitExceeded) as e:
        reader.feed(h("0d 000000 000001 09 01000000") + b"a")
    assert e.value.limit == "max_chunk_streams"


def test_thousands_of_streams_claiming_16mb_stay_within_buffered_bytes():
    limits = Limits(max_message_size=16 * 1024 * 1024, max_chunk_streams=100000, max_buffered_bytes=64 * 1024)
    reader = ChunkReader(limits)
    reader.chunk_size = 128
    with pytest.raises(LimitExceeded) as e:
        for csid in range(64, 5000):
            reader.feed(h("00") + bytes((csid - 64 if csid < 320 else 0,)) + h("000000 ffffff 09 01000000")
                        + b"z" * 128 if csid < 320 else
                        h("01") + (csid - 64).to_bytes(2, "little") + h("000000 ffffff 09 01000000") + b"z" * 128)
            assert reader.buffered_bytes <= limits.max_buffered_bytes
    assert e.value.limit == "max_buffered_bytes"


# -- property tests -------------------------------------------------------------

chunk_stream_ids = st.one_of(st.integers(2, 63), st.integers(64, 319), st.integers(320, 65599))
messages_strategy = st.lists(
    st.tuples(chunk_stream_ids, st.sampled_from([8, 9, 18, 20]), st.integers(0, 3),
              st.integers(0, 0xFFFFFFFF), st.binary(max_size=700)),
    min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(messages_strategy, st.integers(1, 1000), st.integers(1, 97))
def test_round_trip_any_messages_any_chunk_size(raw, chunk_size, read_size):
    # Timestamps grow per chunk stream (as any sender's do), with jumps beyond 0xFFFFFF.
    clock = {}
    messages = []
    for csid, type_id, stream_id, step, payload in raw:
        ts = (clock.get(csid, 0) + step) & 0xFFFFFFFF
        clock[csid] = ts
        messages.append(Message(type_id, stream_id, ts, payload, csid))
    writer, reader = ChunkWriter(), ChunkReader(Limits(max_chunk_streams=1000))
    writer.chunk_size = reader.chunk_size = chunk_size
    wire = b"".join(writer.write(m) for m in messages)
    got = []
    for i in range(0, len(wire), read_size):
        got.extend(reader.feed(wire[i:i + read_size]))
    assert got == messages
    assert reader.buffered_bytes == 0


def test_shared_bodies_are_cut_once_and_read_back_per_peer():
    payload = bytes(range(256)) * 40
    shared = {}
    peers = [ChunkWriter() for _ in range(3)]
    wires = []
    for n, writer in enumerate(peers):
        writer.chunk_size = 4096
        # Each peer has its own stream id and timestamps; only the first header differs.
        header, body = writer.write_parts(Message(9, n + 1, 1000 * n, payload, 7), shared)
        wires.append(header + body)
    assert len(shared) == 1
    bodies = [w[-len(shared[(7, 4096)]):] for w in wires]
    assert all(b is not None for b in bodies) and bodies[0] == bodies[1] == bodies[2]
    for n, wire in enumerate(wires):
        reader = ChunkReader()
        reader.chunk_size = 4096
        assert reader.feed(wire) == [Message(9, n + 1, 1000 * n, payload, 7)]


def test_extended_timestamps_never_share_bodies():
    shared = {}
    writer = ChunkWriter()
    header, body = writer.write_parts(Message(9, 1, 0x01000000, b"x" * 300, 7), shared)
    assert shared == {}
    reader = ChunkReader()
    assert reader.feed(header + body) == [Message(9, 1, 0x01000000, b"x" * 300, 7)]


def test_writers_sharing_a_chunk_stream_state_get_one_header_their_readers_each_place_on_their_own_time_line():
    """SharedChunkStream: the live fan-out's header, built once, read right by peers that started at other times."""
    video = 9
    writers = [ChunkWriter(), ChunkWriter()]
    readers = [ChunkReader(), ChunkReader()]
    starts = [0, 700]           # the publisher time each peer's 0 stands for
    shared = None
    frames = [(1000 + 40 * n, bytes([n]) * (100 + n % 3)) for n in range(8)]
    for source_ts, payload in frames[:2]:
        for writer, reader, start in zip(writers, readers, starts):
            reader.feed(writer.write(Message(video, 1, source_ts - start, payload, 7)))
    for writer in writers:      # after two messages each (a format 0, then a delta) they are in step
        shared = writer.share(7, shared, frames[1][0])
        assert shared is not None
    bodies = {}
    for source_ts, payload in frames[2:]:
        header, body = shared.next_parts(video, source_ts, payload, bodies)
        for reader, start in zip(readers, starts):
            [got] = reader.feed(header + body)
            assert (got.type_id, got.stream_id, got.timestamp, got.payload) == (video, 1, source_ts - start, payload)
    # The shared state is not a writer's own: its next message of its own starts again with format 0.
    header, _ = writers[0].write_parts(Message(video, 1, 5000, b"own", 7))
    assert header[0] >> 6 == 0
    [got] = readers[0].feed(header + b"own")
    assert got.timestamp == 5000
    assert isinstance(shared, SharedChunkStream)
