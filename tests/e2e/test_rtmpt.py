"""RTMPT end to end: ffmpeg, rtmpdump and librtmp tunnelled through HTTP, and hostile HTTP beside a bystander.

RTMPT is served on an HTTP site (``rtmpt://``) and, inside TLS, on the RTMPS
port (``rtmpts://``, ffmpeg only: librtmp has no rtmpts).  The hostile tests
run beside a ``Bystander`` (a plain RTMP client calling echo in a loop) whose
calls must all be answered in time and whose server's memory must stay
bounded.
"""
import http.client
import socket

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from fmspy_gateway.config import RTMPConfig, RTMPTConfig
from fmspy_gateway.server.ops import ServerStatus

from .bystander import Bystander
from .tunnels import TunnelServerMixin


class RTMPTClientTests(TunnelServerMixin, TestCase):
    timeout = 60

    def transports_seen(self):
        """The transport names of the server connections made from now on."""
        seen = []
        build = self.factory.buildProtocol

        def tracking(addr):
            protocol = build(addr)
            if protocol is not None:
                seen.append(protocol)
            return protocol
        self.factory.buildProtocol = tracking
        return seen

    @inlineCallbacks
    def test_librtmp_connects_and_echoes_over_rtmpt(self):
        seen = self.transports_seen()
        yield self.librtmp_echo(self.rtmpt_url())
        self.assertEqual([p.transport_name for p in seen], ["rtmpt"])
        # librtmp ends with /close: the session is gone.
        self.assertEqual(self.sessions.sessions, {})

    @inlineCallbacks
    def test_ffmpeg_publishes_and_ffmpeg_and_rtmpdump_play_over_rtmpt(self):
        seen = self.transports_seen()
        publisher = self.publish_ffmpeg(self.rtmpt_url("live/cam"), seconds=5)
        yield self.live_app.live.wait_keyframes("cam", 1)
        yield self.play_with_ffmpeg_and_rtmpdump(self.rtmpt_url("live/cam"), publisher)
        self.assertEqual({p.transport_name for p in seen}, {"rtmpt"})

    @inlineCallbacks
    def test_our_client_calls_echo_over_rtmpt(self):
        from fmspy_gateway.server.client import connect_client
        seen = self.transports_seen()
        with self.assertLogs("fmspy_gateway.app.session", "INFO") as logged:
            client = yield connect_client(self.rtmpt_url(), reactor=reactor)
        answers = []
        for n in range(20):
            answers.append((yield client.call("echo", {"n": n, "text": "x" * (n * 5000)})))
        self.assertEqual([a["n"] for a in answers], list(range(20)))
        self.assertEqual(len(answers[-1]["text"]), 95000)        # answers over several polls
        self.assertEqual([p.transport_name for p in seen], ["rtmpt"])
        # The status API and the log name the transport (issue 13: rtmp, rtmps, rtmpt, rtmpts).
        (session,) = [p.session for p in seen]
        status = ServerStatus(self.factory, self.factory.applications, clock=reactor)
        self.assertEqual(status.describe_client(session.client)["transport"], "rtmpt")
        self.assertEqual(len([line for line in logged.output if "connected to echotest over rtmpt" in line]), 1,
                         logged.output)
        yield client.close()
        self.assertEqual(self.sessions.sessions, {})

    @inlineCallbacks
    def test_ffmpeg_publishes_and_plays_over_rtmpts(self):
        seen = self.transports_seen()
        publisher = self.publish_ffmpeg(self.rtmpts_url("live/cam"), seconds=4)
        yield self.live_app.live.wait_keyframes("cam", 1)
        out = self.path("played.flv")
        player = self.play_ffmpeg(self.rtmpts_url("live/cam"), out, seconds=2)
        yield player.done
        yield publisher.done
        self.assertEqual(publisher.code, 0, publisher.describe())
        self.assertEqual(player.code, 0, player.describe())
        self.check_media((yield self.probe(out)), 1.5, player.describe())
        self.assertEqual({p.transport_name for p in seen}, {"rtmpts"})


def _post(connection, path, body=b"\x00"):
    connection.request("POST", path, body=body, headers={"Content-Type": "application/x-fcs"})
    response = connection.getresponse()
    return response.status, response.read()


