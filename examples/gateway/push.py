"""Push a broadcast to the clients of a room through the gateway's push API.

    python3 examples/gateway/push.py --token s3cret shop lobby message "Sale starts now"
"""
import argparse
import json
import urllib.request


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000/rpc")
    parser.add_argument("--token", required=True)
    parser.add_argument("app")
    parser.add_argument("room", help='"" for the default room')
    parser.add_argument("method")
    parser.add_argument("args", nargs="*")
    args = parser.parse_args()
    request = {"jsonrpc": "2.0", "id": 1, "method": "broadcast",
               "params": {"app": args.app, "room": args.room, "method": args.method, "args": args.args}}
    http = urllib.request.Request(args.url, json.dumps(request).encode(), method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {args.token}"})
    with urllib.request.urlopen(http, timeout=10) as response:
        print(json.loads(response.read()))


if __name__ == "__main__":
    main()
