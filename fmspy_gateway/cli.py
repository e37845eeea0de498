"""``fmspy-gateway``: the command-line tools (the server itself runs under ``twistd -n fmspy-gateway``)."""
import argparse
import sys

from twisted.internet.task import react


def _echotest(reactor, args):
    from .tools.echotest import AMF0, AMF3, echotest
    encodings = {"amf0": (AMF0,), "amf3": (AMF3,), "both": (AMF0, AMF3)}[args.encoding]
    d = echotest(args.url, encodings, reactor=reactor)
    d.addCallback(lambda passed: None if passed else sys.exit(1))
    return d


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
    args = parser.parse_args(argv)

    def run(reactor):
        return args.run(reactor, args)

    react(run)


if __name__ == "__main__":
    main()
