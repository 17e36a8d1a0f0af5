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
        (`ip:port`). Raises ConnectionRefusedError when policy denies it."""
        proxy = self.nodes[node].socks5_address
        host, port = proxy.rsplit(":", 1)
        s = socket.socket()
        s.settimeout(timeout)
        s.bind((from_ip, 0))
        s.connect((host, int(port)))
        s.sendall(b"\x05\x01\x00")
        if s.recv(2) != b"\x05\x00":
            raise ConnectionError("SOCKS5 greeting refused")
        to_host, to_port = to.rsplit(":", 1)
        s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(to_host) + struct.pack("!H", int(to_port)))
        reply = b""
        while len(reply) < 10:
            chunk = s.recv(10 - len(reply))
            if not chunk:
                break
            reply += chunk
        if len(reply) < 2 or reply[1] != 0:
            s.close()
            raise ConnectionRefusedError(f"SOCKS5 reply {reply[1] if len(reply) > 1 else '?'} for {to}")
        return s

    def close(self) -> None:
        for w in self.waypoints.values():
            w.close()
        self.waypoints.clear()
        for node in self.nodes.values():
            node.close()
        self.nodes.clear()


@pytest.fixture
def mesh():
    m = Mesh()
    try:
        yield m
    finally:
        m.close()