class RTMPTHostileTests(TunnelServerMixin, TestCase):
    timeout = 90
    # Abandoned sessions go at the end of the handshake deadline: long enough that none of the flood below
    # expires (making room for more) while the flood still runs, even on a slow or busy machine.
    rtmp_config = RTMPConfig(handshake_timeout=6.0, connect_timeout=2.0)
    rtmpt_config = RTMPTConfig(enabled=True, max_sessions=300, max_sessions_per_address=100,
                               max_pending_bytes=256 * 1024)

    @inlineCallbacks
    def start_bystander(self):
        bystander = Bystander(self.url())
        yield bystander.start()
        return bystander

    @inlineCallbacks
    def test_unknown_session_is_answered_400(self):
        bystander = yield self.start_bystander()

        def run():
            connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
            answers = [_post(connection, f"/{command}/nosuchsession/{seq}")
                       for seq, command in enumerate(["send", "idle", "close"] * 100)]
            connection.close()
            return answers
        answers = yield deferToThread(run)
        self.assertEqual({status for status, _ in answers}, {400})
        self.assertEqual(self.sessions.sessions, {})
        yield bystander.finish(self, min_answered=1)      # a quick attack: what matters is no late answer

    @inlineCallbacks
    def test_thousands_of_abandoned_sessions_are_capped_and_reaped(self):
        bystander = yield self.start_bystander()

        def run(address):
            connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10,
                                                    source_address=(address, 0))
            statuses = [_post(connection, "/open/1")[0] for _ in range(600)]
            connection.close()
            return statuses
        from twisted.internet.defer import gatherResults
        results = yield gatherResults([deferToThread(run, f"127.0.0.{n}") for n in range(2, 7)])
        statuses = [status for result in results for status in result]
        self.assertEqual(len(statuses), 3000)
        self.assertEqual(statuses.count(200), 300)                     # maxSessions
        self.assertEqual(statuses.count(503), 2700)
        self.assertTrue(all(result.count(200) <= 100 for result in results))   # maxSessionsPerAddress
        self.assertEqual(len(self.sessions.sessions), 300)
        # None completes a handshake: all are gone after handshakeTimeout, and so are their connections.
        for _ in range(100):
            if not self.sessions.sessions and len(self.factory.connections) == 1:
                break
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(self.sessions.sessions, {})
        self.assertEqual(self.sessions.per_address, {})
        self.assertEqual(len(self.factory.connections), 1)             # the bystander
        yield bystander.finish(self)

    @inlineCallbacks
    def test_huge_post_is_refused_before_its_body_is_read(self):
        bystander = yield self.start_bystander()

        def run():
            connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
            status, sid = _post(connection, "/open/1")
            assert status == 200, status
            sid = sid.decode().strip()
            sock = socket.create_connection(("127.0.0.1", self.http_port), timeout=10)
            size = 200 * 1024 * 1024
            sock.sendall(f"POST /send/{sid}/0 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-fcs\r\n"
                         f"Content-Length: {size}\r\n\r\n".encode())
            answer = b""
            sent = 0
            try:
                chunk = b"\x03" * 65536
                while sent < size and b"\r\n\r\n" not in answer:
                    sock.sendall(chunk)
                    sent += len(chunk)
                    sock.setblocking(False)
                    try:
                        answer += sock.recv(65536)
                    except BlockingIOError:
                        pass
                    sock.setblocking(True)
            except OSError:
                pass
            sock.settimeout(5)
            try:
                while b"\r\n\r\n" not in answer:
                    data = sock.recv(65536)
                    if not data:
                        break
                    answer += data
            except OSError:
                pass
            sock.close()
            # The session is untouched: it still answers a poll.
            status, polled = _post(connection, f"/idle/{sid}/1")
            connection.close()
            return answer, sent, status, polled
        answer, sent, status, polled = yield deferToThread(run)
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer[:200])
        self.assertLess(sent, 100 * 1024 * 1024)
        self.assertEqual(status, 200)
        yield bystander.finish(self, min_answered=1)

    @inlineCallbacks
    def test_a_huge_post_on_the_rtmps_port_is_refused_naming_its_own_limit(self):
        """The RTMPS port's HTTP (RTMPTS) is bounded by [RTMPT] maxRequestBytes, and says so, not [HTTP]'s."""
        import ssl

        def run():
            context = ssl.create_default_context(cafile=self.cert_path)
            with socket.create_connection(("127.0.0.1", self.tls_port), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as sock:
                    sock.sendall(b"POST /idle/x/0 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-fcs\r\n"
                                 b"Content-Length: %d\r\n\r\n" % (self.rtmpt_config.max_request_bytes + 1))
                    answer = b""
                    while b"}" not in answer:
                        data = sock.recv(65536)
                        if not data:
                            break
                        answer += data
                    return answer
        answer = yield deferToThread(run)
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer[:200])
        self.assertIn(b"larger than %d bytes (maxRequestBytes)" % self.rtmpt_config.max_request_bytes, answer)
        site = self.secure_factory.http_site
        self.assertEqual((site.linger, site.linger_option), (self.rtmp_config.close_linger, "closeLinger"))
        self.assertEqual(site.limit_log.counts, {"maxRequestBytes": 1})

    @inlineCallbacks
    def test_a_session_whose_answers_are_never_polled_is_dropped(self):
        """Echo calls posted with answers never taken: bounded by maxPendingBytes, then the session goes."""
        from fmspy_gateway.rtmp.connection import Connection, Role
        bystander = yield self.start_bystander()

        def run():
            connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
            status, sid = _post(connection, "/open/1")
            sid = sid.decode().strip()
            client = Connection(Role.CLIENT, digest=False)
            replies = bytearray()
            status, body = _post(connection, f"/send/{sid}/0", client.data_to_send())
            replies += body[1:]
            client.receive_data(bytes(replies))
            client.send_command("connect", 1, {"app": "echotest", "tcUrl": self.rtmpt_url()}, [])
            status, body = _post(connection, f"/send/{sid}/1", client.data_to_send())
            statuses = []
            big = "x" * 60000
            for seq in range(2, 200):
                # Each call's answer is 60 KB; each POST takes at most maxResponseBytes (32 KB) of them.
                client.send_command("echo", seq, None, [big])
                status, _ = _post(connection, f"/send/{sid}/{seq}", client.data_to_send())
                statuses.append(status)
                if status != 200:
                    break
            connection.close()
            return statuses
        statuses = yield deferToThread(run)
        self.assertEqual(statuses[-1], 400, statuses)          # the session was dropped, then unknown
        self.assertLess(len(statuses), 40)                     # at about maxPendingBytes (256 KB)
        self.assertEqual(self.sessions.sessions, {})
        yield bystander.finish(self, min_answered=1)
