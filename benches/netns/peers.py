"""Small peers for bench_netns.py, run inside a host's namespace:

- ``echo PORT...``: a single-threaded echo server (selectors) on every given port;
- ``hold HOST PORT N``: opens N connections, sends 1 byte on each and reads its echo, prints
  ``held``, then keeps them open until stdin closes.
"""

from __future__ import annotations

import resource
import selectors
import socket
import sys


def raise_fd_limit(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, n) if hard == resource.RLIM_INFINITY else min(max(soft, n), hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def echo(ports: list[int]) -> None:
    raise_fd_limit(50_000)
    sel = selectors.DefaultSelector()
    for p in ports:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", p))
        s.listen(4096)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, None)
    print("listening", flush=True)
    while True:
        for key, _ in sel.select():
            if key.data is None:
                try:
                    c, _ = key.fileobj.accept()
                except OSError:
                    continue
                c.setblocking(False)
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sel.register(c, selectors.EVENT_READ, "conn")
            else:
                c = key.fileobj
                try:
                    data = c.recv(65536)
                except OSError:
                    data = b""
                if data:
                    try:
                        c.sendall(data)
                    except OSError:
                        pass
                else:
                    sel.unregister(c)
                    c.close()


def hold(host: str, port: int, n: int) -> None:
    raise_fd_limit(n + 100)
    held = []
    for _ in range(n):
        c = socket.create_connection((host, port), timeout=30)
        c.sendall(b"x")
        if c.recv(1) != b"x":
            raise SystemExit("no echo")
        held.append(c)
    print("held", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "echo":
        echo([int(p) for p in sys.argv[2:]])
    elif cmd == "hold":
        hold(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
