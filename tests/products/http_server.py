"""A loopback HTTP server with Range support, serving a folder: remote reads without a network.

It runs in its own process: GDAL holds the GIL while it waits for a response in ``rasterio.open``, so a server thread
in the test process would never answer.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _Handler(BaseHTTPRequestHandler):
    root: Path
    log: str  # a JSON-lines file

    def log_message(self, *args):  # keep test output quiet
        pass

    def _target(self) -> Path | None:
        path = (self.root / self.path.split("?", 1)[0].lstrip("/")).resolve()
        return path if path.is_file() and self.root in path.parents else None

    def do_HEAD(self):
        self._serve(body=False)

    def do_GET(self):
        self._serve(body=True)

    def _serve(self, *, body: bool):
        with open(self.log, "a") as handle:
            handle.write(json.dumps([self.command, self.path, self.headers.get("Range")]) + "\n")
        target = self._target()
        if target is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = target.read_bytes()
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
        if match:
            start = int(match.group(1))
            end = min(int(match.group(2)) if match.group(2) else len(data) - 1, len(data) - 1)
            chunk = data[start:end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            chunk = data
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if body:
            self.wfile.write(chunk)


class RequestLog:
    """The requests the server received: (method, path, Range header) tuples, read from its log file."""

    def __init__(self, path: Path):
        self.path = path

    def __iter__(self):
        if not self.path.exists():
            return iter(())
        return iter([tuple(json.loads(line)) for line in self.path.read_text().splitlines()])


@contextmanager
def serve(folder: Path):
    """Serve ``folder`` on 127.0.0.1 from a child process; yields (base URL, :class:`RequestLog`)."""
    folder = Path(folder).resolve()
    log = folder.parent / f".http-log-{folder.name}-{time.monotonic_ns()}.jsonl"
    process = subprocess.Popen([sys.executable, __file__, str(folder), str(log)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}", RequestLog(log)
    finally:
        process.terminate()
        process.wait(timeout=10)


def _main(folder: str, log: str):
    handler = type("Handler", (_Handler,), {"root": Path(folder), "log": log})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])
