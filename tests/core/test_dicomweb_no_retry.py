"""A DICOMweb node that refuses or is down fails at once, like a DIMSE node.

dicomweb-client retries each request up to 5 times with exponential back-off by default:
a refused port took 30 s to report whatever ``--timeout`` said, and the Query/Retrieve
dialog waited that long. A local HTTP server answering 503 counts the requests.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


def test_a_503_is_asked_once_and_reported_as_refused():
    from medview.errors import MedviewError
    from medview.net import dicomweb
    from medview.net.nodes import Node

    hits: list[str] = []

    class Busy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            hits.append(self.path)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        node = Node(name="busy", url=f"http://127.0.0.1:{server.server_port}/dicom-web")
        with pytest.raises(MedviewError, match="HTTP 503"):
            dicomweb.echo(node, timeout=5)
    finally:
        server.shutdown()
        server.server_close()
    assert len(hits) == 1  # dicomweb-client's own back-off would have asked 5 times
