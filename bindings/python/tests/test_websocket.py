"""WebSocket through the waypoint, with the `websockets` library (an independent RFC 6455
client and server) at both ends: the client's connection goes through node A's SOCKS5 port,
HBONE to the waypoint, which authorizes and routes the HTTP/1.1 upgrade, HBONE on to node B
and the server; after `101 Switching Protocols` the waypoint joins the two connections."""

import threading
import time

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect
from websockets.sync.server import serve as ws_serve

from ambit.testing import Mesh

NET = 47
CLIENT_IP = f"127.{NET}.1.2"
METER_IP = f"127.{NET}.1.3"  # a client of its own, so its metrics series is this test's alone
CHAT = f"127.{NET}.100.1:80"

CONFIG = f"""
workloads:
- {{uid: t/client, name: client, namespace: demo, serviceAccount: client, workloadIps: [{CLIENT_IP}], node: node-a}}
- {{uid: t/meter, name: meter, namespace: demo, serviceAccount: meter, workloadIps: [{METER_IP}], node: node-a}}
- {{uid: t/chat, name: chat, namespace: demo, serviceAccount: chat, workloadIps: [127.{NET}.2.2], node: node-b,
   services: {{"demo/chat.demo.svc.cluster.local": {{80: 8080}}}}}}
- {{uid: t/wp, name: waypoint, namespace: demo, serviceAccount: waypoint, workloadIps: [127.{NET}.3.2], node: none}}
services:
- {{name: chat, namespace: demo, hostname: chat.demo.svc.cluster.local, vips: ["/127.{NET}.100.1"],
   ports: {{80: 8080}}, waypoint: {{destination: "/127.{NET}.3.2"}}}}
"""

L7 = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: chat, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: chat, port: 80}]
  rules:
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-routed, value: "yes"}]}
    backendRefs: [{name: chat, port: 80}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: demo}
spec:
  targetRefs: [{kind: Service, group: "", name: chat}]
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
"""


def echo(ws):
    """Greets with what the server saw of the upgrade request, then echoes every message."""
    req = ws.request
    ws.send(f"path={req.path} x-routed={req.headers.get('x-routed')} peer-ip={ws.remote_address[0]}")
    for message in ws:
        ws.send(message)


@pytest.fixture(scope="module")
def mesh():
    server = ws_serve(echo, f"127.{NET}.2.2", 8080, max_size=None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    m = Mesh()
    m.start(CONFIG, nodes=["node-a", "node-b"], socks_ip=f"127.{NET}.0.1")
    w = m.start_waypoint(L7, f"127.{NET}.3.2:15008", namespace="demo")
    assert w.warnings == []
    yield m
    m.close()
    server.shutdown()


def open_ws(mesh, path, source=CLIENT_IP):
    sock = mesh.connect("node-a", source, CHAT)
    return ws_connect(
        f"ws://chat.demo.svc.cluster.local{path}", sock=sock, max_size=None, open_timeout=20, compression=None
    )


def test_messages_cross_the_waypoint_in_order(mesh):
    with open_ws(mesh, "/room/1?user=a") as ws:
        greeting = ws.recv(timeout=20)
        assert greeting.startswith("path=/room/1?user=a x-routed=yes "), greeting
        sent = []
        for i in range(200):
            m = f"text {i} " + "é" * i if i % 2 == 0 else bytes((i * j) % 256 for j in range(i * 331))
            ws.send(m)
            sent.append(m)
        big = bytes(range(256)) * 4096  # 1 MiB in one message: many HBONE frames
        ws.send(big)
        sent.append(big)
        got = [ws.recv(timeout=20) for _ in sent]
        assert got == sent
        ws.close()
    assert ws.close_code == 1000


def test_denied_upgrade_is_a_plain_403(mesh):
    with pytest.raises(InvalidStatus) as e:
        open_ws(mesh, "/admin/console")
    assert e.value.response.status_code == 403
    assert b"RBAC: access denied" in e.value.response.body


def bytes_sum(metrics, name, source):
    """The `<name>_sum` of the 101 series from workload `source`, or None before it exists."""
    for line in metrics.splitlines():
        if line.startswith(f"{name}_sum{{") and f'source_workload="{source}"' in line and 'response_code="101"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_upgrades_are_counted_as_101_when_they_close(mesh):
    waypoint = mesh.waypoints["demo/waypoint"]
    with open_ws(mesh, "/room/2", source=METER_IP) as ws:
        ws.recv(timeout=20)
        ws.send(b"x" * 100_000)
        assert len(ws.recv(timeout=20)) == 100_000
    # Recorded once both connections have closed, which follows the close handshake.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        m = waypoint.metrics()
        if all((bytes_sum(m, h, "meter") or 0) > 100_000 for h in ("istio_request_bytes", "istio_response_bytes")):
            break
        time.sleep(0.01)
    metrics = waypoint.metrics()
    # The frames both ways, not just the handshake.
    assert (bytes_sum(metrics, "istio_request_bytes", "meter") or 0) > 100_000, metrics
    assert (bytes_sum(metrics, "istio_response_bytes", "meter") or 0) > 100_000, metrics
    assert 'destination_service="chat.demo.svc.cluster.local"' in metrics
