"""The sans-I/O Connection: events for every message type, the replies the protocol requires, errors."""
import pytest

from fmspy_gateway.rtmp import amf
from fmspy_gateway.rtmp.chunks import MediaBatch, Message
from fmspy_gateway.rtmp.connection import Connection, Role, State
from fmspy_gateway.rtmp.errors import LocalProtocolError, RemoteProtocolError
from fmspy_gateway.rtmp.events import (AcknowledgementReceived, ChunkSizeChanged, CommandReceived, DataReceived,
                                       HandshakeCompleted, MediaReceived, MessageAborted, MessageIgnored,
                                       PeerBandwidthSet, SharedObjectReceived,
                                       UserControlReceived, WindowAcknowledgementSizeChanged)
from fmspy_gateway.rtmp.messages import MessageType, UserControl, aggregate
from fmspy_gateway.rtmp.sharedobject import Change, SharedObjectMessage, Use


def pair(digest=True):
    """A client and a server Connection with the handshake done; returns (client, server, server events)."""
    client, server = Connection(Role.CLIENT, digest=digest), Connection(Role.SERVER)
    events = []
    while client.state is not State.OPEN or server.state is not State.OPEN:
        events += server.receive_data(client.data_to_send())
        client.receive_data(server.data_to_send())
    return client, server, events


def deliver(sender, receiver, byte_by_byte=False):
    data = sender.data_to_send()
    if not byte_by_byte:
        return receiver.receive_data(data)
    events = []
    for i in range(len(data)):
        events += receiver.receive_data(data[i:i + 1])
    return events


def test_handshake_event_reports_the_digest_scheme():
    _, _, events = pair()
    assert events == [HandshakeCompleted(digest_scheme=0)]
    _, _, events = pair(digest=False)
    assert events == [HandshakeCompleted(digest_scheme=None)]


def test_client_sees_a_valid_server_digest():
    client, server = Connection(Role.CLIENT), Connection(Role.SERVER)
    server.receive_data(client.data_to_send())
    events = client.receive_data(server.data_to_send())
    assert events == [HandshakeCompleted(server_digest_valid=True)]


def test_bytes_after_c2_reach_the_chunk_layer():
    client, server = Connection(Role.CLIENT), Connection(Role.SERVER)
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    client.send_command("connect", 1, {"app": "x"})
    events = server.receive_data(client.data_to_send())   # C2 and connect in one packet
    assert isinstance(events[0], HandshakeCompleted)
    assert events[1] == CommandReceived(0, "connect", 1, {"app": "x"}, (), False)


@pytest.mark.parametrize("byte_by_byte", [False, True])
@pytest.mark.parametrize("amf3", [False, True])
def test_command_round_trip(amf3, byte_by_byte):
    client, server, _ = pair()
    client.send_command("echo", 2, None, ["a", [1, 2]], amf3=amf3)
    (event,) = deliver(client, server, byte_by_byte)
    assert event == CommandReceived(0, "echo", 2, None, ("a", [1, 2]), amf3)


def test_flex_null_command_name_in_amf3():
    client, server, _ = pair()
    client.send_command(None, 3, None, [amf.ASObject(operation=5)], amf3=True)
    (event,) = deliver(client, server)
    assert event.name is None and event.amf3 and event.transaction_id == 3


@pytest.mark.parametrize("values", [[1, 2], ["x", "not a number"], []])
def test_malformed_commands(values):
    client, server, _ = pair()
    client.send_message(Message(MessageType.COMMAND_AMF0, 0, 0, amf.encode_values(values, amf3=False), 3))
    with pytest.raises(RemoteProtocolError):
        deliver(client, server)
    assert server.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        server.receive_data(b"more")


def test_data_media_and_shared_objects():
    client, server, _ = pair()
    client.send_data(["@setDataFrame", "onMetaData", {"width": 640}], stream_id=1, timestamp=5)
    client.send_media(MessageType.AUDIO, 1, 10, b"\xaf\x01audio")
    client.send_media(MessageType.VIDEO, 1, 12, b"\x17\x01video")
    scores = SharedObjectMessage("scores", 3, False, (Use(), Change((("k", 1),))))
    client.send_shared_object(scores, amf3=True)
    events = deliver(client, server)
    assert events == [
        DataReceived(1, 5, ("@setDataFrame", "onMetaData", {"width": 640}), False),
        MediaReceived(8, 1, 10, b"\xaf\x01audio"),
        MediaReceived(9, 1, 12, b"\x17\x01video"),
        SharedObjectReceived(0, scores, True),
    ]


