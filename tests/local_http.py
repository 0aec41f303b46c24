"""A local HTTP server for the fetch tests (no test touches the internet; the ``server`` fixture in conftest.py
runs it): ``ROUTES`` maps a path to (status, content type, body, claimed Content-Length or None); unknown paths
answer 404."""

from __future__ import annotations

import http.server
import threading

ROUTES: dict[str, tuple[int, str, bytes, int | None]] = {}


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        status, content_type, body, claimed = ROUTES.get(self.path, (404, "text/plain", b"not found", None))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(claimed if claimed is not None else len(body)))
        self.end_headers()
        self.wfile.write(body)  # a claimed length above len(body) makes the download come up short

    def log_message(self, *_args: object) -> None:
        pass


def serve() -> tuple[http.server.ThreadingHTTPServer, str]:
    """Start the server on a free local port in a daemon thread; (server, base URL)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
