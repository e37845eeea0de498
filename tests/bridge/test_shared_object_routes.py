"""@so.use, @so.change and @so.changed: routes.cfg declarations, and the backend deciding what a client sees.

The routes are read by ``load_routes`` from a real routes.cfg.  The hooks
run the whole way: a real client ``Connection`` sends shared object messages
through a real ``Session`` (tests/bridge/test_application.py's ``Line``) to
the ``GatewayApplication``, whose backend is a JSON-RPC resource on StubTreq
and whose clock is a ``task.Clock``.  So each test proves what the backend
was asked and what the Flash client got back: UseSuccess or
SharedObject.NoReadAccess, Success or SharedObject.NoWriteAccess, and the
Change another listener hears, or does not.
"""
import json
import os
from dataclasses import replace

from fmspy_gateway.app.shared_objects import SharedObjectCode
from fmspy_gateway.bridge.routes import load_routes
from fmspy_gateway.rtmp.events import SharedObjectReceived
from fmspy_gateway.rtmp.amf import Dictionary
from fmspy_gateway.rtmp.sharedobject import (Change, Clear, RequestChange, SharedObjectMessage, Status, Success, Use,
                                             UseSuccess)

from .test_application import (APP_LOGGER, DOWN, GatewayTestCase, Line, no_content, result, rpc_error,
                               temporary_folder)
from .test_routes import one_line_error, settings_for

SO_ROUTES = """
[shop]
@so.use     = board.use
@so.change  = board.change
@so.changed = board.changed
"""

#: A Use of an empty object, answered: UseSuccess, then Clear (and a Change per slot: none here).
SYNCED = (UseSuccess(), Clear())
NO_READ = Status(SharedObjectCode.NO_READ_ACCESS, "error")
NO_WRITE = Status(SharedObjectCode.NO_WRITE_ACCESS, "error")


# -- routes.cfg ------------------------------------------------------------------------------------

def test_the_shared_object_hooks_are_routes(tmp_path):
    routes = load_routes(settings_for(tmp_path, SO_ROUTES + "@connect = session.open\n"))
    assert {name: route.backend_method for name, route in routes.hooks.items()} == {
        "so.use": "board.use", "so.change": "board.change", "so.changed": "board.changed",
        "connect": "session.open"}
    assert routes.route("@so.use") is None       # hooks are not callable by clients


def test_a_misspelt_hook_is_one_line_suggesting_the_right_one(tmp_path):
    error = one_line_error(load_routes, settings_for(tmp_path, "[shop]\n@so.uses = board.use\n"))
    assert "@so.use, @so.change, @so.changed (did you mean so.use?" in str(error), str(error)


def test_a_result_schema_on_the_notification_is_refused(tmp_path):
    (tmp_path / "any.json").write_text("{}")
    error = one_line_error(load_routes, settings_for(tmp_path, "[shop]\n@so.changed = board.changed result=any.json\n"))
    assert "expected no result= on @so.changed: it is a notification, its answer is never read" in str(error)
    # A decision hook may have one: its answer is checked against it.
    assert load_routes(settings_for(tmp_path, "[shop]\n@so.use = board.use result=any.json\n")).hook("so.use")


# -- the hooks, as a client sees them ------------------------------------------------------------

class SharedObjectHookTestCase(GatewayTestCase):
    routes = SO_ROUTES

    def setUp(self):
        super().setUp()
        self.backend.answers.update({"board.use": result(True), "board.change": result(True),
                                     "board.changed": no_content})
        self.connected()

    def other_line(self, address="192.0.2.8:40002"):
        """Another connected client of the application."""
        line = Line(self.app, self.clock, self.network, address)
        line.client.send_command("connect", 1, {"app": "shop/lobby", "tcUrl": "rtmp://h/shop/lobby"}, ())
        line.pump()
        return line

    def send(self, *events, line=None, name="board"):
        """Send one shared object message; the events of each message that came back."""
        line = line or self.line
        line.client.send_shared_object(SharedObjectMessage(name, 0, False, events))
        return [event.message.events for event in line.pump(SharedObjectReceived)]

    def change(self, *events, line=None):
        """What the requester learnt of its changes: (the keys it got Success for, whether it got NoWriteAccess)."""
        (answer,) = self.send(*events, line=line)      # one message per incoming message
        return sorted(e.key for e in answer if isinstance(e, Success)), NO_WRITE in answer

    def use(self, line=None, name="board"):
        """The events of the one message a Use is answered with."""
        (events,) = self.send(Use(), line=line, name=name)
        return events

    def asked(self, method):
        """The params of each request the backend got for ``method``."""
        return [message["params"] for message, _ in self.backend.calls_to(method)]


