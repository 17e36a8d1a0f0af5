"""Helpers shared by the Python end-to-end suites under tests/."""

from __future__ import annotations

import socket
import struct
import time


def wait_until(predicate, timeout: float = 20.0, what: str = "condition"):
    """Polls `predicate` until it returns something truthy (a condition, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except OSError as e:  # a socket not up yet
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what} (last: {last!r})")


class SocksRefused(Exception):
    """The node proxy refused the SOCKS5 CONNECT; `code` is the reply code."""

    def __init__(self, code: int):
        super().__init__(f"SOCKS5 reply {code}")
        self.code = code


def socks5_connect(proxy: str, src_ip: str, dst_ip: str, port: int,
                   timeout: float = 10.0) -> socket.socket:
    """RFC 1928 CONNECT (no auth, IPv4) from `src_ip` through `proxy` (`ip:port`)."""
    host, pport = proxy.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src_ip, 0))
    s.connect((host, int(pport)))
    s.sendall(b"\x05\x01\x00")
    if s.recv(2) != b"\x05\x00":
        s.close()
        raise SocksRefused(-1)
    s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(dst_ip) + struct.pack(">H", port))
    reply = b""
    while len(reply) < 10:
        chunk = s.recv(10 - len(reply))
        if not chunk:
            break
        reply += chunk
    if len(reply) < 2 or reply[1] != 0:
        s.close()
        raise SocksRefused(reply[1] if len(reply) > 1 else -1)
    return s
