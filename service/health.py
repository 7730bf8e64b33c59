"""`/healthz`, `/readyz` and `/metrics` on one small HTTP server thread.

`/metrics` is prometheus_client's own handler (text or OpenMetrics by the Accept
header, gzip, `name[]=` filters); the probes are two plain-text routes beside it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from urllib.parse import urlparse

from prometheus_client.exposition import MetricsHandler

from service.metrics import Metrics


def serve(port: int, metrics: Metrics, ready: Callable[[], bool], host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Start serving on `host:port` in a daemon thread; `ready` says whether AMOS can do its work now."""

    class Handler(MetricsHandler):
        registry = metrics.registry

        def do_GET(self) -> None:
            path = urlparse(self.path).path
            if path == "/healthz":
                self._reply(200, b"ok\n")
            elif path == "/readyz":
                ok = ready()
                self._reply(200 if ok else 503, b"ok\n" if ok else b"not ready\n")
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
