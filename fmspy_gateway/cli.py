"""``fmspy-gateway``: the command-line tools (the server itself runs under ``twistd -n fmspy-gateway``)."""
import argparse
import sys

from twisted.internet.defer import succeed
from twisted.internet.task import react


def _one_line(url):
    """An errback: a server that is down, a wrong URL or application is one line and status 1.

    ``react`` would print "main function encountered error" and a traceback;
    only failures that are not about reaching the server (our bugs) keep it.
    """
    def errback(failure):
        from twisted.internet.error import ConnectError, ConnectionDone, ConnectionLost
        from .app.calls import CallFailed
        from .tools.failures import explain
        if failure.check(ConnectError, ConnectionDone, ConnectionLost, CallFailed, ValueError) is None:
            return failure
        print(f"error: {explain(url, failure)}", file=sys.stderr, flush=True)
        raise SystemExit(1)
    return errback


def _echotest(reactor, args):
    from .tools.echotest import AMF0, AMF3, echotest
    encodings = {"amf0": (AMF0,), "amf3": (AMF3,), "both": (AMF0, AMF3)}[args.encoding]
    d = echotest(args.url, encodings, reactor=reactor)
    d.addCallbacks(lambda passed: None if passed else sys.exit(1), _one_line(args.url))
    return d


def _chat(reactor, args):
    from .tools.chat import chat
    d = chat(args.url, args.name, reactor=reactor)
    d.addCallback(lambda status: sys.exit(status) if status else None)
    return d


def _listen(reactor, args):
    from .tools.listen import listen
    d = listen(args.url, args.connect_args, reactor=reactor)
    d.addCallbacks(lambda status: sys.exit(status) if status else None, _one_line(args.url))
    return d


def _drain(reactor, args):
    import os
    from .tools.drain import TOKEN_VARIABLE, DrainFailed, describe, drain
    token = os.environ.get(TOKEN_VARIABLE)
    if not token:
        print(f"error: set {TOKEN_VARIABLE} to the node's [HTTP] push-token", file=sys.stderr, flush=True)
        raise SystemExit(1)
    try:
        print(describe(drain(args.url, token, args.grace, args.target)), flush=True)
    except DrainFailed as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(1)
    return succeed(None)     # a plain HTTP request: nothing for the reactor to wait on


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fmspy-gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    echo = commands.add_parser("echotest", help="check that every AMF type survives a round trip through echo")
    echo.add_argument("url", help="rtmp://host[:port]/echotest")
    group = echo.add_mutually_exclusive_group()
    group.add_argument("--amf0", dest="encoding", action="store_const", const="amf0", help="AMF0 only")
    group.add_argument("--amf3", dest="encoding", action="store_const", const="amf3", help="AMF3 only")
    group.add_argument("--both", dest="encoding", action="store_const", const="both", help="both (default)")
    echo.set_defaults(encoding="both", run=_echotest)
    talk = commands.add_parser("chat", help="talk in a room of the chat application from the terminal",
                               description="Lines you type are said to the room; what the room says is "
                                           "printed. Ctrl+D or /quit leaves.")
    talk.add_argument("url", help="rtmp://host[:port]/chat[/room]")
    talk.add_argument("--name", required=True, help="the name the others see")
    talk.set_defaults(run=_chat)
    hear = commands.add_parser("listen", help="stay connected and print every call the server makes",
                               description="Connects (with the connect arguments given), answers every call "
                                           "the server makes with null and prints it as name(args as JSON), "
                                           "one line each: a client to see a push API broadcast or call "
                                           "arrive. Ctrl+C leaves.")
    hear.add_argument("url", help="rtmp://host[:port]/application[/room]")
    hear.add_argument("connect_args", nargs="*", metavar="ARG",
                      help="connect arguments, as strings (NetConnection.connect(url, ARG...))")
    hear.set_defaults(run=_listen)
    move = commands.add_parser("drain", help="make a running node stop accepting connections and move its clients",
                               description="Calls the node's push API (method drain): it stops accepting "
                                           "connections, asks clients that declared Enhanced RTMP's Reconnect "
                                           "to reconnect (to --target; without one, another live node of the "
                                           "cluster, or else the URL they used) and closes every "
                                           "connection still open after the grace period. The push token is "
                                           "read from FMSPY_PUSH_TOKEN.")
    move.add_argument("url", help="the node's HTTP address, http://host:port ([HTTP] port)")
    move.add_argument("--grace", type=float, help="seconds before the rest are closed (default: [Cluster] drainGrace)")
    move.add_argument("--target", help="rtmp://host:port of the node the clients should move to")
    move.set_defaults(run=_drain)
    args = parser.parse_args(argv)

    def run(reactor):
        return args.run(reactor, args)

    react(run)


if __name__ == "__main__":
    main()
