"""Objects with running tasks: no thread or file-descriptor growth across 100 start/stop cycles
of node proxies, waypoints and HBONE listeners, and objects dropped without close() stop."""

import gc
import os
import socket
import threading
import time

import pytest

import ambit

CONFIG = """
workloads:
- {uid: p/client, name: client, namespace: demo, serviceAccount: client, workloadIps: [127.42.1.2], node: node-a}
- {uid: p/web, name: web, namespace: demo, serviceAccount: web, workloadIps: [127.42.2.2], node: node-b}
- {uid: p/wp, name: waypoint, namespace: demo, serviceAccount: waypoint, workloadIps: [127.42.3.2], node: none}
services:
- {name: web, namespace: demo, hostname: web.demo.svc.cluster.local, vips: ["/127.42.100.1"], ports: {80: 8080},
   waypoint: {destination: "/127.42.3.2"}}
"""

L7 = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - backendRefs: [{name: web, port: 80}]
"""


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def os_threads():
    return len(os.listdir("/proc/self/task"))


def counts():
    gc.collect()
    return open_fds(), os_threads(), threading.active_count()


def assert_no_growth(before, after, what):
    fds, threads, py_threads = (a - b for a, b in zip(after, before))
    assert fds <= 2, f"{what}: fds grew from {before[0]} to {after[0]}"
    assert threads <= 2, f"{what}: OS threads grew from {before[1]} to {after[1]}"
    assert py_threads == 0, f"{what}: Python threads grew from {before[2]} to {after[2]}"


def settle(before, what, deadline=5.0):
    """Counts once closed tasks have let go (a socket closes when its task is next polled)."""
    end = time.monotonic() + deadline
    while True:
        now = counts()
        if all(a - b <= 2 for a, b in zip(now[:2], before[:2])) or time.monotonic() > end:
            return now
        time.sleep(0.05)


@pytest.fixture(scope="module")
def ca():
    return ambit.CertificateAuthority()


def test_node_proxy_cycles(ca):
    with ambit.NodeProxy(CONFIG, "node-b", ca) as warm:
        assert warm.socks5_address
    before = counts()
    for _ in range(100):
        with ambit.NodeProxy(CONFIG, "node-b", ca) as n:
            assert n.socks5_address and n.socks5_address.startswith("127.0.0.1:")
    assert_no_growth(before, settle(before, "node proxy"), "node proxy")
    n.close()  # idempotent
    with pytest.raises(ambit.AmbitError, match="closed"):
        n.metrics()


def test_waypoint_cycles(ca):
    def start():
        return ambit.Waypoint(CONFIG, L7, ca, "127.42.3.2:0", name="waypoint", namespace="demo")

    with start() as warm:
        assert warm.hbone_address
    before = counts()
    for _ in range(100):
        with start() as w:
            assert w.hbone_address and w.hbone_address.startswith("127.42.3.2:")
            assert w.identity == ambit.SpiffeId("spiffe://cluster.local/ns/demo/sa/waypoint")
    assert_no_growth(before, settle(before, "waypoint"), "waypoint")
    with pytest.raises(ambit.AmbitError, match="closed"):
        w.metrics()


def test_hbone_listener_cycles(ca):
    server = ca.issue("spiffe://cluster.local/ns/demo/sa/server")
    client = ca.issue("spiffe://cluster.local/ns/demo/sa/client")
    with ambit.hbone.serve(server) as warm:
        ambit.hbone.connect(client, warm.address, server.id, "10.0.0.1:1").close()
        warm.accept(timeout=5)[0].close()
    before = counts()
    for _ in range(100):
        with ambit.hbone.serve(server) as listener:
            s = ambit.hbone.connect(client, listener.address, server.id, "10.0.0.1:1")
            peer, _, _ = listener.accept(timeout=5)
            s.sendall(b"x")
            assert peer.recv(1) == b"x"
            s.close()
            peer.close()
    assert_no_growth(before, settle(before, "listener"), "HBONE listener")


def refused(address):
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_dropped_without_close_stops(ca):
    n = ambit.NodeProxy(CONFIG, "node-b", ca)
    socks = n.socks5_address
    w = ambit.Waypoint(CONFIG, L7, ca, "127.42.3.2:0", namespace="demo")
    hbone = w.hbone_address
    assert socks and hbone and not refused(socks) and not refused(hbone)
    del n, w
    gc.collect()
    deadline = time.monotonic() + 5
    while not (refused(socks) and refused(hbone)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert refused(socks), "a dropped node proxy stops listening"
    assert refused(hbone), "a dropped waypoint stops listening"