class UseTests(SharedObjectHookTestCase):
    def test_the_backend_is_asked_with_the_name_persistence_and_caller(self):
        self.assertEqual(self.use(), SYNCED)
        ((subject, context),) = self.asked("board.use")
        self.assertEqual(subject, {"name": "board", "persistent": False})
        self.assertEqual((context["client"], context["application"], context["room"]),
                         (self.session.client.id, "shop", "lobby"))
        (_, headers), = self.backend.calls_to("board.use")
        self.assertEqual(headers["x-rtmp-client-id"], self.session.client.id)

    def test_every_answer_the_documentation_names(self):
        for answer, expected in [(True, SYNCED), (False, (NO_READ,)), ({"access": "allow"}, SYNCED),
                                 ({"access": "read"}, SYNCED), ({"access": "none"}, (NO_READ,))]:
            self.backend.answers["board.use"] = result(answer)
            line = self.other_line()
            self.assertEqual(self.use(line=line), expected, answer)

    def test_read_only_listens_but_its_changes_are_refused_without_asking(self):
        self.backend.answers["board.use"] = result({"access": "read"})
        self.assertEqual(self.use(), SYNCED)
        self.assertEqual(self.change(RequestChange("x", 1)), ([], True))
        self.assertEqual(self.asked("board.change"), [])

    def test_an_unclear_answer_denies_and_is_logged_rate_limited(self):
        answers = ["yes", 1, None, [], {"access": "write"}, {"access": True}, {"accept": True}]
        with self.assertLogs(APP_LOGGER, "WARNING") as logs:
            for answer in answers:
                self.backend.answers["board.use"] = result(answer)
                self.assertEqual(self.use(line=self.other_line()), (NO_READ,), answer)
        (line,) = logs.output
        self.assertIn("@so.use of 'board': the backend answered 'yes', expected true, false or "
                      '{"access": "allow" | "read" | "none"}; refused (fail closed)', line)
        self.assertEqual(self.app.shared_object_log.counts["so.use refused"], len(answers))

    def test_a_json_rpc_error_denies(self):
        self.backend.answers["board.use"] = rpc_error(403, "Not yours")
        with self.assertLogs(APP_LOGGER, "WARNING") as logs:
            self.assertEqual(self.use(), (NO_READ,))
        self.assertIn("the backend answered error 403: Not yours", logs.output[0])

    def test_a_timeout_denies(self):
        self.backend.answers["board.use"] = self.backend.hang
        self.assertEqual(self.send(Use()), [])
        with self.assertLogs(APP_LOGGER, "WARNING") as logs:
            self.clock.advance(5)
            (events,) = [event.message.events for event in self.line.pump(SharedObjectReceived)]
        self.assertEqual(events, (NO_READ,))
        self.assertIn("timed out after 5 s", logs.output[0])

    def test_a_client_that_leaves_cancels_its_question(self):
        self.backend.answers["board.use"] = self.backend.hang
        self.send(Use())
        self.assertEqual(len(self.backend.pending), 1)
        self.session.connection_lost("gone")
        self.line.pump()
        self.assertEqual(len(self.backend.lost), 1)
        self.assertEqual(self.app.rpc.outstanding, 0)

    def test_without_the_route_everyone_may_use(self):
        self.app.routes = self.other_routes("@connect = session.open")
        self.assertEqual(self.use(), SYNCED)
        self.assertEqual(self.asked("board.use"), [])