def test_aggregate_is_split_with_rebased_timestamps():
    client, server, _ = pair()
    body = aggregate([(9, 1, 1000, b"v1"), (8, 1, 1020, b"a1"), (18, 1, 1040, amf.encode_values(["onCuePoint"], amf3=False))])
    client.send_message(Message(MessageType.AGGREGATE, 1, 5000, body, 7))
    events = deliver(client, server)
    assert events == [MediaReceived(9, 1, 5000, b"v1"), MediaReceived(8, 1, 5020, b"a1"),
                      DataReceived(1, 5040, ("onCuePoint",), False)]


def test_bad_aggregate_is_a_protocol_error():
    client, server, _ = pair()
    client.send_message(Message(MessageType.AGGREGATE, 1, 0, b"\x09\x00\x00\x05", 7))
    with pytest.raises(RemoteProtocolError):
        deliver(client, server)


def test_ping_request_is_answered_automatically():
    client, server, _ = pair()
    server.send_user_control(UserControl.PING_REQUEST, 1234)
    (event,) = deliver(server, client)
    assert event == UserControlReceived(UserControl.PING_REQUEST, 1234)
    (answer,) = deliver(client, server)
    assert answer == UserControlReceived(UserControl.PING_RESPONSE, 1234)


def test_stream_events_and_set_buffer_length():
    client, server, _ = pair()
    for event_type in (UserControl.STREAM_BEGIN, UserControl.STREAM_EOF, UserControl.STREAM_DRY,
                       UserControl.STREAM_IS_RECORDED):
        server.send_user_control(event_type, 1)
    client.send_user_control(UserControl.SET_BUFFER_LENGTH, 1, 3000)
    assert [e.event_type for e in deliver(server, client)] == [0, 1, 2, 4]
    assert deliver(client, server) == [UserControlReceived(UserControl.SET_BUFFER_LENGTH, 1, 3000)]


def test_acknowledgements_are_sent_as_the_window_is_crossed():
    # The server asks for an Acknowledgement every 1000 bytes it sends.
    client, server, _ = pair()
    server.set_window_ack_size(1000)
    assert deliver(server, client) == [WindowAcknowledgementSizeChanged(1000)]
    sequence_numbers = []
    for _ in range(6):
        server.send_media(MessageType.VIDEO, 1, 0, b"x" * 400)
        deliver(server, client)
        sequence_numbers += [e.sequence_number for e in deliver(client, server)
                             if isinstance(e, AcknowledgementReceived)]
    assert len(sequence_numbers) == 2
    assert 1000 <= sequence_numbers[0] < 2000 <= sequence_numbers[1]


def test_set_peer_bandwidth_is_answered_with_window_ack_size():
    client, server, _ = pair()
    server.set_peer_bandwidth(2500000, 2)
    assert deliver(server, client) == [PeerBandwidthSet(2500000, 2)]
    assert deliver(client, server) == [WindowAcknowledgementSizeChanged(2500000)]
    server.set_peer_bandwidth(2500000, 2)
    deliver(server, client)
    assert client.data_to_send() == b""     # unchanged: nothing more to say


def test_chunk_size_both_ways_and_abort():
    client, server, _ = pair()
    client.set_chunk_size(4096)
    client.send_media(MessageType.VIDEO, 1, 0, b"v" * 10000)
    events = deliver(client, server)
    assert events[0] == ChunkSizeChanged(4096)
    assert events[1].payload == b"v" * 10000
    client.abort(7)
    assert deliver(client, server) == [MessageAborted(7)]
    assert client.chunk_size == 4096


def test_unknown_message_type_is_reported_not_fatal():
    client, server, _ = pair()
    client.send_message(Message(7, 0, 0, b"?", 3))
    client.send_command("still", 0)
    events = deliver(client, server)
    assert events[0] == MessageIgnored(7, 0, 1)
    assert events[1].name == "still"


def test_sending_before_the_handshake_is_our_bug():
    with pytest.raises(LocalProtocolError):
        Connection(Role.SERVER).send_command("x", 0)


# -- values over the value budget (issue 8, items 1 and 2) ----------------------------------------

def _exponential_tree(depth=22):
    tree = []
    for _ in range(depth):
        tree = [tree, tree]
    return tree


