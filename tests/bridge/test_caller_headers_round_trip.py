"""README, "Who is calling": header values are percent-encoded (UTF-8; "%", control and non-ASCII
characters), so a backend that unquotes them gets back exactly what the client sent, whatever it sent.
"""
from urllib.parse import unquote

from .test_application import GatewayTestCase, result


class CallerHeaderTests(GatewayTestCase):
    def headers_for(self, room):
        self.connected(room=room)
        self.result_of("echo")
        return self.backend.calls_to("echo")[0][1]

    def test_a_percent_sign_is_encoded_so_unquoting_restores_it(self):
        header = self.headers_for("50%41off")["x-rtmp-room"]
        self.assertEqual(header, "50%2541off")
        self.assertEqual(unquote(header), "50%41off")

    def test_control_characters_are_encoded(self):
        header = self.headers_for("a\tb\x7f")["x-rtmp-room"]
        self.assertEqual(header, "a%09b%7F")
        self.assertEqual(unquote(header), "a\tb\x7f")

    def test_a_session_value_that_looks_like_an_escape_survives(self):
        self.backend.answers["session.open"] = result({"accept": True, "session": {"code": "%41"}})
        self.connected("let-me-in")
        self.result_of("echo")
        header = self.backend.calls_to("echo")[0][1]["x-rtmp-session"]
        self.assertEqual(unquote(header), '{"code":"%41"}')