class UseResultSchemaTests(SharedObjectHookTestCase):
    def test_an_answer_against_the_result_schema_denies(self):
        folder = temporary_folder(self)
        with open(os.path.join(folder, "use.json"), "w") as f:
            json.dump({"type": "object", "required": ["access"]}, f)
        with open(os.path.join(folder, "routes.cfg"), "w") as f:
            f.write("[shop]\n@so.use = board.use result=use.json\n")
        self.app.routes = load_routes(replace(self.settings, routes_file=os.path.join(folder, "routes.cfg")))
        self.backend.answers["board.use"] = result(True)           # fine without the schema; not with it
        with self.assertLogs(APP_LOGGER, "WARNING") as logs:
            self.assertEqual(self.use(), (NO_READ,))
        self.assertIn("invalid answer", logs.output[0])
        self.assertIn("result: True is not of type 'object'", logs.output[0])
        self.backend.answers["board.use"] = result({"access": "allow"})
        self.assertEqual(self.use(line=self.other_line()), SYNCED)


class UseBackendDownTests(SharedObjectHookTestCase):
    routes = SO_ROUTES.replace("= board.use", "= board.use endpoint=" + DOWN)
    options = "fail-open = yes\n"

    def test_an_unreachable_backend_denies_even_with_fail_open(self):
        with self.assertLogs(APP_LOGGER, "WARNING") as logs:
            self.assertEqual(self.use(), (NO_READ,))
        self.assertEqual(self.network.refused, 1)
        self.assertIn("the backend failed (backend http://down.test/rpc refused the connection); refused (fail "
                      "closed)", logs.output[0])


class ChangeTests(SharedObjectHookTestCase):
    def setUp(self):
        super().setUp()
        self.assertEqual(self.use(), SYNCED)
        self.listener = self.other_line()
        self.assertEqual(self.use(line=self.listener), SYNCED)

    def heard(self):
        """The (key, value) of every Change the other listener got since the last look."""
        return [pair for event in self.listener.pump(SharedObjectReceived) for e in event.message.events
                if isinstance(e, Change) for pair in e.pairs]

    def test_the_backend_gets_the_changes_and_deletes_as_null(self):
        self.send(RequestChange("x", 1), RequestChange("y", None))
        ((subject, context),) = self.asked("board.change")
        self.assertEqual(subject, {"name": "board", "changes": {"x": 1, "y": None}})
        self.assertEqual(context["client"], self.session.client.id)

    def test_allowed_refused_and_partly_refused(self):
        self.assertEqual(self.change(RequestChange("x", 1), RequestChange("y", 2)), (["x", "y"], False))
        self.assertEqual(self.heard(), [("x", 1), ("y", 2)])
        self.backend.answers["board.change"] = result(["y", "not-asked-about"])
        self.assertEqual(self.change(RequestChange("x", 3), RequestChange("y", 4)), (["x"], True))
        self.assertEqual(self.heard(), [("x", 3)])
        self.backend.answers["board.change"] = result(False)
        self.assertEqual(self.change(RequestChange("x", 5)), ([], True))
        self.assertEqual(self.heard(), [])
        self.backend.answers["board.change"] = result([])          # none refused
        self.assertEqual(self.change(RequestChange("x", 6)), (["x"], False))

    def test_an_unclear_answer_or_a_failure_refuses_everything(self):
        with self.assertLogs(APP_LOGGER, "WARNING") as logs:
            for answer in (result(["x", 1]), result("x"), result({"refused": ["x"]}), rpc_error(500, "oops")):
                self.backend.answers["board.change"] = answer
                self.assertEqual(self.change(RequestChange("x", 1)), ([], True))
        self.assertEqual(self.heard(), [])
        self.assertIn("@so.change of 'board': the backend answered <list of 2>, expected true, false or a list of "
                      "refused keys; refused (fail closed)", logs.output[0])

    def test_a_value_json_cannot_carry_is_refused_without_asking(self):
        with self.assertLogs(APP_LOGGER, "WARNING") as logs:
            self.assertEqual(self.change(RequestChange("x", Dictionary([((1, 2), "tuple key")]))), ([], True))
        self.assertEqual(self.asked("board.change"), [])
        self.assertIn("the change cannot be sent to the backend", logs.output[0])


