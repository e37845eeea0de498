"""A small, real JSON-RPC 2.0 backend for the gateway walkthrough (standard library only).

    python3 examples/gateway/backend.py --port 8080

Methods the routes in routes.cfg reach:
  users.get(id)             a user record: a typed object (_explicitType) with a date
  cart.add(item, qty)       adds to the caller's cart, returns it
  math.divide(a, b)         b == 0 gives a JSON-RPC error
  whoami()                  what the gateway told us about the caller (headers)
  slow(seconds)             answers late, to see the gateway's timeout
  session.open(params, args)   the @connect hook: needs args[0] == "let-me-in"
  session.close / room.enter / room.leave   notifications, recorded
  so.use(subject, context)  the @so.use hook: "private.*" objects are refused, "readonly.*" are read-only
  so.change(subject, context)  the @so.change hook: slots named "locked.*" are refused
  so.changed                a notification, recorded
  events()                  the notifications recorded so far
"""
import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

TOKEN = "let-me-in"
carts = {}
events = []
lock = threading.Lock()


class RPCError(Exception):
    def __init__(self, code, message, data=None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def users_get(ctx, user_id):
    if not isinstance(user_id, int):
        raise RPCError(-32602, "id must be an integer")
    return {"_explicitType": "com.example.User", "id": user_id, "name": f"user {user_id}",
            "created": "2009-02-13T23:31:30.123Z", "avatar": "iVBORw0KGgo="}


def cart_add(ctx, item, qty=1):
    with lock:
        cart = carts.setdefault(ctx["client"], {})
        cart[item] = cart.get(item, 0) + qty
        return dict(cart)


def math_divide(ctx, a, b):
    if b == 0:
        raise RPCError(1001, "division by zero", {"a": a})
    return a / b


def whoami(ctx):
    return ctx


def slow(ctx, seconds):
    time.sleep(min(float(seconds), 10))
    return "finally"


def session_open(ctx, params, args):
    if args and args[0] == TOKEN:
        user = args[1] if len(args) > 1 else "guest"
        return {"accept": True, "session": {"user": user}, "application": {"welcome": f"Hello, {user}"}}
    return {"accept": False, "reason": "A valid token is required."}


def so_use(ctx, subject, context):
    if subject["name"].startswith("private."):
        return False
    return {"access": "read"} if subject["name"].startswith("readonly.") else True


def so_change(ctx, subject, context):
    return [key for key in subject["changes"] if key.startswith("locked.")]


def record(name):
    def notification(ctx, *params):
        with lock:
            events.append({"event": name, "client": ctx["client"], "params": list(params)})
    return notification


def list_events(ctx):
    with lock:
        return list(events)


METHODS = {
    "users.get": users_get, "cart.add": cart_add, "math.divide": math_divide, "whoami": whoami,
    "slow": slow, "session.open": session_open, "session.close": record("session.close"),
    "room.enter": record("room.enter"), "room.leave": record("room.leave"), "events": list_events,
    "so.use": so_use, "so.change": so_change, "so.changed": record("so.changed"),
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            request = json.loads(body)
        except ValueError:
            return self.reply({"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None})
        # The gateway percent-encodes these headers (UTF-8): unquote them.
        header = lambda name: unquote(self.headers.get(name) or "")
        ctx = {"client": header("X-RTMP-Client-Id"), "application": header("X-RTMP-Application"),
               "room": header("X-RTMP-Room"), "address": header("X-RTMP-Client-Address"),
               "session": json.loads(header("X-RTMP-Session") or "null")}
        method = METHODS.get(request.get("method"))
        try:
            if method is None:
                raise RPCError(-32601, f"Method not found: {request.get('method')}")
            result = method(ctx, *request.get("params", []))
            answer = {"jsonrpc": "2.0", "result": result, "id": request.get("id")}
        except RPCError as e:
            answer = {"jsonrpc": "2.0", "error": {"code": e.code, "message": e.message, "data": e.data},
                      "id": request.get("id")}
        except TypeError as e:
            answer = {"jsonrpc": "2.0", "error": {"code": -32602, "message": str(e)}, "id": request.get("id")}
        if "id" not in request:
            return self.reply(None)      # a notification: no answer body
        self.reply(answer)

    def reply(self, answer):
        payload = b"" if answer is None else json.dumps(answer).encode()
        self.send_response(200 if payload else 204)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--interface", default="127.0.0.1")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.interface, args.port), Handler)
    print(f"backend listening on {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
