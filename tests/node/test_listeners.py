"""Listeners that never die: a node proxy run out of file descriptors keeps its listeners,
counts the failed accepts, and serves again once descriptors are free."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import tempfile
import threading

import pytest

from test_inpod import binary, http_get, run, wait_until
from tests.common import socks5_connect

SOCKS = "127.0.0.1:23080"
METRICS = "127.0.0.1:23020"
READY = "127.0.0.1:23021"
CLIENT_IP = "127.0.0.5"


def socks5(dst: tuple[str, int]) -> socket.socket:
    return socks5_connect(SOCKS, CLIENT_IP, dst[0], dst[1])


def echo_server() -> tuple[str, int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)

    def serve():
        while True:
            c, _ = srv.accept()
            threading.Thread(target=lambda c=c: c.sendall(c.recv(100)), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()


def test_out_of_descriptors_then_serving_again():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="ambit-emfile-"))
    (tmp / "local.yaml").write_text(
        "workloads:\n- {uid: t/c, name: client, namespace: demo, serviceAccount: client, "
        f"workloadIps: [{CLIENT_IP}], node: n}}\n")
    log = tmp / "ztunnel.log"
    proc = subprocess.Popen(
        [binary("ambit-ztunnel"), "--config", str(tmp / "local.yaml"), "--node", "n",
         "--hbone-port", "23008", "--socks5", SOCKS, "--metrics", METRICS, "--readiness", READY,
         "--admin", "off"],
        stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    held: list[socket.socket] = []
    try:
        wait_until(lambda: http_get(f"http://{READY}/healthz/ready")[0] == 200, what="ready")
        dst = echo_server()
        with socks5(dst) as s:
            s.sendall(b"before")
            assert s.recv(100) == b"before"
        in_use = len(os.listdir(f"/proc/{proc.pid}/fd"))
        run("prlimit", "--pid", str(proc.pid), f"--nofile={in_use + 4}:{in_use + 4}")
        for _ in range(24):
            held.append(socket.create_connection(SOCKS.rsplit(":", 1), timeout=5))
        wait_until(lambda: "accept failed" in log.read_text(errors="replace"),
                   what="the proxy to run out of descriptors")
        for s in held:
            s.close()
        held.clear()
        wait_until(lambda: http_get(f"http://{METRICS}/metrics")[0] == 200,
                   timeout=30, what="metrics served again")
        with socks5(dst) as s:
            s.sendall(b"after")
            assert s.recv(100) == b"after", "SOCKS5 serves again"
        metrics = http_get(f"http://{METRICS}/metrics")[1]
        line = next((m for m in metrics.splitlines() if m.startswith(
            'ambit_accept_errors_total{listener="SOCKS5",kind="EMFILE"}')), None)
        assert line is not None and int(line.split()[-1]) >= 1, metrics
        assert proc.poll() is None, "still running"
    finally:
        for s in held:
            s.close()
        proc.kill()
        proc.wait()
    if proc.returncode not in (0, -9):
        pytest.fail(f"exit {proc.returncode}: {log.read_text()}")
