"""Control-plane scenarios: two `ambit-ztunnel` processes joined to the fake istiod (a test peer
written in Python from the protocols' documentation), carrying real traffic over HBONE with
certificates the fake CA issued, while the fake pushes, refuses, restarts and misbehaves."""

from __future__ import annotations

import re
import socket

import pytest

from conftest import NS, TOKEN, App, SocksRefused, echo, wait_until

ADDRESS = "type.googleapis.com/istio.workload.Address"
AUTHZ = "type.googleapis.com/istio.security.Authorization"


def deny_client(name: str = "deny-client", dry_run: bool = False) -> dict:
    return {"name": name, "namespace": NS, "scope": "NAMESPACE", "action": "DENY",
            "dry_run": dry_run,
            "rules": [{"clauses": [{"matches": [{"principals": ["cluster.local/ns/shop/sa/client"]}]}]}]}


def refused(mesh, ip: str) -> bool:
    try:
        mesh.connect(ip).close()
    except SocksRefused:
        return True
    return False


def test_initial_sync_carries_traffic_with_certificates_the_fake_ca_issued(mesh):
    mesh.push_basic()
    a, b = mesh.start_nodes()
    a.wait_ready()
    b.wait_ready()
    with mesh.connect(mesh.ip(2, 2)) as s:
        assert echo(s, "hello") == "server-1: hello"
    # Certificates: one CSR per local identity, each for the identity asked for on its behalf.
    by_identity = {r.impersonated_identity: r for r in mesh.fake.csr_requests}
    for ident in ("spiffe://cluster.local/ns/shop/sa/client", "spiffe://cluster.local/ns/shop/sa/server"):
        r = by_identity[ident]
        assert r.requested_sans == [ident] and r.issued_san == ident and not r.error
        assert r.validity_duration == 86400  # SECRET_TTL's default, 24h
        assert r.call_metadata.get("clusterid") == "Kubernetes"
    assert {c["identity"] for c in b.dump()["certificates"]} == {"spiffe://cluster.local/ns/shop/sa/server"}
    # The node as ztunnel names itself, with the token and cluster id.
    streams = {s.node_id: s for s in mesh.fake.streams}
    sa = streams[f"ztunnel~127.{mesh.net}.0.1~ztunnel-node-a.istio-system~istio-system.svc.cluster.local"]
    assert sa.token == TOKEN and sa.metadata.get("clusterid") == "Kubernetes"
    meta = sa.node_metadata
    assert meta["NAME"] == "ztunnel-node-a" and meta["NAMESPACE"] == "istio-system"
    assert meta["NODE_NAME"] == "node-a" and meta["INSTANCE_IPS"] == f"127.{mesh.net}.0.1"
    assert meta["CLUSTER_ID"] == "Kubernetes" and meta["TEST_NET"] == str(mesh.net)
    # Both types wildcard-subscribed on one stream, every response ACKed.
    assert set(sa.initial_nonces) == {ADDRESS, AUTHZ}
    assert not mesh.fake.nacks


def test_a_workload_added_then_removed_is_routed_to_then_not(mesh):
    mesh.push_basic()
    svc_key = f"{NS}/web.{NS}.svc.cluster.local"
    vip = mesh.ip(100, 1)
    mesh.fake.put_service({"name": "web", "namespace": NS, "hostname": f"web.{NS}.svc.cluster.local",
                           "addresses": [f"/{vip}"], "ports": [{"service_port": 80, "target_port": 8080}]})
    mesh.fake.put_workload(mesh.workload("server-1", mesh.ip(2, 2), "node-b", service_account="server",
                                         services={svc_key: {80: 8080}}))
    a, b = mesh.start_nodes()
    a.wait_ready()
    b.wait_ready()

    def names(n: int = 24) -> set[str]:
        seen = set()
        for i in range(n):
            with mesh.connect(vip, 80) as s:
                seen.add(echo(s, str(i)).split(":")[0])
        return seen

    assert names() == {"server-1"}
    mesh.apps.append(App(mesh.ip(2, 3), "server-2"))
    nonces = mesh.fake.put_workload(mesh.workload("server-2", mesh.ip(2, 3), "node-b",
                                                  service_account="server",
                                                  services={svc_key: {80: 8080}}))
    mesh.fake.wait_acks(nonces)
    b.wait_ready()  # node B has server-2's certificate and listener
    wait_until(lambda: names() == {"server-1", "server-2"}, what="server-2 in the VIP's endpoints")
    nonces = mesh.fake.remove("workload", f"Kubernetes//Pod/{NS}/server-1")
    mesh.fake.wait_acks(nonces)
    assert names() == {"server-2"}