@pytest.mark.parametrize("amf3", [False, True])
def test_a_command_over_the_value_budget_is_refused_and_the_connection_stays_open(amf3):
    from fmspy_gateway.rtmp.events import MessageRefused
    client, server, _ = pair()
    client.send_command("echo", 7, None, [_exponential_tree()], amf3=amf3)
    client.send_command("echo", 8, None, ["fine"], amf3=amf3)
    refused, fine = deliver(client, server)
    assert refused == MessageRefused(
        MessageType.COMMAND_AMF3 if amf3 else MessageType.COMMAND_AMF0, 0, "echo", 7, "maxValueNodes",
        "echo: value expands to more than 100000 nodes (maxValueNodes)", amf3)
    assert server.state is State.OPEN
    assert fine == CommandReceived(0, "echo", 8, None, ("fine",), amf3)


def test_a_string_amplified_data_message_is_refused_by_bytes():
    from fmspy_gateway.rtmp.events import MessageRefused
    client, server, _ = pair()
    client.send_data(["@setDataFrame", "onMetaData", ["x" * 10240] * 50_000], stream_id=1, amf3=True)
    (refused,) = deliver(client, server)
    assert isinstance(refused, MessageRefused)
    assert (refused.type_id, refused.stream_id, refused.name, refused.transaction_id, refused.limit) == (
        MessageType.DATA_AMF3, 1, "@setDataFrame", 0, "maxValueBytes")


def test_a_refused_message_keeps_only_a_cut_name_and_a_numeric_transaction_id():
    from fmspy_gateway.rtmp.events import MessageRefused
    client, server, _ = pair()
    tree = _exponential_tree()
    client.send_message(Message(MessageType.COMMAND_AMF0, 0, 0,
                                amf.encode_values(["n" * 5000, "not a number", None, tree], amf3=False), 3))
    client.send_message(Message(MessageType.COMMAND_AMF0, 0, 0, amf.encode_values([tree], amf3=False), 3))
    first, second = deliver(client, server)
    assert isinstance(first, MessageRefused) and isinstance(second, MessageRefused)
    assert first.name.startswith("n" * 60) and len(first.name) < 100 and first.transaction_id == 0
    assert len(first.reason) < 200
    assert second.name == "" and second.reason.startswith("message: ")


def test_the_value_budget_is_configurable():
    from fmspy_gateway.rtmp.budget import ValueBudget
    from fmspy_gateway.rtmp.events import MessageRefused
    from fmspy_gateway.rtmp.limits import Limits
    client = Connection(Role.CLIENT)
    server = Connection(Role.SERVER, limits=Limits(value_budget=ValueBudget(max_nodes=10 ** 7)))
    while client.state is not State.OPEN or server.state is not State.OPEN:
        server.receive_data(client.data_to_send())
        client.receive_data(server.data_to_send())
    client.send_command("echo", 2, None, [_exponential_tree(18)])     # 2**19 nodes: within 10 million
    client.send_command("echo", 3, None, [["x" * 1000] * 10_000], amf3=True)   # 10 MB of text: over 8 MB
    ok, refused = deliver(client, server)
    assert isinstance(ok, CommandReceived)
    assert isinstance(refused, MessageRefused) and refused.limit == "maxValueBytes"


def test_an_unencodable_command_raises_before_anything_is_queued():
    client, server, _ = pair()
    with pytest.raises(LocalProtocolError, match="empty property name"):
        server.send_command("_result", 2, None, [{"": 0}])
    with pytest.raises(LocalProtocolError, match="AMF0 client"):
        server.send_command("_result", 2, None, [amf.ByteArray(b"x")], switch=False)
    with pytest.raises(LocalProtocolError, match="24-bit length"):
        server.send_command("_result", 2, None, ["x" * 0x1000000])
    assert server.data_to_send() == b""
    server.send_command("_result", 2, None, ["fine"])
    (event,) = deliver(server, client)
    assert event.arguments == ("fine",)


def test_the_connection_remembers_whether_the_peer_wrote_amf3():
    client, server, _ = pair()
    client.send_command("echo", 2, None, ["plain", {"a": 1}])
    deliver(client, server)
    assert not server.peer_sent_amf3
    client.send_command("echo", 3, None, [amf.ByteArray(b"x")])      # an AMF0 command with a 0x11 switch
    deliver(client, server)
    assert server.peer_sent_amf3
    other_client, other, _ = pair()
    other_client.send_command("echo", 2, None, ["plain"], amf3=True)  # an AMF3 message
    deliver(other_client, other)
    assert other.peer_sent_amf3


