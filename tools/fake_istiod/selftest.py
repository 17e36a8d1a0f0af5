"""Self-test of the fake istiod, with a small gRPC client built on the same generated stubs.

Run: ``python -m pytest tools/fake_istiod/selftest.py`` from the repository root.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import queue
import threading
from pathlib import Path

import grpc
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

try:  # run as part of the package (python -m pytest tools/fake_istiod/selftest.py)
    from . import ADDRESS_TYPE, AUTHORIZATION_TYPE, ConfigError, FakeIstiod, protos
except ImportError:  # pragma: no cover - imported as a top-level module
    from tools.fake_istiod import (ADDRESS_TYPE, AUTHORIZATION_TYPE, ConfigError, FakeIstiod,
                                   protos)

pb = protos.load()
HERE = Path(__file__).resolve().parent
TOKEN = "s3cr3t-token"
TD = "cluster.local"

WEB = {
    "uid": "Kubernetes//Pod/shop/web-1", "name": "web-1", "namespace": "shop",
    "service_account": "web", "addresses": ["127.0.1.2"], "node": "node-a",
    "tunnel_protocol": "HBONE",
    "services": {"shop/web.shop.svc.cluster.local": {"ports": [
        {"service_port": 80, "target_port": 8080}]}},
}
CLIENT = {"uid": "Kubernetes//Pod/shop/client-1", "name": "client-1", "namespace": "shop",
          "serviceAccount": "client", "addresses": ["127.0.1.3"], "node": "node-a",
          "tunnelProtocol": "hbone"}
WEB_SVC = {"name": "web", "namespace": "shop", "hostname": "web.shop.svc.cluster.local",
           "addresses": ["/10.96.0.10"], "ports": [{"service_port": 80, "target_port": 8080}]}
POLICY = {"name": "allow-client", "namespace": "shop", "scope": "WorkloadSelector",
          "action": "ALLOW", "rules": [{"clauses": [{"matches": [
              {"principals": ["cluster.local/ns/shop/sa/client"],
               "source_ips": ["127.0.0.0/8"], "destination_ports": [8080],
               "service_accounts": [{"namespace": "shop", "service_account": "client"}]}]}]}]}


# -- a minimal client ---------------------------------------------------------------------------


def _channel(fake: FakeIstiod) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(fake.root_pem.encode())
    return grpc.secure_channel(f"127.0.0.1:{fake.port}", creds)


def _md(token: str | None = TOKEN, cluster: str | None = "Kubernetes"):
    md = []
    if token is not None:
        md.append(("authorization", f"Bearer {token}"))
    if cluster is not None:
        md.append(("clusterid", cluster))
    return md


class Ads:
    """One Delta ADS stream: send requests, receive responses (with a timeout)."""

    def __init__(self, fake: FakeIstiod, token: str | None = TOKEN, cluster="Kubernetes"):
        self.channel = _channel(fake)
        stub = pb.discovery_grpc.AggregatedDiscoveryServiceStub(self.channel)
        self._reqs: queue.Queue = queue.Queue()
        self._resps: queue.Queue = queue.Queue()
        self.call = stub.DeltaAggregatedResources(iter(self._reqs.get, None),
                                                  metadata=_md(token, cluster))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for r in self.call:
                self._resps.put(r)
            self._resps.put(EOFError("stream ended with OK"))
        except grpc.RpcError as e:
            self._resps.put(e)

    def send(self, **kw):
        self._reqs.put(pb.discovery.DeltaDiscoveryRequest(**kw))

    def subscribe(self, type_url, irv=None, **kw):
        node = pb.core.Node(id="ztunnel~127.0.0.1~zt-1.istio-system~istio-system.svc.cluster.local")
        node.metadata.update({"NAME": "zt-1", "NAMESPACE": "istio-system", "NODE_NAME": "node-a"})
        self.send(node=node, type_url=type_url, initial_resource_versions=irv or {}, **kw)

    def recv(self, timeout=5.0):
        r = self._resps.get(timeout=timeout)
        if isinstance(r, Exception):
            raise r
        return r

    def ack(self, resp):
        self.send(type_url=resp.type_url, response_nonce=resp.nonce)

    def nack(self, resp, message):
        self.send(type_url=resp.type_url, response_nonce=resp.nonce,
                  error_detail=pb.status.Status(code=3, message=message))

    def sync(self, irv=None):
        """Subscribe to both types; return {type_url: response}, ACKing both."""
        irv = irv or {}
        for tu in (ADDRESS_TYPE, AUTHORIZATION_TYPE):
            self.subscribe(tu, irv.get(tu))
        got = {}
        for _ in range(2):
            r = self.recv()
            got[r.type_url] = r
            self.ack(r)
        return got

    def close(self):
        self._reqs.put(None)
        self.call.cancel()
        self.channel.close()


def decode_address(res):
    assert res.resource.type_url == ADDRESS_TYPE
    return pb.workload.Address.FromString(res.resource.value)


def validate_address(addr) -> list[str]:
    """What a real client would check before accepting an Address."""
    errs = []
    if addr.WhichOneof("type") == "workload":
        for a in addr.workload.addresses:
            if len(a) not in (4, 16):
                errs.append(f"workload {addr.workload.uid}: invalid address length {len(a)}")
    return errs


@pytest.fixture
def fake():
    f = FakeIstiod(trust_domain=TD, token=TOKEN, cluster_id="Kubernetes")
    f.start()
    yield f
    f.close()


@pytest.fixture
def ads(fake):
    clients = []

    def make(**kw):
        c = Ads(fake, **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


# -- authentication -----------------------------------------------------------------------------


def csr_call(fake, csr_pem, token=TOKEN, cluster="Kubernetes", metadata=None, validity=3600):
    with _channel(fake) as ch:
        stub = pb.ca_grpc.IstioCertificateServiceStub(ch)
        req = pb.ca.IstioCertificateRequest(csr=csr_pem, validity_duration=validity)
        if metadata:
            req.metadata.update(metadata)
        return stub.CreateCertificate(req, metadata=_md(token, cluster), timeout=5)


def make_csr(san: str) -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(san)]),
                          critical=True)
           .sign(key, hashes.SHA256()))
    from cryptography.hazmat.primitives.serialization import Encoding
    return key, csr.public_bytes(Encoding.PEM).decode()


def test_bearer_token_and_cluster_id(fake, ads):
    _, csr = make_csr(fake.spiffe_id("shop", "web"))
    for token, cluster in (("wrong", "Kubernetes"), (None, "Kubernetes"), (TOKEN, "other")):
        with pytest.raises(grpc.RpcError) as ei:
            csr_call(fake, csr, token=token, cluster=cluster)
        assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED
    bad = ads(token="wrong")
    bad.subscribe(ADDRESS_TYPE)
    with pytest.raises(grpc.RpcError) as ei:
        bad.recv()
    assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert not fake.streams and not fake.csr_requests
    assert [c.token for c in fake.calls] == ["wrong", None, TOKEN, "wrong"]
    assert not any(c.ok for c in fake.calls)

    csr_call(fake, csr)  # the right token works
    fake.set_token("rotated")  # changed at runtime
    with pytest.raises(grpc.RpcError) as ei:
        csr_call(fake, csr)
    assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED
    csr_call(fake, csr, token="rotated")
    assert [c.ok for c in fake.calls[-3:]] == [True, False, True]
    assert fake.calls[-1].metadata["clusterid"] == "Kubernetes"


# -- delta ADS ----------------------------------------------------------------------------------


def test_initial_sync_ack_and_stream_records(fake, ads):
    fake.put_workload(WEB)
    fake.put_service(WEB_SVC)
    fake.put_authorization(POLICY)
    c = ads()
    got = c.sync()
    addr = got[ADDRESS_TYPE]
    assert sorted(r.name for r in addr.resources) == [
        "Kubernetes//Pod/shop/web-1", "shop/web.shop.svc.cluster.local"]
    by_name = {r.name: r for r in addr.resources}
    w = decode_address(by_name["Kubernetes//Pod/shop/web-1"]).workload
    assert w.addresses == [bytes([127, 0, 1, 2])] and w.tunnel_protocol == pb.workload.HBONE
    assert w.services["shop/web.shop.svc.cluster.local"].ports[0].target_port == 8080
    assert by_name["Kubernetes//Pod/shop/web-1"].aliases == ["/127.0.1.2"]
    assert by_name["shop/web.shop.svc.cluster.local"].aliases == ["/10.96.0.10"]
    assert all(r.version for r in addr.resources)

    authz = got[AUTHORIZATION_TYPE]
    assert [r.name for r in authz.resources] == ["shop/allow-client"]
    pol = pb.authorization.Authorization.FromString(authz.resources[0].resource.value)
    m = pol.rules[0].clauses[0].matches[0]
    assert pol.scope == pb.authorization.WORKLOAD_SELECTOR
    assert m.principals[0].exact == "cluster.local/ns/shop/sa/client"
    assert (m.source_ips[0].address, m.source_ips[0].length) == (bytes([127, 0, 0, 0]), 8)
    assert m.service_accounts[0].serviceAccount == "client"
    assert addr.nonce != authz.nonce

    for r in (addr, authz):
        a = fake.wait_ack(r.nonce, timeout=5)
        assert not a.nack and a.known and a.type_url == r.type_url
    st = fake.wait_synced(timeout=5)
    assert st.node_id.startswith("ztunnel~127.0.0.1~zt-1.istio-system")
    assert st.node_metadata["NODE_NAME"] == "node-a"
    assert st.token == TOKEN and st.metadata["clusterid"] == "Kubernetes"
    assert st.initial_resource_versions == {ADDRESS_TYPE: {}, AUTHORIZATION_TYPE: {}}


def test_push_add_update_remove(fake, ads):
    fake.put_workload(WEB)
    c = ads()
    c.sync()
    fake.wait_synced(timeout=5)

    [nonce] = fake.put_workload(CLIENT)
    r = c.recv()
    assert r.nonce == nonce and [x.name for x in r.resources] == [CLIENT["uid"]]
    c.ack(r)
    assert not fake.wait_ack(nonce, timeout=5).nack

    v1 = fake.version_of("workload", WEB["uid"])
    [nonce] = fake.put_workload({**WEB, "addresses": ["127.0.1.20"]})
    r = c.recv()
    assert r.resources[0].version != v1
    assert decode_address(r.resources[0]).workload.addresses == [bytes([127, 0, 1, 20])]
    c.ack(r)

    [nonce] = fake.remove("workload", CLIENT["uid"])
    r = c.recv()
    assert r.nonce == nonce and list(r.removed_resources) == [CLIENT["uid"]] and not r.resources
    c.ack(r)
    fake.wait_ack(nonce, timeout=5)

    with fake.batch() as nonces:  # several changes, one response
        fake.put_workload(CLIENT)
        fake.remove("workload", WEB["uid"])
    r = c.recv()
    assert nonces == [r.nonce]
    assert [x.name for x in r.resources] == [CLIENT["uid"]]
    assert list(r.removed_resources) == [WEB["uid"]]
    assert [x.removed for x in fake.responses_for(WEB["uid"])][-1] == [WEB["uid"]]


def test_reconnect_with_initial_resource_versions(fake, ads):
    other = {**CLIENT, "uid": "Kubernetes//Pod/shop/other-1", "addresses": ["127.0.1.4"]}
    for w in (WEB, CLIENT, other):
        fake.put_workload(w)
    fake.put_authorization(POLICY)
    c = ads()
    got = c.sync()
    irv = {tu: {x.name: x.version for x in r.resources} for tu, r in got.items()}
    port = fake.port

    fake.stop()  # the stream breaks; resource state survives
    with pytest.raises(grpc.RpcError):
        c.recv()
    fake.put_workload({**CLIENT, "canonical_name": "client"})  # changed while down
    fake.remove("workload", other["uid"])  # removed while down
    fake.start()
    assert fake.port == port

    c2 = ads()
    got2 = c2.sync(irv)
    addr = got2[ADDRESS_TYPE]
    assert [x.name for x in addr.resources] == [CLIENT["uid"]]  # WEB unchanged: not re-sent
    assert list(addr.removed_resources) == [other["uid"]]
    assert not got2[AUTHORIZATION_TYPE].resources  # unchanged policy not re-sent
    st = fake.wait_synced(timeout=5)
    assert st.initial_resource_versions[ADDRESS_TYPE] == irv[ADDRESS_TYPE]
    assert len(fake.streams) == 2 and not fake.streams[0].active


def test_nack_of_raw_invalid_resource(fake, ads):
    c = ads()
    c.sync()
    bad = pb.workload.Address(workload=pb.workload.Workload(
        uid="Kubernetes//Pod/shop/bad-1", name="bad-1", namespace="shop",
        addresses=[b"\x01\x02\x03\x04\x05"]))
    [nonce] = fake.put_raw(ADDRESS_TYPE, "Kubernetes//Pod/shop/bad-1", bad.SerializeToString())
    r = c.recv()
    errs = validate_address(decode_address(r.resources[0]))
    assert errs
    c.nack(r, "; ".join(errs))
    a = fake.wait_ack(nonce, timeout=5)
    assert a.nack and "invalid address length 5" in a.error and a.code == 3
    assert fake.nacks == [a]
    # the same through the dict API: raw bytes pass through unchanged
    [nonce] = fake.put_workload({"uid": "x", "addresses": [b"\x00" * 5]})
    assert len(decode_address(c.recv().resources[0]).workload.addresses[0]) == 5


def test_on_demand_subscription_by_alias(fake, ads):
    fake.put_workload(WEB)
    fake.put_workload(CLIENT)
    c = ads()
    c.subscribe(ADDRESS_TYPE, resource_names_subscribe=["*"], resource_names_unsubscribe=["*"])
    r = c.recv()
    assert not r.resources  # subscribed to nothing
    c.ack(r)
    c.send(type_url=ADDRESS_TYPE, resource_names_subscribe=["/127.0.1.3", "/127.9.9.9"])
    r = c.recv()
    assert [x.name for x in r.resources] == [CLIENT["uid"]]
    assert list(r.removed_resources) == ["/127.9.9.9"]
    c.ack(r)
    fake.wait_ack(r.nonce, timeout=5)
    assert fake.put_workload({**WEB, "node": "node-b"}) == []  # not subscribed: no push
    [nonce] = fake.remove("workload", CLIENT["uid"])  # was sent: removal pushed
    assert list(c.recv().removed_resources) == [CLIENT["uid"]]


def test_disconnect_streams(fake, ads):
    c = ads()
    c.sync()
    assert fake.disconnect_streams() == 1
    with pytest.raises(grpc.RpcError) as ei:
        c.recv()
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    fake.wait_for(lambda: not fake.streams[0].active, 5)


# -- CA -----------------------------------------------------------------------------------------


def _leaf(chain):
    return x509.load_pem_x509_certificate(chain[0].encode())


def _sans(cert):
    return cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.UniformResourceIdentifier)


def test_csr_signed_with_requested_san(fake):
    san = fake.spiffe_id("shop", "web")
    key, csr = make_csr(san)
    resp = csr_call(fake, csr, validity=7200, metadata={"WorkloadName": "web-1"})
    chain = list(resp.cert_chain)
    assert len(chain) == 2 and chain[-1] == fake.root_pem
    assert all(p.endswith("-----END CERTIFICATE-----\n") for p in chain)
    leaf = _leaf(chain)
    root = x509.load_pem_x509_certificate(chain[-1].encode())
    leaf.verify_directly_issued_by(root)
    assert _sans(leaf) == [san]
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    life = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert life == dt.timedelta(seconds=7200)
    assert fake.root_cert_path.read_text() == fake.root_pem
    rec = fake.csr_requests[-1]
    assert rec.requested_sans == [san] and rec.issued_san == san
    assert rec.impersonated_identity is None and rec.validity_duration == 7200
    assert rec.metadata == {"WorkloadName": "web-1"}
    assert rec.call_metadata["authorization"] == f"Bearer {TOKEN}"

    # validity 0 -> 24 h default
    leaf = _leaf(csr_call(fake, csr, validity=0).cert_chain)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(hours=24)


def test_issue_writes_files_a_peer_can_use(tmp_path):
    """--issue: a workload certificate for a peer with file certificates (Envoy as a
    waypoint), signed by the CA the fake's clients trust, its key matching its leaf."""
    import json
    import subprocess
    import sys
    from cryptography.hazmat.primitives import serialization

    san = "spiffe://cluster.local/ns/demo/sa/waypoint"
    repo = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "tools.fake_istiod", "--port", "0"]
    bad = subprocess.run([*cmd, "--issue", f"{tmp_path}/x"], cwd=repo, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "expected spiffe://" in bad.stderr
    p = subprocess.Popen([*cmd, "--issue", f"{san}={tmp_path}/wp"], cwd=repo,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert p.stdout is not None
        served_root = Path(json.loads(p.stdout.readline())["root_cert"]).read_text()
    finally:
        p.terminate()
        p.wait(timeout=30)
    out = tmp_path / "wp"
    root = x509.load_pem_x509_certificate((out / "root-cert.pem").read_bytes())
    assert (out / "root-cert.pem").read_text() == served_root
    chain = x509.load_pem_x509_certificates((out / "cert-chain.pem").read_bytes())
    assert len(chain) == 1, "leaf only: the root is in root-cert.pem"
    chain[0].verify_directly_issued_by(root)
    assert _sans(chain[0]) == [san]
    key = serialization.load_pem_private_key((out / "key.pem").read_bytes(), None)
    assert key.public_key().public_numbers() == chain[0].public_key().public_numbers()


def test_csr_impersonation_and_wrong_san(fake):
    node_san = fake.spiffe_id("istio-system", "ztunnel")
    want = fake.spiffe_id("shop", "web")
    _, csr = make_csr(want)
    resp = csr_call(fake, csr, metadata={"ImpersonatedIdentity": want})
    assert _sans(_leaf(resp.cert_chain)) == [want]
    # the impersonated identity wins over the CSR's SAN
    _, csr2 = make_csr(node_san)
    resp = csr_call(fake, csr2, metadata={"ImpersonatedIdentity": want})
    assert _sans(_leaf(resp.cert_chain)) == [want]
    rec = fake.csr_requests[-1]
    assert rec.impersonated_identity == want and rec.requested_sans == [node_san]

    fake.ca_wrong_san = True
    resp = csr_call(fake, csr)
    got = _sans(_leaf(resp.cert_chain))
    assert got != [want] and got == [fake.csr_requests[-1].issued_san]
    fake.ca_wrong_san = "spiffe://cluster.local/ns/x/sa/y"
    assert _sans(_leaf(csr_call(fake, csr).cert_chain)) == ["spiffe://cluster.local/ns/x/sa/y"]

    fake.ca_wrong_san = False
    fake.ca_allow_impersonation = False
    with pytest.raises(grpc.RpcError) as ei:
        csr_call(fake, csr, metadata={"ImpersonatedIdentity": want})
    assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_ca_unavailable_knob(fake):
    _, csr = make_csr(fake.spiffe_id("shop", "web"))
    fake.ca_available = False
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as ei:
            csr_call(fake, csr)
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    assert [r.error for r in fake.csr_requests] == ["UNAVAILABLE", "UNAVAILABLE"]
    fake.ca_available = True
    assert csr_call(fake, csr).cert_chain
    assert fake.wait_csr(3).error == ""


def test_intermediate_chain():
    with FakeIstiod(token=None, cluster_id=None, intermediate=True) as f:
        _, csr = make_csr(f.spiffe_id("shop", "web"))
        chain = list(csr_call(f, csr, token=None, cluster=None).cert_chain)
        assert len(chain) == 3 and chain[-1] == f.root_pem
        certs = [x509.load_pem_x509_certificate(p.encode()) for p in chain]
        certs[0].verify_directly_issued_by(certs[1])
        certs[1].verify_directly_issued_by(certs[2])


# -- YAML ---------------------------------------------------------------------------------------


def test_yaml_config_and_reload(fake, ads, tmp_path):
    fake.load_yaml(HERE / "example-mesh.yaml")
    assert fake.names("workload") == sorted([
        "Kubernetes//Pod/shop/client-1", "Kubernetes//Pod/shop/waypoint-1",
        "Kubernetes//Pod/shop/web-1"])
    assert fake.names("service") == ["shop/api.shop.svc.cluster.local",
                                     "shop/web.shop.svc.cluster.local"]
    assert fake.names("authorization") == ["shop/deny-plaintext", "shop/web-allow-client"]
    api = fake.get("service", "shop/api.shop.svc.cluster.local").service
    assert api.waypoint.address.address == ipaddress.ip_address("127.0.3.10").packed
    assert api.ports[0].service_port == 80 and api.ports[0].target_port == 8080
    deny = fake.get("authorization", "shop/deny-plaintext")
    assert deny.action == pb.authorization.DENY
    assert deny.rules[0].clauses[0].matches[0].not_principals[0].HasField("presence")

    c = ads()
    c.sync()
    cfg = yaml.safe_load((HERE / "example-mesh.yaml").read_text())
    cfg["workloads"] = cfg["workloads"][:1]  # two workloads gone
    cfg["authorizations"][0]["action"] = "DENY"  # one policy changed
    nonces = fake.apply_config(cfg)
    got = {}
    for _ in nonces:
        r = c.recv()
        got[r.type_url] = r
    assert sorted(got[ADDRESS_TYPE].removed_resources) == [
        "Kubernetes//Pod/shop/client-1", "Kubernetes//Pod/shop/waypoint-1"]
    assert not got[ADDRESS_TYPE].resources  # unchanged ones are not re-sent
    assert [x.name for x in got[AUTHORIZATION_TYPE].resources] == ["shop/web-allow-client"]


def test_dict_shortcuts(fake):
    fake.put_workload({"uid": "w", "addresses": ["::1"], "capacity": 3,
                       "network_gateway": "net2/10.1.0.1",
                       "services": {"a/x": {80: 8080}, "a/y": [80, "443:8443"]}})
    w = fake.get("workload", "w").workload
    assert w.addresses == [ipaddress.ip_address("::1").packed] and w.capacity.value == 3
    gw = w.network_gateway
    assert (gw.address.network, gw.hbone_mtls_port) == ("net2", 15008)
    assert [(p.service_port, p.target_port) for p in w.services["a/x"].ports] == [(80, 8080)]
    assert [(p.service_port, p.target_port) for p in w.services["a/y"].ports] == [
        (80, 80), (443, 8443)]
    fake.put_service({"namespace": "a", "hostname": "x", "addresses": ["n1/10.0.0.0/24"],
                      "weighted_waypoints": [{"destination": "a/wp.a.svc", "weight": 9}],
                      "visibility": "namespace"})
    s = fake.get("service", "a/x").service
    assert s.addresses[0].HasField("length") and s.addresses[0].length == 24
    assert s.weighted_waypoints[0].destination.hostname.hostname == "wp.a.svc"
    assert s.visibility == pb.workload.Service.NAMESPACE
    fake.put_authorization({"name": "p", "rules": [[[{"principals": ["*", "td/*", "*/sa/x"]}]]]})
    ms = fake.get("authorization", "/p").rules[0].clauses[0].matches[0].principals
    assert [m.WhichOneof("match_type") for m in ms] == ["presence", "prefix", "suffix"]


def test_bad_config_is_rejected(fake):
    with pytest.raises(ConfigError, match="unknown field 'colour'"):
        fake.put_workload({"uid": "a", "colour": "red"})
    with pytest.raises(ConfigError, match="not one of"):
        fake.put_workload({"uid": "a", "tunnel_protocol": "QUIC"})
    with pytest.raises(ConfigError, match="not an IP"):
        fake.put_workload({"uid": "a", "addresses": ["nope"]})