def test_a_pushed_policy_closes_an_open_connection_refuses_new_ones_and_lifts(mesh):
    mesh.push_basic()
    a, b = mesh.start_nodes()
    a.wait_ready()
    b.wait_ready()
    s = mesh.connect(mesh.ip(2, 2))
    assert echo(s, "before") == "server-1: before"
    nonces = mesh.fake.put_authorization(deny_client())
    mesh.fake.wait_acks(nonces)
    # The open connection is closed by the re-check.
    s.settimeout(15)
    with pytest.raises((ConnectionError, OSError)):
        echo(s, "after")
        echo(s, "after again")
    s.close()
    assert refused(mesh, mesh.ip(2, 2))
    assert 'response_flags="DENY"' in b.metrics()
    nonces = mesh.fake.remove("authorization", f"{NS}/deny-client")
    mesh.fake.wait_acks(nonces)
    with mesh.connect(mesh.ip(2, 2)) as s:
        assert echo(s, "lifted") == "server-1: lifted"


def test_a_dry_run_deny_lets_traffic_through_and_is_logged_and_counted(mesh):
    mesh.push_basic()
    mesh.fake.put_authorization(deny_client("shadow-deny", dry_run=True))
    a, b = mesh.start_nodes()
    a.wait_ready()
    b.wait_ready()
    with mesh.connect(mesh.ip(2, 2)) as s:
        assert echo(s, "through") == "server-1: through"
    line = f'ambit_dry_run_decisions_total{{reporter="destination",decision="deny",policy="{NS}/shadow-deny"}} 1'
    wait_until(lambda: line in b.metrics(), what="the dry-run metric")
    assert b.logged("dry-run authorization") and b.logged(f"{NS}/shadow-deny")
    assert 'response_flags="DENY"' not in b.metrics()


def test_an_invalid_resource_is_nacked_with_its_name_and_field_and_the_rest_applies(mesh):
    mesh.push_basic()
    a, b = mesh.start_nodes()
    a.wait_ready()
    b.wait_ready()
    with mesh.fake.batch() as nonces:
        mesh.fake.put_workload({"uid": "Kubernetes//Pod/shop/broken", "name": "broken",
                                "namespace": NS, "addresses": [b"\x0a\x00\x00\x01\x02"], "node": "node-b"})
        mesh.fake.put_workload(mesh.workload("server-9", mesh.ip(2, 9), "node-b", service_account="server"))
    acks = mesh.fake.wait_acks(nonces)
    nack = [x for x in acks if x.type_url == ADDRESS][0]
    assert nack.nack
    assert "Kubernetes//Pod/shop/broken" in nack.error and "addresses[0]" in nack.error
    assert "had 5 bytes" in nack.error
    # The valid resource of the same response applied; the last good state is in force.
    workloads = {w["uid"] for w in a.dump()["workloads"]}
    assert "Kubernetes//Pod/shop/server-9" in workloads and "Kubernetes//Pod/shop/broken" not in workloads
    with mesh.connect(mesh.ip(2, 2)) as s:
        assert echo(s, "still") == "server-1: still"
    assert a.dump()["xds"]["types"][ADDRESS]["nacks"] >= 1


