"""Container logs of the lab, kept in memory and served like a kubelet's `/containerLogs`.

The API server proxies `pods/log` (`kubectl logs`, `--previous`, `--tail`) to the
node's kubelet endpoint; KWOK advertises this server's port on every fake node.
"""

from __future__ import annotations

import ssl
import threading
from collections import deque
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

MAX_LINES = 500


class LogStore:
    """Current and previous log of each container, indexed by pod so forgetting a pod costs nothing at scale."""

    def __init__(self) -> None:
        self._current: dict[tuple[str, str], dict[str, deque[str]]] = {}
        self._previous: dict[tuple[str, str], dict[str, list[str]]] = {}
        self._lock = threading.Lock()

    def start(self, namespace: str, pod: str, container: str, lines: tuple[str, ...]) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        buffer: deque[str] = deque((f"{stamp} {line}" for line in lines), maxlen=MAX_LINES)
        with self._lock:
            self._current.setdefault((namespace, pod), {})[container] = buffer

    def rotate(self, namespace: str, pod: str, container: str) -> None:
        """The container died: its log becomes the `--previous` one."""
        with self._lock:
            current = self._current.get((namespace, pod), {}).pop(container, None)
            self._previous.setdefault((namespace, pod), {})[container] = list(current or ())

    def forget(self, namespace: str, pod: str) -> None:
        with self._lock:
            self._current.pop((namespace, pod), None)
            self._previous.pop((namespace, pod), None)

    def read(self, namespace: str, pod: str, container: str, previous: bool) -> list[str] | None:
        with self._lock:
            found_previous = self._previous.get((namespace, pod), {}).get(container)
            if previous:
                return None if found_previous is None else list(found_previous)
            current = self._current.get((namespace, pod), {}).get(container)
            if current is None:
                return None if found_previous is None else list(found_previous)  # a dead container's last log
            return list(current)


def _handler(store: LogStore) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's naming
            url = urlparse(self.path)
            parts = url.path.strip("/").split("/")
            if len(parts) != 4 or parts[0] != "containerLogs":
                self._reply(404, f"unsupported path {url.path}")
                return
            _, namespace, pod, container = parts
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            previous = query.get("previous") == "true"
            lines = store.read(namespace, pod, container, previous)
            if lines is None:
                which = "previous terminated" if previous else ""
                self._reply(400, f'{which} container "{container}" in pod "{pod}" not found'.strip())
                return
            if "tailLines" in query:
                tail = int(query["tailLines"])
                lines = lines[-tail:] if tail > 0 else []
            if query.get("timestamps") != "true":
                lines = [line.split(" ", 1)[1] if " " in line else line for line in lines]
            body = "".join(f"{line}\n" for line in lines).encode()
            if "limitBytes" in query:
                body = body[: int(query["limitBytes"])]
            self._reply(200, body)

        def _reply(self, code: int, body: str | bytes) -> None:
            data = body.encode() if isinstance(body, str) else body
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # a quiet access log
            return

    return Handler


def serve_logs(store: LogStore, host: str, port: int, cert: str, key: str) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), _handler(store))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="lab-log-server", daemon=True).start()
    return server
