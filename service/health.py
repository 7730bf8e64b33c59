"""`/healthz`, `/readyz` and `/metrics` on one small HTTP server thread.

`/metrics` is prometheus_client's own handler (text or OpenMetrics by the Accept
header, gzip, `name[]=` filters); the probes are two plain-text routes beside it.
A failing `/readyz` says why: "not ready", then one reason a line.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from urllib.parse import urlparse

from prometheus_client.exposition import MetricsHandler

from service.metrics import Metrics


def serve(
    port: int, metrics: Metrics, not_ready: Callable[[], list[str]], host: str = "0.0.0.0"
) -> ThreadingHTTPServer:
    """Start serving on `host:port` in a daemon thread; `not_ready` says why AMOS cannot do its work now
    (nothing: ready)."""

    class Handler(MetricsHandler):
        registry = metrics.registry

        def do_GET(self) -> None:
            path = urlparse(self.path).path
            if path == "/healthz":
                self._reply(200, b"ok\n")
            elif path == "/readyz":
                reasons = not_ready()
                body = "".join(f"{line}\n" for line in ["not ready", *reasons]) if reasons else "ok\n"
                self._reply(503 if reasons else 200, body.encode())
            elif path == "/metrics":
                super().do_GET()
            else:
                self._reply(404, b"not found\n")

        def _reply(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="amos-http", daemon=True).start()
    return server