class ChangeBackendDownTests(SharedObjectHookTestCase):
    routes = SO_ROUTES.replace("= board.change", "= board.change endpoint=" + DOWN)

    def test_an_unreachable_backend_refuses_the_change(self):
        self.assertEqual(self.use(), SYNCED)
        with self.assertLogs(APP_LOGGER, "WARNING"):
            self.assertEqual(self.change(RequestChange("x", 1)), ([], True))
        self.assertEqual(self.network.refused, 1)
        self.assertEqual(self.app.shared_object("board").data(), {})


class ChangedTests(SharedObjectHookTestCase):
    def test_the_backend_is_told_of_each_change_applied_by_whom(self):
        self.use()
        self.send(RequestChange("x", 1), RequestChange("gone", None))
        ((subject, context),) = self.asked("board.changed")
        self.assertEqual(subject, {"name": "board", "changes": {"x": 1}})    # deleting a missing slot changed nothing
        self.assertEqual(context["client"], self.session.client.id)
        message, headers = self.backend.calls_to("board.changed")[0]
        self.assertNotIn("id", message)                                    # a notification

    def test_a_change_by_the_application_has_no_client(self):
        self.app.shared_object("board").set("x", 2)
        self.line.pump()
        ((subject, context),) = self.asked("board.changed")
        self.assertEqual(subject, {"name": "board", "changes": {"x": 2}})
        self.assertEqual(context, {"client": None, "application": "shop", "room": None, "address": None,
                                   "session": None})
        (_, headers), = self.backend.calls_to("board.changed")
        self.assertEqual(headers["x-rtmp-application"], "shop")
        self.assertNotIn("x-rtmp-client-id", headers)
        self.assertEqual(self.asked("board.change"), [])       # the application's own change is not asked about


class ChangedBackendDownTests(SharedObjectHookTestCase):
    routes = SO_ROUTES.replace("= board.changed", "= board.changed endpoint=" + DOWN)

    def test_failed_notifications_are_logged_rate_limited_and_the_changes_stand(self):
        self.use()
        with self.assertLogs(APP_LOGGER, "WARNING") as logs:
            for value in range(20):
                self.assertEqual(self.change(RequestChange("x", value)), (["x"], False))
        self.assertEqual(self.network.refused, 5)       # then the endpoint's circuit opened (breaker-threshold)
        (line,) = logs.output
        self.assertIn("notification '@so.changed' failed: backend http://down.test/rpc refused the connection", line)
        self.assertEqual(self.app.shared_object_log.counts["@so.changed failed"], 20)
        self.assertEqual(self.app.shared_object("board").data(), {"x": 19})


class ChangeParamsSchemaTests(SharedObjectHookTestCase):
    def test_changes_against_the_params_schema_are_refused_without_asking(self):
        folder = temporary_folder(self)
        with open(os.path.join(folder, "change.json"), "w") as f:
            json.dump({"type": "array", "prefixItems": [{"properties": {"changes": {
                "additionalProperties": {"type": ["integer", "null"]}}}}]}, f)
        with open(os.path.join(folder, "routes.cfg"), "w") as f:
            f.write("[shop]\n@so.change = board.change params=change.json\n")
        self.app.routes = load_routes(replace(self.settings, routes_file=os.path.join(folder, "routes.cfg")))
        self.use()
        with self.assertLogs(APP_LOGGER, "WARNING") as logs:
            self.assertEqual(self.change(RequestChange("x", "not a number")), ([], True))
        self.assertIn("invalid params", logs.output[0])
        self.assertIn("params[0].changes.x: 'not a number' is not of type 'integer', 'null'", logs.output[0])
        self.assertEqual(self.asked("board.change"), [])
        self.assertEqual(self.change(RequestChange("x", 7)), (["x"], False))
        self.assertEqual(len(self.asked("board.change")), 1)
