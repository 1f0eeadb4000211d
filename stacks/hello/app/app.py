#!/usr/bin/env python3
"""hello: fleet's test app (Python standard library only).

  GET /              hello <version>   (HELLO_VERSION, from FLEET_VERSION)
  GET /healthz       200 ok, or 500 unhealthy if /app/UNHEALTHY exists
  GET /secret-check  sha256:<first 16 hex digits of the secret's SHA-256>

The secret (/run/secrets/hello_token, a compose secret) is read once, as
root, before the app drops to an unprivileged user; only its hash is kept,
and it is never printed. `app.py --check` is the container's healthcheck.
"""

import hashlib
import http.server
import os
import pwd
import signal
import sys
import urllib.request

PORT = int(os.environ.get("HELLO_PORT", "8000"))
VERSION = os.environ.get("HELLO_VERSION", "dev")
SECRET_FILE = os.environ.get("HELLO_SECRET_FILE", "/run/secrets/hello_token")
UNHEALTHY = "/app/UNHEALTHY"
RUN_AS = "hello"


def secret_digest():
    try:
        with open(SECRET_FILE, "rb") as f:
            return "sha256:" + hashlib.sha256(f.read()).hexdigest()[:16]
    except OSError as e:
        print(f"hello: cannot read the secret {SECRET_FILE}: {e.strerror}", file=sys.stderr)
        return None


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "hello"
    sys_version = ""
    digest = None

    def reply(self, code, body):
        data = (body + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/":
            self.reply(200, f"hello {VERSION}")
        elif path == "/healthz":
            if os.path.exists(UNHEALTHY):
                self.reply(500, "unhealthy")
            else:
                self.reply(200, "ok")
        elif path == "/secret-check":
            if self.digest is None:
                self.reply(503, "no secret")
            else:
                self.reply(200, self.digest)
        else:
            self.reply(404, "not found")

    do_HEAD = do_GET

    def log_request(self, code="-", size="-"):
        # Passing health checks (every few seconds) are not logged.
        if self.path == "/healthz" and code == 200:
            return
        super().log_request(code, size)

    def log_message(self, fmt, *args):
        # Access log on stderr; requests carry no secret.
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))


def drop_privileges():
    if os.getuid() != 0:
        return
    pw = pwd.getpwnam(RUN_AS)
    os.setgroups([])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)


def check():
    """Exit 0 if /healthz answers 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=3) as r:
            return 0 if r.status == 200 else 1
    except Exception as e:  # HTTPError (500), connection refused, timeout
        print(f"unhealthy: {e}", file=sys.stderr)
        return 1


def main():
    if sys.argv[1:] == ["--check"]:
        return check()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    Handler.digest = secret_digest()
    server = http.server.ThreadingHTTPServer(("", PORT), Handler)
    drop_privileges()
    print(f"hello {VERSION}: listening on :{PORT}", file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
