"""A demo subscriber for compose: logs every notification SamPlan POSTs to it (stdlib only).

    POST http://receiver:9000/notify  -> 200, one JSON log line per notification

Set DEMO_SECRET to the Subscription's signing secret to check X-Hub-Signature-256.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ.get("DEMO_SECRET", "")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        entry: dict[str, object] = {"path": self.path, "bytes": len(body)}
        try:
            bundle = json.loads(body)
            status = bundle["entry"][0]["resource"]["parameter"]
            for p in status:
                if p["name"] in ("type", "subscription", "events-since-subscription-start"):
                    entry[p["name"]] = next(v for k, v in p.items() if k.startswith("value"))
        except (ValueError, KeyError, IndexError, TypeError):
            entry["note"] = "not a notification bundle"
        if SECRET:
            expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            entry["signature_ok"] = hmac.compare_digest(
                expected, self.headers.get("X-Hub-Signature-256", ""))
        sys.stdout.write(json.dumps(entry) + "\n")
        sys.stdout.flush()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        return


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "9000"))), Handler).serve_forever()
