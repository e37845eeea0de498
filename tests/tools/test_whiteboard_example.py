"""``examples/whiteboard/whiteboard.py`` as users run it: two terminals drawing on one shared object."""
import os

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from fmspy_gateway.app.chat import ChatApplication

from ..e2e.server import LoopbackServerMixin
from .process import run_tool

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "whiteboard", "whiteboard.py")


class WhiteboardExampleTests(LoopbackServerMixin, TestCase):
    timeout = 60

    def applications(self):
        return {"chat": ChatApplication("chat")}

    @inlineCallbacks
    def open_board(self, name):
        board = run_tool(self, [SCRIPT, self.url("chat/lobby"), "--name", name])
        yield board.said(": clear")       # synced: an empty board
        return board

    @inlineCallbacks
    def test_two_terminals_see_each_others_drawing_and_words(self):
        alice = yield self.open_board("alice")
        bob = yield self.open_board("bob")
        alice.transport.write(b"draw 3 1 #\n")
        yield bob.said("change 3,1")
        yield alice.said("success 3,1")
        self.assertIn("|   #" + " " * 28 + "|", bob.out)    # row 1, column 3
        bob.transport.write(b"say hello alice\n")
        yield alice.said("<bob> hello alice")
        yield bob.said("<bob> hello alice")
        bob.transport.write(b"erase 3 1\n")
        yield alice.said("delete 3,1")
        alice.transport.write(b"quit\n")
        self.assertEqual((yield alice.ended), 0)