def test_a_restarted_server_gets_initial_resource_versions_and_no_connection_drops(mesh):
    mesh.push_basic()
    a, b = mesh.start_nodes()
    a.wait_ready()
    b.wait_ready()
    s = mesh.connect(mesh.ip(2, 2))
    assert echo(s, "one") == "server-1: one"
    old = {st.id for st in mesh.fake.streams}
    mesh.fake.restart(down_for=0.5)
    server_1 = "Kubernetes//Pod/shop/server-1"
    # Each node reconnects and says what it holds, so nothing is sent again needlessly.
    new = mesh.fake.wait_for(
        lambda: (sts := [st for st in mesh.fake.streams if st.active and st.id not in old
                         and server_1 in st.initial_resource_versions.get(ADDRESS, {})])
        and len(sts) == 2 and sts,
        timeout=30, what="both nodes reconnected with initial_resource_versions")
    for st in new:
        versions = st.initial_resource_versions[ADDRESS]
        assert versions[server_1] == mesh.fake.version_of("workload", server_1)
        assert "Kubernetes//Pod/shop/client" in versions
        mesh.fake.wait_synced(st)
    assert echo(s, "two") == "server-1: two"  # the tunnel opened before the restart
    s.close()
    assert a.dump()["xds"]["streams"] >= 2


def test_a_certificate_for_another_identity_is_refused_and_the_old_one_kept(mesh):
    mesh.push_basic()
    # Certificates due for renewal a second after issue (backdated), valid for minutes more.
    mesh.fake.ca_validity_override = 301  # not_after = now + 301 s: half-life is now + 1 s
    mesh.fake.ca_backdate_s = 299
    a, b = mesh.start_nodes()
    a.wait_ready()
    b.wait_ready()
    before = len(mesh.fake.csr_requests)
    mesh.fake.ca_wrong_san = True
    wait_until(lambda: len(mesh.fake.csr_requests) > before + 1, what="renewals with the wrong SAN")

    def refusal():
        certs = {c["identity"]: c for c in b.dump()["certificates"]}
        err = certs["spiffe://cluster.local/ns/shop/sa/server"]["last_error"] or ""
        return err if "the certificate is for spiffe://cluster.local/ns/fake-istiod-wrong/sa/wrong-sa" in err else None

    wait_until(refusal, what="the renewal refused")
    with mesh.connect(mesh.ip(2, 2)) as s:
        assert echo(s, "old cert") == "server-1: old cert"
    assert b.ready()[0] == 200


def test_the_ca_down_at_start_keeps_readiness_503_until_it_is_back(mesh):
    mesh.push_basic()
    mesh.fake.ca_available = False
    a, b = mesh.start_nodes()
    status, body = wait_until(lambda: (r := b.ready())[0] == 503 and "certificates" in r[1] and r, what="503")
    assert "credential source unavailable" in body
    mesh.fake.ca_available = True
    b.wait_ready(timeout=60)
    a.wait_ready(timeout=60)
    with mesh.connect(mesh.ip(2, 2)) as s:
        assert echo(s, "back") == "server-1: back"


def test_readiness_is_never_200_before_the_first_xds_sync(mesh):
    """Probed from the moment the port opens until both nodes have been refused twice between
    them: never 200, and the 503 names the sync it waits for."""
    mesh.push_basic()
    mesh.fake.xds_available = False
    a, b = mesh.start_nodes()
    seen: list[tuple[int, str]] = []

    def probe():
        try:
            seen.append(a.ready())
        except OSError:  # not listening yet
            pass
        return sum(c.method.endswith("DeltaAggregatedResources") for c in mesh.fake.calls) >= 4 and seen

    wait_until(probe, timeout=30, what="four refused ADS attempts")
    assert seen and all(code == 503 for code, _ in seen), seen[:3]
    assert "xds" in seen[0][1] and "waiting for the first sync" in seen[0][1], seen[0]
    mesh.fake.xds_available = True
    a.wait_ready(timeout=60)
    b.wait_ready(timeout=60)
    with mesh.connect(mesh.ip(2, 2)) as s:
        assert echo(s, "synced") == "server-1: synced"


