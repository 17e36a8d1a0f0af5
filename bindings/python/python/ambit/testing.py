"""pytest plugin: a `mesh` fixture that starts node proxies (and waypoints) on loopback for a
test.

    def test_reach(mesh):
        mesh.start(config_yaml, nodes=["node-a", "node-b"])
        with mesh.connect("node-a", from_ip="127.0.1.2", to="127.0.2.2:8080") as s:
            ...

    def test_l7(mesh):
        mesh.start(config_yaml, nodes=["node-a", "node-b"], socks_ip="127.0.0.1")
        mesh.start_waypoint(routes_yaml, hbone="127.0.3.2:15008", namespace="demo")
        proxy = mesh.socks5_url("node-a")   # for an HTTP client; connect from the workload's IP
        ...

Everything is stopped when the test ends.
"""

from __future__ import annotations

import socket
import struct

import pytest

import ambit


class Mesh:
    """Node proxies and waypoints sharing one CA, and helpers to connect "as" a workload."""

    def __init__(self) -> None:
        self.ca = ambit.CertificateAuthority("cluster.local")
        self.nodes: dict[str, ambit.NodeProxy] = {}
        self.waypoints: dict[str, ambit.Waypoint] = {}
        self.config = ""

    def start(self, config: str, nodes: list[str], socks_ip: str = "127.0.0.1") -> None:
        """Starts a node proxy per name in `nodes` for `config` (ztunnel local-config YAML)."""
        self.config = config
        for name in nodes:
            self.nodes[name] = ambit.NodeProxy(config, name, self.ca, socks5=f"{socks_ip}:0")

    def start_waypoint(
        self, l7: str, hbone: str, name: str = "waypoint", namespace: str = "default"
    ) -> ambit.Waypoint:
        """Starts the waypoint `namespace/name` on `hbone` (its address in the config, port
        15008) enforcing `l7` (HTTPRoute / AuthorizationPolicy / RequestAuthentication YAML)."""
        w = ambit.Waypoint(self.config, l7, self.ca, hbone, name=name, namespace=namespace)
        self.waypoints[f"{namespace}/{name}"] = w
        return w

    def socks5_url(self, node: str) -> str:
        """`socks5://ip:port` of `node`'s SOCKS5 listener, for HTTP clients' proxy settings."""
        return f"socks5://{self.nodes[node].socks5_address}"

    def reload(self, config: str) -> None:
        self.config = config
        for node in self.nodes.values():
            node.reload(config)
        for w in self.waypoints.values():
            w.reload(config)

    def connect(self, node: str, from_ip: str, to: str, timeout: float = 10.0) -> socket.socket:
        """A connection from workload address `from_ip` through `node`'s SOCKS5 port to `to`
        (`ip:port`). Raises SocksRefused (a ConnectionRefusedError) when policy denies it."""
        to_host, to_port = to.rsplit(":", 1)
        return socks5_connect(self.nodes[node].socks5_address, from_ip, to_host, int(to_port),
                              timeout)

    def close(self) -> None:
        for w in self.waypoints.values():
            w.close()
        self.waypoints.clear()
        for node in self.nodes.values():
            node.close()
        self.nodes.clear()


class SocksRefused(ConnectionRefusedError):
    """The node proxy refused a SOCKS5 CONNECT; `code` is the RFC 1928 reply code (-1: the
    greeting itself was refused)."""

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


@pytest.fixture
def mesh():
    m = Mesh()
    try:
        yield m
    finally:
        m.close()
