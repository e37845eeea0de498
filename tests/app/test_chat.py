"""chat's identify/say take text only: str() of a peer's list or object would walk all of it."""
from twisted.trial.unittest import SynchronousTestCase

from fmspy_gateway.app.application import CallError
from fmspy_gateway.app.chat import INVALID, MAX_NAME, ChatApplication
from fmspy_gateway.app.hub import Room


class Client:
    """A client handle in the chat's hub: ``heard`` is what broadcasts to its room sent it."""

    def __init__(self, client_id="c1"):
        self.id = client_id
        self.application_name, self.address = "chat", "192.0.2.1:1"
        self.room = Room("chat", "")
        self.heard = []

    def hear(self, notification):
        self.heard.append((notification.method, *notification.args))
        return True


def shared_tree(depth=16):
    """2**17 nodes as a tree, 17 distinct lists (at depth 60 str() of it would never end)."""
    tree = []
    for _ in range(depth):
        tree = [tree, tree]
    return tree


class ChatTextTests(SynchronousTestCase):
    def setUp(self):
        self.chat = ChatApplication("chat")
        self.client = Client()
        self.chat.hub.join(self.client, self.client.room)

    def test_names_and_lines_are_strings_or_numbers_as_fmspy_had_them(self):
        self.chat.identify(self.client, 42)
        self.chat.say(self.client, 1.5)
        self.assertEqual(self.client.heard, [("message", "<42> is entering chat..."), ("message", "<42>: 1.5")])

    def test_a_container_name_is_refused_without_walking_it(self):
        with self.assertRaises(CallError) as info:
            self.chat.identify(self.client, shared_tree())
        self.assertEqual(info.exception.code, INVALID)
        self.assertIn("must be a string, not a list", info.exception.description)
        self.assertEqual(self.client.heard, [])

    def test_a_container_line_is_refused_without_walking_it(self):
        self.chat.identify(self.client, "ann")
        with self.assertRaises(CallError) as info:
            self.chat.say(self.client, {"a": shared_tree()})
        self.assertEqual(info.exception.code, INVALID)
        self.assertEqual(len(self.client.heard), 1)

    def test_a_name_longer_than_max_name_is_refused(self):
        with self.assertRaises(CallError) as info:
            self.chat.identify(self.client, "n" * (MAX_NAME + 1))
        self.assertEqual(info.exception.code, INVALID)
        self.chat.identify(self.client, "n" * MAX_NAME)
        self.assertEqual(self.client.heard, [("message", f"<{'n' * MAX_NAME}> is entering chat...")])

    def test_a_refused_name_is_logged_once_per_interval_with_the_count(self):
        with self.assertLogs("fmspy_gateway.app.chat", "WARNING") as logged:
            for _ in range(3):
                with self.assertRaises(CallError):
                    self.chat.identify(self.client, "n" * (MAX_NAME + 5))
        self.assertEqual(len(logged.records), 1)
        self.assertIn(f"identify refused, a name of {MAX_NAME + 5} characters (maxNameLength {MAX_NAME})",
                      logged.output[0])
        self.assertIn("192.0.2.1:1", logged.output[0])
        self.assertEqual(self.chat._warnings.counts, {"maxNameLength": 3})


class MaxNameLengthOptionTests(SynchronousTestCase):
    """``[ChatApplication] maxNameLength`` sets the longest name; a bad value is one line at start."""

    def chat(self, tmp_path, text):
        from fmspy_gateway.app.application import Services
        from fmspy_gateway.app.hub import LocalHub
        from fmspy_gateway.config import load_config

        path = tmp_path / "fmspy.cfg"
        path.write_text(f"[RTMP]\n[ChatApplication]\nenabled = yes\nname = chat\n{text}")
        [section] = load_config(str(path)).applications
        return ChatApplication.from_config(section, Services(LocalHub()))

    def test_the_option_sets_the_longest_name(self):
        import pathlib
        import tempfile

        with tempfile.TemporaryDirectory() as directory:
            chat = self.chat(pathlib.Path(directory), "maxNameLength = 3\n")
        client = Client()
        chat.hub.join(client, client.room)
        with self.assertRaises(CallError) as info:
            chat.identify(client, "anne")
        self.assertEqual(info.exception.description, "A name is at most 3 characters")
        chat.identify(client, "ann")
        self.assertEqual(client.heard, [("message", "<ann> is entering chat...")])

    def test_a_bad_value_is_one_line_naming_the_option(self):
        import pathlib
        import tempfile

        from fmspy_gateway.config import ConfigError

        for value in ("0", "-2", "many"):
            with tempfile.TemporaryDirectory() as directory:
                with self.assertRaises(ConfigError) as info:
                    self.chat(pathlib.Path(directory), f"maxNameLength = {value}\n")
            said = str(info.exception)
            self.assertIn(f"maxNameLength = '{value}': expected a positive number of characters", said)
            self.assertNotIn("\n", said)


class PresenceRefusedTests(SynchronousTestCase):
    """A presence update the shared objects refuse (Redis unreachable, a limit) is logged; the chat goes on."""

    def test_a_refused_presence_update_is_logged_and_the_lines_still_said(self):
        from twisted.internet.defer import fail

        from fmspy_gateway.app.shared_objects import SharedObjectRefused

        class RefusingObject:
            def set(self, key, value):
                return fail(SharedObjectRefused("SharedObject.NoWriteAccess", "Redis is unreachable"))

            delete = release = lambda self, *args: fail(SharedObjectRefused("SharedObject.NoWriteAccess", "gone"))

        chat = ChatApplication("chat")
        chat.shared_object = lambda name, persistent=False: RefusingObject()
        client = Client()
        chat.hub.join(client, client.room)
        with self.assertLogs("fmspy_gateway.app.chat", "WARNING") as logged:
            chat.identify(client, "ann")
            chat.say(client, "hi")
            chat.on_room_leave(client.room, client)
        self.assertEqual(client.heard[:2], [("message", "<ann> is entering chat..."), ("message", "<ann>: hi")])
        self.assertEqual(len(logged.output), 1)            # rate-limited: one line for the three refusals
        self.assertIn("presence list not updated: ", logged.output[0])
        self.assertIn("Redis is unreachable", logged.output[0])
        self.assertEqual(self.flushLoggedErrors(), [])


class PresenceHandleTests(SynchronousTestCase):
    """This node holds a room's presence list while it has identified clients there, and lets go with the last."""

    def test_the_handle_goes_with_the_last_identified_client_of_the_room(self):
        chat = ChatApplication("chat")
        ann, bob, cid = Client("ann"), Client("bob"), Client("cid")
        for client in (ann, bob, cid):
            chat.hub.join(client, client.room)
        chat.identify(ann, "ann")
        chat.identify(bob, "bob")
        presence = chat.shared_object("presence")
        chat.on_room_leave(ann.room, ann)
        chat.on_room_leave(cid.room, cid)          # never identified: no say in the presence list
        self.assertIs(chat.shared_object("presence"), presence)
        self.assertEqual(presence.data(), {"bob": "bob"})
        chat.on_room_leave(bob.room, bob)
        # the transient object went with its last listener (this node's handle) ...
        self.assertEqual(self.successResultOf(chat.hub.shared_objects.snapshot("chat", "presence")), None)
        # ... and the next identify starts a new handle on a new, empty list
        self.assertIsNot(chat.shared_object("presence"), presence)
