"""A webhook receiver for Alertmanager's notifications: a loopback HTTP server in the test."""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookReceiver:
    """Collects Alertmanager webhook notifications (JSON bodies) on a loopback port.

    `failing` names receivers (the `receiver` of the body) answered with HTTP 500 instead of
    200; their notifications are counted in `refused`, not collected."""

    def __init__(self) -> None:
        self.notifications: list[dict] = []
        self.failing: set[str] = set()
        self.refused: Counter[str] = Counter()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with receiver._lock:
                    refuse = body.get("receiver") in receiver.failing
                    if refuse:
                        receiver.refused[body.get("receiver")] += 1
                    else:
                        receiver.notifications.append(body)
                self.send_response(500 if refuse else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def alerts(self, status: str | None = None) -> list[tuple[str, dict]]:
        """(receiver, alert) pairs delivered so far."""
        with self._lock:
            return [(n["receiver"], a) for n in self.notifications for a in n["alerts"]
                    if status is None or a["status"] == status]

    def firing(self, name: str) -> list[tuple[str, dict]]:
        return [(r, a) for r, a in self.alerts("firing") if a["labels"]["alertname"] == name]

    def __enter__(self) -> "WebhookReceiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
