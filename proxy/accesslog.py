"""Access log lines in HELIOS's JSON log format, written in blocks rather than one syscall per request.

The fields are those of helios_site.logs (timestamp, level, component, message, extra, request_id),
so one parser reads the proxy's access log and every other HELIOS log. Lines are buffered and
written at least every flush interval of the worker, in blocks that end on a line boundary and stay
under PIPE_BUF, so that the lines of several workers sharing one pipe never interleave.
"""

from __future__ import annotations

import json
import os
import time

_dumps = json.dumps
PIPE_BUF = 4096
BUFFER_LIMIT = 64 * 1024
COMPONENT = "proxy.access"


class AccessLog:
    """Collects one JSON line per request and writes them to a file descriptor (stdout)."""

    def __init__(self, fd: int = 1, enabled: bool = True) -> None:
        self.fd = fd
        self.enabled = enabled
        self._lines: list[bytes] = []
        self._size = 0
        self._second = -1
        self._prefix = ""
        self._quotes: dict[str, str] = {}

    def _timestamp(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((now - second) * 1000):03d}Z"

    def write(
        self,
        *,
        method: str,
        path: str,
        status: int,
        duration: float,
        upstream: str,
        backend: str,
        attempts: int,
        sent: int,
        client: str,
        request_id: str,
        error: str = "",
    ) -> None:
        """One request's line. Built by hand rather than by json.dumps, which costs five times as
        much: only the path and the error can hold characters that need escaping (the method is an
        HTTP token, the request id and the client address are checked or made here)."""
        if not self.enabled:
            return
        path_json = _dumps(path)
        error_field = f',"error":{_dumps(error)}' if error else ""
        line = (
            f'{{"timestamp":"{self._timestamp(time.time())}","level":"INFO","component":"{COMPONENT}",'
            f'"message":"{method} {path_json[1:-1]} {status}","extra":{{"method":"{method}","path":{path_json},'
            f'"status":{status},"duration_ms":{duration * 1000:.3f},"upstream":{self._quoted(upstream)},'
            f'"backend":{self._quoted(backend)},"attempts":{attempts},"bytes":{sent},"client":"{client}"{error_field}}},'
            f'"request_id":"{request_id}"}}\n'
        ).encode()
        self._lines.append(line)
        self._size += len(line)
        if self._size >= BUFFER_LIMIT:
            self.flush()

    def _quoted(self, text: str) -> str:
        quoted = self._quotes.get(text)
        if quoted is None:
            quoted = _dumps(text)
            if len(self._quotes) < 1024:
                self._quotes[text] = quoted
        return quoted

    def flush(self) -> None:
        lines, self._lines, self._size = self._lines, [], 0
        block: list[bytes] = []
        size = 0
        for line in lines:
            if block and size + len(line) > PIPE_BUF:
                self._write(b"".join(block))
                block, size = [], 0
            block.append(line)
            size += len(line)
        if block:
            self._write(b"".join(block))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                time.sleep(0.001)  # a non-blocking stdout that is full: wait for the reader
                continue
            except OSError:
                return  # stdout gone: the proxy keeps serving without its access log
            view = view[written:]
