"""The server glue driven by the client core over a StringTransport: bytes moved until both sides are quiet."""
from fmspy_gateway.rtmp.connection import Connection, Role
from fmspy_gateway.rtmp.events import CommandReceived


def exchange(client: Connection, protocol, transport, byte_by_byte: bool = False) -> list:
    """Move bytes between ``client`` and ``protocol`` (writing to ``transport``) until neither has more.

    Returns every event the client saw, in order.  ``byte_by_byte`` hands the server one byte per read.
    """
    events = []
    while True:
        out = client.data_to_send()
        if out:
            if byte_by_byte:
                for i in range(len(out)):
                    protocol.dataReceived(out[i:i + 1])
            else:
                protocol.dataReceived(out)
        back = transport.value()
        transport.clear()
        if back:
            events.extend(client.receive_data(back))
        if not out and not back:
            return events


def connected(factory, transport, app: str = "echotest"):
    """A protocol of ``factory`` on ``transport``, handshaken and connected to ``app`` by a client core.

    Returns (protocol, client); raises AssertionError when connect is not answered ``_result``.
    """
    protocol = factory.buildProtocol(None)
    protocol.makeConnection(transport)
    client = Connection(Role.CLIENT)
    exchange(client, protocol, transport)
    client.send_command("connect", 1, {"app": app, "tcUrl": f"rtmp://localhost/{app}"})
    answers = [e.name for e in exchange(client, protocol, transport) if isinstance(e, CommandReceived)]
    if answers != ["_result"]:
        raise AssertionError(f"connect to {app} answered {answers}")
    return protocol, client
