"""A template fmspy-gateway application: copy this package and rename it.

The server finds the class through the entry point in setup.cfg and runs it
when fmspy.cfg has an enabled section named after the class:

    [HelloApplication]
    enabled = yes
    name = hello          ; clients connect to rtmp://host/hello[/room]
    greeting = Hello      ; application options arrive as strings in self.options

This class declares no ``Settings``, so its options stay strings and a
misspelt one is not noticed; declaring them (a frozen dataclass of
``fmspy_gateway.config.option`` fields, as ``Settings = ...``) has them parsed
and checked at start, and unknown ones refused (docs/ARCHITECTURE.md,
"Configuration").  ``start()`` / ``stop()`` may be overridden to open and
close what the application needs while the server runs.

Every hook may return a Deferred.  A hook that raises is logged; the client
gets a proper error and the server carries on.
"""
from fmspy_gateway.app.application import (Accept, Application, CallError, ConnectRejected,
                                           ConnectRedirected, remote)


class HelloApplication(Application):
    def __init__(self, name, options=None, hub=None):
        super().__init__(name, options, hub)
        self.greeting = self.options.get("greeting", "Hello")

    # -- connect and disconnect --------------------------------------------------

    def on_connect(self, client, *args):
        """``args`` are the extra arguments of the client's NetConnection.connect(url, ...).

        Return True (or None) to accept, ``Accept(application=value, room=name)``
        to accept with a value for the client or another room, False or
        ``raise ConnectRejected(reason, application=value)`` to refuse, or
        ``raise ConnectRedirected(url)`` to send the client elsewhere.
        """
        if args and args[0] == "let me in":
            return Accept(application={"greeting": self.greeting})
        if args and args[0] == "elsewhere":
            raise ConnectRedirected("rtmp://127.0.0.1/echotest")
        if args:
            raise ConnectRejected("Say 'let me in'.", application={"hint": "let me in"})
        return True

    def on_disconnect(self, client):
        """The client is gone; it has already left its room."""

    # -- rooms -------------------------------------------------------------------------

    def on_room_create(self, room):
        """A named room got its first client (the default room always exists)."""

    def on_room_enter(self, room, client):
        # Everything between clients goes through the hub; its answers are Deferreds (here: how many heard it).
        return self.hub.broadcast(room, "greet", [f"{self.greeting}, {client.id}!"], exclude=client)

    def on_room_leave(self, room, client):
        return self.hub.broadcast(room, "left", [client.id])

    def on_room_destroy(self, room):
        """A named room lost its last client."""

    # -- methods clients call: nc.call("hello", responder, "you") ----------------------

    @remote
    def hello(self, client, who="world"):
        return f"{self.greeting}, {who}!"

    @remote
    def whoIsHere(self, client):
        # The hub answers with a Deferred (the members may be on other nodes); the result is sent when it fires.
        return self.hub.members(client.room).addCallback(lambda members: [other.id for other in members])

    @remote
    def askBack(self, client, question):
        """Calls the client (``nc.client.answer = function(q) {...}``) and returns its answer."""
        return client.call("answer", question, timeout=10)

    @remote
    def forbidden(self, client):
        raise CallError("You may not do that.", "Hello.Error.Forbidden")
