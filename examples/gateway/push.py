"""Push a broadcast to the clients of a room through the gateway's push API.

    python3 examples/gateway/push.py --token s3cret shop lobby news "Sale starts now"

calls ``news("Sale starts now")`` on every client in room ``lobby`` of
application ``shop`` and prints how many clients it reached.  A client sees it
only while it is connected: ``fmspy-gateway listen rtmp://127.0.0.1/shop/lobby
let-me-in bob`` stays connected and prints every call it gets.  Standard
library only, as a backend in any language would do it.
"""
import argparse
import json
import sys
import urllib.error
import urllib.request


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000/rpc", help="the push API ([HTTP] port)")
    parser.add_argument("--token", required=True, help="[HTTP] push-token")
    parser.add_argument("app", help="the application name, e.g. shop")
    parser.add_argument("room", help='the room, e.g. lobby; "" for the default room')
    parser.add_argument("method", help="what the clients get called, e.g. news")
    parser.add_argument("args", nargs="*", help="its arguments, as strings")
    args = parser.parse_args()
    request = {"jsonrpc": "2.0", "id": 1, "method": "broadcast",
               "params": {"app": args.app, "room": args.room, "method": args.method, "args": args.args}}
    http = urllib.request.Request(args.url, json.dumps(request).encode(), method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {args.token}"})
    try:
        with urllib.request.urlopen(http, timeout=10) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as e:
        return f"error: {args.url} answered HTTP {e.code} {e.reason} (is --token the [HTTP] push-token?)"
    except (urllib.error.URLError, OSError) as e:
        return f"error: cannot reach {args.url}: {getattr(e, 'reason', e)} (is the gateway running?)"
    if "error" in answer:
        return f"error {answer['error'].get('code')}: {answer['error'].get('message')}"
    reached = answer["result"]
    print(f"{args.method} reached {reached} client{'' if reached == 1 else 's'} in {args.app}/{args.room}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
