"""Bad networks between an agent and the collector, on loopback, for fault tests.

`TcpProxy` stands between the agents and a real collector port: it forwards (optionally
delaying every chunk of the collector's answers: a slow collector), or blackholes (accepts
connections, reads everything, answers nothing, never closes). `ThrottlingHttpProxy` stands in
front of the collector's OTLP/HTTP receiver and answers a scripted list of status codes (429,
503, with Retry-After) before it forwards requests as they are.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from services.stack.process import free_port

FORWARD, BLACKHOLE = "forward", "blackhole"


class TcpProxy:
    """127.0.0.1:`port` -> `upstream` (host, port), in mode FORWARD or BLACKHOLE."""

    def __init__(self, upstream: tuple[str, int], response_delay_s: float = 0.0) -> None:
        self.upstream = upstream
        self.response_delay_s = response_delay_s
        self.mode = FORWARD
        self.accepted = 0
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._stopping = False
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self.accepted += 1
            self._track(client)
            if self.mode == BLACKHOLE:
                threading.Thread(target=self._swallow, args=(client,), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self._track(upstream)
            threading.Thread(target=self._pump, args=(client, upstream, 0.0), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None),
                             daemon=True).start()

    def _swallow(self, sock: socket.socket) -> None:
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass

    def _pump(self, src: socket.socket, dst: socket.socket, delay_s: float | None) -> None:
        """Copy src -> dst; `delay_s` None means the answer direction (response_delay_s)."""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.mode == BLACKHOLE:
                    continue  # a connection that was open when the blackhole began
                delay = self.response_delay_s if delay_s is None else delay_s
                if delay:
                    time.sleep(delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def drop_connections(self) -> None:
        """Close every connection (as a collector that comes back, or a healed network, does):
        senders reconnect, through whatever mode is set now."""
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self._stopping = True
        self._server.close()
        self.drop_connections()

    def __enter__(self) -> "TcpProxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Throttle:
    """What the throttling proxy answers: per path, the scripted (status, Retry-After) answers
    are used one per request, in order; then requests are forwarded. `seen` records each
    request as (monotonic time, path, status answered or 0 for forwarded)."""

    script: dict[str, list[tuple[int, str]]]
    seen: list[tuple[float, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self, path: str) -> tuple[int, str] | None:
        with self.lock:
            answers = self.script.get(path) or []
            answer = answers.pop(0) if answers else None
            self.seen.append((time.monotonic(), path, answer[0] if answer else 0))
            return answer


class ThrottlingHttpProxy:
    """OTLP/HTTP in front of `upstream` (http://host:port): scripted refusals, then forwarding."""

    def __init__(self, upstream: str, script: dict[str, list[tuple[int, str]]]) -> None:
        self.throttle = Throttle({path: list(answers) for path, answers in script.items()})
        throttle = self.throttle

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                answer = throttle.next(self.path)
                if answer is not None:
                    status, retry_after = answer
                    self.send_response(status)
                    self.send_header("Retry-After", retry_after)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                request = urllib.request.Request(
                    upstream + self.path, data=body, method="POST",
                    headers={k: v for k, v in self.headers.items()
                             if k.lower() in ("content-type", "content-encoding")})
                try:
                    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
                        status, payload = resp.status, resp.read()
                        ctype = resp.headers.get("Content-Type", "application/x-protobuf")
                except urllib.error.HTTPError as exc:
                    status, payload = exc.code, exc.read()
                    ctype = exc.headers.get("Content-Type", "text/plain")
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="throttle", daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "ThrottlingHttpProxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
