"""The application side of the in-pod tests, run inside a pod's network namespace with
``ip netns exec``:

- ``serve NAME PORT``: a line server on every address (IPv4 and IPv6) that answers each line
  with ``NAME saw PEER-IP: LINE``, so a test sees which source address reached the app;
- ``call HOST PORT LINE``: connects, sends LINE, prints the answer (exit 1 with the error);
- ``session HOST PORT``: one connection for every line of stdin, each answer printed;
- ``probe HOST PORT``: prints ``open`` or ``refused`` (exit 0 either way).
"""

from __future__ import annotations

import socket
import sys
import threading


def serve(name: str, port: int) -> None:
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.listen(64)
    print("listening", flush=True)
    while True:
        c, peer = s.accept()
        threading.Thread(target=answer, args=(name, c, peer[0]), daemon=True).start()


def answer(name: str, c: socket.socket, peer: str) -> None:
    if peer.startswith("::ffff:"):
        peer = peer[len("::ffff:"):]
    with c:
        f = c.makefile("rwb")
        try:
            for line in f:
                f.write(f"{name} saw {peer}: ".encode() + line)
                f.flush()
        except OSError:
            pass


def call(host: str, port: int, line: str) -> int:
    try:
        with socket.create_connection((host, port), timeout=10) as c:
            c.sendall(line.encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = c.recv(4096)
                if not chunk:
                    raise ConnectionError(f"closed after {buf!r}")
                buf += chunk
            print(buf.decode().rstrip("\n"))
            return 0
    except OSError as e:
        print(f"error: {e}")
        return 1


def session(host: str, port: int) -> int:
    """Sends each line of stdin on one connection and prints each answer; ends with the
    connection (printing nothing more)."""
    c = socket.create_connection((host, port), timeout=30)
    f = c.makefile("rwb")
    for line in sys.stdin:
        try:
            f.write(line.encode())
            f.flush()
            answer = f.readline()
        except OSError:
            return 0
        if not answer:
            return 0
        print(answer.decode().rstrip("\n"), flush=True)
    return 0


def probe(host: str, port: int) -> int:
    try:
        with socket.create_connection((host, port), timeout=5):
            print("open")
    except ConnectionRefusedError:
        print("refused")
    return 0


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    elif cmd == "call":
        sys.exit(call(sys.argv[2], int(sys.argv[3]), sys.argv[4]))
    elif cmd == "session":
        sys.exit(session(sys.argv[2], int(sys.argv[3])))
    elif cmd == "probe":
        sys.exit(probe(sys.argv[2], int(sys.argv[3])))
    else:
        sys.exit(f"unknown command {cmd}")
