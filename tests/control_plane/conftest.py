"""Two `ambit-ztunnel` processes joined to the fake istiod (tools/fake_istiod): the mesh that
the control-plane scenarios run traffic through.

Node A serves the client workload (127.N.1.2), node B the server workloads (127.N.2.x) whose
applications listen on port 8080 and answer each line with `<name>: <line>`. Listeners of node
A are on 127.N.0.1, node B's on 127.N.0.2 (SOCKS5 15080, metrics 15020, readiness 15021, admin
15000). Each test gets its own N, so sockets of one test never meet another's.
"""

from __future__ import annotations

import itertools
import json
import os
import pathlib
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.common import SocksRefused, socks5_connect, wait_until  # noqa: E402,F401  (re-exported)
from tools.fake_istiod import FakeIstiod  # noqa: E402

TOKEN = "t0k3n-for-tests"
NS = "shop"
_nets = itertools.count(60)


def ztunnel_binary() -> str:
    path = os.environ.get("AMBIT_ZTUNNEL") or str(REPO / "target" / "debug" / "ambit-ztunnel")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} not built: run `cargo build -p ambit-examples --bin ambit-ztunnel` "
                    "(scripts/test does), or set AMBIT_ZTUNNEL")
    return path


def http_get(addr: str, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{addr}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def echo(s: socket.socket, line: str) -> str:
    s.sendall(line.encode() + b"\n")
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf.decode().rstrip("\n")


class App:
    """A line-echo application on `ip:8080` answering `<name>: <line>`."""

    def __init__(self, ip: str, name: str):
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, 8080))
        self.sock.listen(64)
        self.closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c: socket.socket):
        with c:
            f = c.makefile("rwb")
            try:
                for line in f:
                    f.write(f"{self.name}: ".encode() + line)
                    f.flush()
            except OSError:  # the peer reset the connection (a policy closed it)
                return

    def close(self):
        self.closed = True
        self.sock.close()


@dataclass
class Ztunnel:
    node: str
    host: int
    net: int
    env: dict
    proc: subprocess.Popen | None = None
    log: list[str] = field(default_factory=list)

    def addr(self, port: int) -> str:
        return f"127.{self.net}.0.{self.host}:{port}"

    @property
    def socks(self) -> str:
        return self.addr(15080)

    def start(self) -> "Ztunnel":
        args = [ztunnel_binary(), "--node", self.node,
                "--socks5", self.addr(15080), "--metrics", self.addr(15020),
                "--readiness", self.addr(15021), "--admin", self.addr(15000)]
        env = {**os.environ, "RUST_LOG": "info", "NO_COLOR": "1", **self.env}
        self.proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        threading.Thread(target=self._read_log, daemon=True).start()
        return self

    def _read_log(self):
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.rstrip("\n"))

    def ready(self) -> tuple[int, str]:
        return http_get(self.addr(15021), "/healthz/ready")

    def wait_ready(self, timeout: float = 30.0):
        try:
            wait_until(lambda: self.ready()[0] == 200, timeout, f"{self.node} ready")
        except TimeoutError:
            raise AssertionError(f"{self.node} not ready: {self.ready()}\n" + "\n".join(self.log[-30:]))

    def metrics(self) -> str:
        return http_get(self.addr(15020), "/metrics")[1]

    def dump(self) -> dict:
        return json.loads(http_get(self.addr(15000), "/config_dump")[1])

    def logged(self, needle: str) -> bool:
        return any(needle in line for line in self.log)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Mesh:
    """The fake istiod, two ztunnels, and helpers to push and to send traffic."""

    def __init__(self, tmp: pathlib.Path):
        self.net = next(_nets)
        self.tmp = tmp
        self.fake = FakeIstiod(trust_domain="cluster.local", token=TOKEN, cluster_id="Kubernetes")
        self.fake.start()
        self.token_file = self.fake.write_token_file(tmp / "istio-token")
        self.apps: list[App] = []
        self.nodes: dict[str, Ztunnel] = {}

    def ip(self, a: int, b: int) -> str:
        return f"127.{self.net}.{a}.{b}"

    def env(self, node: str, host: int) -> dict:
        return {
            "XDS_ADDRESS": self.fake.address,
            "CA_ADDRESS": self.fake.address,
            "XDS_ROOT_CA": str(self.fake.root_cert_path),
            "CA_ROOT_CA": str(self.fake.root_cert_path),
            "AUTH_TOKEN": str(self.token_file),
            "CLUSTER_ID": "Kubernetes",
            "TRUST_DOMAIN": "cluster.local",
            "POD_NAME": f"ztunnel-{node}",
            "POD_NAMESPACE": "istio-system",
            "INSTANCE_IP": f"127.{self.net}.0.{host}",
            "ISTIO_META_TEST_NET": str(self.net),
        }

    def workload(self, name: str, ip: str, node: str, **extra) -> dict:
        w = {"uid": f"Kubernetes//Pod/{NS}/{name}", "name": name, "namespace": NS,
             "service_account": extra.pop("service_account", name), "addresses": [ip],
             "node": node, "tunnel_protocol": "HBONE"}
        w.update(extra)
        return w

    def push_basic(self):
        """The client on node A and `server-1` on node B, with its application."""
        with self.fake.batch():
            self.fake.put_workload(self.workload("client", self.ip(1, 2), "node-a"))
            self.fake.put_workload(self.workload("server-1", self.ip(2, 2), "node-b",
                                                 service_account="server"))
        self.apps.append(App(self.ip(2, 2), "server-1"))

    def start_nodes(self, **env_overrides) -> tuple[Ztunnel, Ztunnel]:
        for node, host in (("node-a", 1), ("node-b", 2)):
            z = Ztunnel(node, host, self.net, {**self.env(node, host), **env_overrides})
            self.nodes[node] = z.start()
        return self.nodes["node-a"], self.nodes["node-b"]

    def connect(self, dst_ip: str, port: int = 8080) -> socket.socket:
        return socks5_connect(self.nodes["node-a"].socks, self.ip(1, 2), dst_ip, port)

    def close(self):
        for z in self.nodes.values():
            z.stop()
        for a in self.apps:
            a.close()
        self.fake.close()


@pytest.fixture
def mesh(tmp_path):
    m = Mesh(tmp_path)
    try:
        yield m
    finally:
        m.close()