# -- the live fan-out's MediaBatch (rtmp/chunks.py) --------------------------------------------------------

AUDIO, VIDEO = MessageType.AUDIO, MessageType.VIDEO


def in_step(shared_audio=None, shared_video=None):
    """A client/server pair whose server sent audio at 0, 20 and video at 0, 40, then shares both chunk streams."""
    client, server, _ = pair()
    for t in (0, 20):
        server.send_media(AUDIO, 1, t, b"\xaf\x01" + bytes(30))
    for t in (0, 40):
        server.send_media(VIDEO, 1, t, b"\x27\x01" + bytes(300))
    deliver(server, client)
    shared_audio, _, _ = server.share_media(AUDIO, shared_audio, 20)
    shared_video, _, _ = server.share_media(VIDEO, shared_video, 40)
    return client, server, shared_audio, shared_video


def test_batched_media_is_taken_at_the_write_in_order_with_what_was_queued_meanwhile():
    client, server, shared_audio, shared_video = in_step()
    batch = MediaBatch()
    server.join_batch(batch, "player")
    batch.add(shared_video.next_parts(VIDEO, 80, b"\x27\x01" + bytes(300), {}))
    server.send_command("onStatus", 0, None, [{"code": "between"}], stream_id=1)
    batch.add(shared_audio.next_parts(AUDIO, 60, b"\xaf\x01" + bytes(30), {}))
    events = deliver(server, client)
    assert [(type(e).__name__, getattr(e, "timestamp", None)) for e in events] == [
        ("MediaReceived", 80), ("CommandReceived", None), ("MediaReceived", 60)]
    assert batch.parts == []          # its one member took everything


def test_a_message_of_its_own_on_a_media_chunk_stream_leaves_the_batch_after_what_it_held():
    client, server, shared_audio, shared_video = in_step()
    batch = MediaBatch()
    server.join_batch(batch, "player")
    batch.add(shared_video.next_parts(VIDEO, 80, b"\x27\x01" + bytes(300), {}))
    server.send_media(VIDEO, 9, 500, b"\x17\x01own")        # another stream of this connection
    assert batch.detached == ["player"] and batch.members == set()
    batch.add(shared_video.next_parts(VIDEO, 120, b"\x27\x01" + bytes(300), {}))     # not for it any more
    events = deliver(server, client)
    assert [(e.stream_id, e.timestamp) for e in events] == [(1, 80), (9, 500)]


def test_a_new_chunk_size_leaves_the_batch_after_what_it_held():
    client, server, shared_audio, shared_video = in_step()
    batch = MediaBatch()
    server.join_batch(batch, "player")
    batch.add(shared_audio.next_parts(AUDIO, 60, b"\xaf\x01" + bytes(30), {}))
    server.set_chunk_size(4096)
    assert batch.detached == ["player"]
    events = deliver(server, client)
    assert [type(e).__name__ for e in events] == ["MediaReceived", "ChunkSizeChanged"]


def test_the_batch_keeps_its_parts_until_every_member_took_them_and_hands_back_who_has_to_write():
    first = in_step()
    second = in_step(first[2], first[3])
    assert second[2] is first[2] and second[3] is first[3]       # in step: the same shared states
    batch = MediaBatch()
    first[1].join_batch(batch, "first")
    second[1].join_batch(batch, "second")
    assert batch.add(first[3].next_parts(VIDEO, 80, b"\x27\x01" + bytes(300), {})) == {"first": None, "second": None}
    assert batch.add(first[2].next_parts(AUDIO, 60, b"\xaf\x01" + bytes(30), {})) == {}     # they know already
    assert [e.timestamp for e in deliver(first[1], first[0])] == [80, 60]
    assert len(batch.parts) == 4 and batch.ready == {"first": None}
    assert batch.add(first[3].next_parts(VIDEO, 120, b"\x27\x01" + bytes(300), {})) == {"first": None}
    assert [e.timestamp for e in deliver(second[1], second[0])] == [80, 60, 120]
    assert len(batch.parts) == 6          # kept whole until the first has taken the last one too
    second[1].leave_batch()
    assert [e.timestamp for e in deliver(first[1], first[0])] == [120]
    assert batch.parts == [] and batch.members == {"first"}
