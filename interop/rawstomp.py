"""A minimal STOMP client over a raw socket, for tests that need to control the bytes.

stomp.py is the client under test in ``test_stomp_py.py``; this helper is for what a
well-behaved library cannot do: malformed input, pipelining, byte-by-byte splits,
clients that never read, and exact checks of what the broker wrote on the wire.

Frames are parsed as STOMP 1.2 defines them (``content-length`` bodies may hold NUL;
EOL is ``\\n`` or ``\\r\\n``; a bare EOL between frames is a heart-beat). Header values
are unescaped only when ``unescape=True`` is asked for; ``Frame.raw_headers`` always
keeps the bytes as they were on the wire.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

HEARTBEAT = "<heart-beat>"


@dataclass
class Frame:
    command: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    raw_headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def __repr__(self) -> str:  # short enough for assertion messages
        body = self.body if len(self.body) <= 200 else self.body[:200] + b"..."
        return f"Frame({self.command!r}, {self.headers!r}, {body!r})"


_UNESCAPE = {b"n": "\n", b"c": ":", b"\\": "\\", b"r": "\r"}


def unescape(raw: bytes) -> str:
    out = []
    i = 0
    while i < len(raw):
        b = raw[i : i + 1]
        if b == b"\\" and i + 1 < len(raw):
            out.append(_UNESCAPE.get(raw[i + 1 : i + 2], "\\" + raw[i + 1 : i + 2].decode("latin-1")))
            i += 2
        else:
            out.append(b.decode("latin-1"))
            i += 1
    return "".join(out).encode("latin-1").decode("utf-8", "replace")


def escape(value: str) -> str:
    """Escapes a header value for STOMP 1.2."""
    return value.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n").replace(":", "\\c")


def encode_frame(command: str, headers=(), body: bytes | str = b"") -> bytes:
    """Encodes a frame. ``headers`` is a dict or a sequence of pairs, written as given
    (no escaping, no content-length unless asked for)."""
    if isinstance(body, str):
        body = body.encode()
    items = headers.items() if isinstance(headers, dict) else headers
    lines = [command] + [f"{k}:{v}" for k, v in items]
    return ("\n".join(lines) + "\n\n").encode() + body + b"\x00"


class Closed(Exception):
    """The broker closed the connection before a whole frame arrived."""


class RawStomp:
    """One raw STOMP connection."""

    def __init__(self, host: str, port: int, timeout: float = 5.0, rcvbuf: int | None = None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before connect, so the window the broker sees is small from the start.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = bytearray()
        self.eof = False
        self.unescape = True

    # -- writing -------------------------------------------------------------------------

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, command: str, headers=(), body: bytes | str = b"") -> None:
        self.send_bytes(encode_frame(command, headers, body))

    def connect(self, version: str | None = "1.2", login: str | None = "guest",
                passcode: str | None = "guest", extra: dict | None = None,
                timeout: float = 5.0) -> Frame:
        headers: dict[str, str] = {}
        if version is not None:
            headers["accept-version"] = version
        headers["host"] = "/"
        if login is not None:
            headers["login"] = login
        if passcode is not None:
            headers["passcode"] = passcode
        headers.update(extra or {})
        self.send_frame("CONNECT", headers)
        f = self.read_frame(timeout)
        assert f is not None and f.command == "CONNECTED", f"expected CONNECTED, got {f!r}"
        return f

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # -- reading -------------------------------------------------------------------------

    def _fill(self, deadline: float) -> bool:
        """Reads more bytes; False at EOF. Raises socket.timeout past the deadline."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out waiting for a frame")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(256 * 1024)
        except ConnectionResetError:
            # The broker closed with our bytes unread (it stopped reading after an
            # error); what it wrote before that has been read already.
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _parse(self) -> Frame | str | None:
        """One item from the front of the buffer, or None if more bytes are needed."""
        buf = self.buf
        if buf[:1] == b"\n":
            del buf[:1]
            return HEARTBEAT
        if buf[:2] == b"\r\n":
            del buf[:2]
            return HEARTBEAT
        end = buf.find(b"\n\n")
        end_crlf = buf.find(b"\r\n\r\n")
        if end < 0 and end_crlf < 0:
            return None
        if end < 0 or (0 <= end_crlf < end):
            head, body_start = bytes(buf[:end_crlf]), end_crlf + 4
        else:
            head, body_start = bytes(buf[:end]), end + 2
        lines = head.replace(b"\r\n", b"\n").split(b"\n")
        command = lines[0].decode("utf-8", "replace")
        raw_headers = []
        headers: dict[str, str] = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            raw_headers.append((k, v))
            if self.unescape and command not in ("CONNECTED",):
                key, val = unescape(k), unescape(v)
            else:
                key, val = k.decode("utf-8", "replace"), v.decode("utf-8", "replace")
            headers.setdefault(key, val)
        if "content-length" in headers:
            n = int(headers["content-length"])
            if len(buf) < body_start + n + 1:
                return None
            body = bytes(buf[body_start : body_start + n])
            assert buf[body_start + n] == 0, "frame body not followed by NUL"
            del buf[: body_start + n + 1]
        else:
            nul = buf.find(b"\x00", body_start)
            if nul < 0:
                return None
            body = bytes(buf[body_start:nul])
            del buf[: nul + 1]
        return Frame(command, headers, body, raw_headers)

    def read_item(self, timeout: float = 5.0) -> Frame | str | None:
        """The next frame or heart-beat; None if the connection closed first."""
        deadline = time.monotonic() + timeout
        while True:
            item = self._parse()
            if item is not None:
                return item
            if not self._fill(deadline):
                return None

    def read_frame(self, timeout: float = 5.0) -> Frame | None:
        """The next frame (heart-beats skipped); None if the connection closed first."""
        deadline = time.monotonic() + timeout
        while True:
            item = self.read_item(max(deadline - time.monotonic(), 0.001))
            if item != HEARTBEAT:
                return item

    def expect(self, command: str, timeout: float = 5.0) -> Frame:
        f = self.read_frame(timeout)
        assert f is not None, f"connection closed while waiting for {command}"
        assert f.command == command, f"expected {command}, got {f!r}"
        return f

    def expect_error_and_close(self, timeout: float = 5.0) -> Frame:
        """Reads an ERROR frame, then expects the broker to close the connection."""
        f = self.expect("ERROR", timeout)
        self.expect_closed(timeout)
        return f

    def expect_closed(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            item = self.read_item(max(deadline - time.monotonic(), 0.001))
            if item is None:
                return
            assert item == HEARTBEAT, f"expected the connection to close, got {item!r}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