def test_a_replaced_token_file_is_used_by_the_next_stream(mesh):
    mesh.push_basic()
    a, b = mesh.start_nodes()
    a.wait_ready()
    mesh.fake.set_token("second-token")
    mesh.token_file.write_text("second-token")
    mesh.fake.disconnect_streams()
    stream = mesh.fake.wait_for(
        lambda: next((s for s in mesh.fake.streams if s.active and s.token == "second-token"), None),
        timeout=30, what="a stream with the new token")
    mesh.fake.wait_synced(stream)
    # Calls with the old token were refused meanwhile, not crashed on.
    assert a.proc.poll() is None and b.proc.poll() is None
    # Node B may have asked for its certificate with the old token (only A was waited for
    # above): it tries again with the new one, and serves once it has it.
    b.wait_ready(timeout=60)
    with mesh.connect(mesh.ip(2, 2)) as s:
        assert echo(s, "token") == "server-1: token"


def test_a_waypoint_takes_its_mesh_from_xds_and_enforces_l7_policy(mesh, tmp_path):
    import http.server
    import os
    import subprocess
    import threading

    from conftest import REPO, http_get, wait_until as until

    vip, wp_ip = mesh.ip(100, 1), mesh.ip(3, 2)
    svc = f"{NS}/web.{NS}.svc.cluster.local"
    with mesh.fake.batch():
        mesh.fake.put_workload(mesh.workload("client", mesh.ip(1, 2), "node-a"))
        mesh.fake.put_service({"name": "web", "namespace": NS, "hostname": f"web.{NS}.svc.cluster.local",
                               "addresses": [f"/{vip}"], "ports": [{"service_port": 80, "target_port": 8080}],
                               "waypoint": f"/{wp_ip}"})
        mesh.fake.put_workload(mesh.workload("server-1", mesh.ip(2, 2), "node-b", service_account="server",
                                             services={svc: {80: 8080}}))
        mesh.fake.put_workload(mesh.workload("waypoint", wp_ip, "waypoint-node"))
    # server-1 speaks HTTP here (the waypoint parses requests).
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"hello from server-1: {self.path}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer((mesh.ip(2, 2), 8080), Hello)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    l7 = tmp_path / "l7.yaml"
    l7.write_text(f"""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: no-admin, namespace: {NS}}}
spec:
  targetRefs: [{{kind: Service, group: "", name: web}}]
  action: DENY
  rules: [{{to: [{{operation: {{paths: ["/admin"]}}}}]}}]
""")
    a, b = mesh.start_nodes()
    binary = os.environ.get("AMBIT_WAYPOINT") or str(REPO / "target" / "debug" / "ambit-waypoint")
    env = {**os.environ, **mesh.env("waypoint", 3), "RUST_LOG": "info", "NO_COLOR": "1"}
    wp = subprocess.Popen([binary, "--name", "waypoint", "--namespace", NS, "--l7", str(l7),
                           "--hbone", f"{wp_ip}:15008", "--metrics", f"{wp_ip}:15020",
                           "--readiness", f"{wp_ip}:15021"],
                          env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    try:
        until(lambda: http_get(f"{wp_ip}:15021", "/healthz/ready")[0] == 200, 30, "waypoint ready")
        a.wait_ready()
        b.wait_ready()
        # The waypoint's own certificate came from the fake CA, without impersonation.
        wp_csr = [r for r in mesh.fake.csr_requests if r.issued_san == "spiffe://cluster.local/ns/shop/sa/waypoint"]
        assert wp_csr and wp_csr[0].impersonated_identity is None

        def get(path: str) -> str:
            with mesh.connect(vip, 80) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: web.{NS}.svc.cluster.local\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
            return data.decode(errors="replace")

        ok = get("/hello")
        assert ok.startswith("HTTP/1.1 200") and "hello from server-1: /hello" in ok, ok
        denied = get("/admin")
        assert denied.startswith("HTTP/1.1 403") and "RBAC: access denied" in denied, denied
        metrics = http_get(f"{wp_ip}:15020", "/metrics")[1]
        assert 'reporter="waypoint"' in metrics and 'response_code="403"' in metrics
    finally:
        wp.terminate()
        try:
            wp.wait(10)
        except subprocess.TimeoutExpired:
            wp.kill()
        httpd.shutdown()
