from __future__ import annotations

import contextlib
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.core.management.base import BaseCommand

from integrations.dispatch.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, valid_signature


class Command(BaseCommand):
    help = (
        "A sample channel-app retry endpoint, to watch the retry engine work: prints what it "
        "receives, checks the signature, and fails the first attempts on purpose."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=9000)
        parser.add_argument("--secret", default="", help="the channel's signing secret")
        parser.add_argument(
            "--fail-attempts",
            type=int,
            default=2,
            help="answer 503 to attempts 1..N of each record, 200 after (default 2)",
        )

    def handle(self, *args, port: int, secret: str, fail_attempts: int, **options):
        out = self.stdout

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                timestamp = self.headers.get(TIMESTAMP_HEADER, "")
                signature = self.headers.get(SIGNATURE_HEADER, "")
                # During a rotation the header holds several signatures: any valid one will do.
                valid = bool(secret) and valid_signature(signature, secret, timestamp, body)
                data = json.loads(body)
                record = data["failed_integration"]
                status = 503 if data["attempt"] <= fail_attempts else 200
                if secret and not valid:
                    status = 401
                out.write(
                    f"attempt {data['attempt']} of failed integration {record['pk']} "
                    f"({record['reason_type']}, object {record['object_id']}): "
                    f"signature {'valid' if valid else 'not checked' if not secret else 'INVALID'}"
                    f", answering {status}"
                )
                out.flush()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        out.write(
            f"sample receiver on http://127.0.0.1:{port}/ "
            f"(answers 503 to attempts 1 to {fail_attempts} of each record, then 200)"
        )
        out.flush()
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
