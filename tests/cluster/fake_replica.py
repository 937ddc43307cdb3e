"""``python -m tests.cluster.fake_replica``: stands in for a replica in the runner's tests.

It serves HTTP on ``HOST``:``PORT`` as a replica does and answers every GET with
``FAKE_STATUS`` (200 unless set). The replica whose ``INSTANCE_ID`` is ``FAKE_EXIT``
exits at once with code 3 instead. SIGTERM ends it.
"""

from __future__ import annotations

import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

EXIT_CODE = 3


class Probe(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(int(os.environ.get("FAKE_STATUS", "200")))
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the runner's tests read nothing from the log."""


def main() -> int:
    if os.environ["INSTANCE_ID"] == os.environ.get("FAKE_EXIT"):
        return EXIT_CODE
    HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Probe).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
