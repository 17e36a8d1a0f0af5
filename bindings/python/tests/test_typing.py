# pyright: strict
"""The API used the way a typed user would use it. pyright checks this file against the stubs
(scripts/test: `pyright tests/test_typing.py`); pytest runs it, so the types are also real."""

from __future__ import annotations

import socket
import sys
from typing import Any, Literal

import ambit

if sys.version_info >= (3, 11):
    from typing import assert_type
else:  # pragma: no cover - the venv runs 3.11+

    def assert_type(value: object, _t: object) -> object:
        return value


ROUTES = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 80}]
  rules:
  - backendRefs: [{name: reviews-v1, port: 80}]
    retry: {codes: [503]}
"""

L7 = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  rules: [{to: [{operation: {methods: [GET]}}]}]
"""


def test_identity_and_policy_types() -> None:
    ca = ambit.CertificateAuthority("cluster.local")
    creds = ca.issue(ambit.SpiffeId("spiffe://cluster.local/ns/a/sa/b"), ttl=60.0)
    assert_type(creds.id, ambit.SpiffeId)
    assert_type(creds.id.namespace, "str | None")
    d = ambit.Policy.from_yaml("").evaluate("ns", creds.id, 80, labels={"app": "x"})
    assert_type(d, ambit.Decision)
    assert_type(d.policy, "str | None")
    assert d.allowed


def test_route_types() -> None:
    router = ambit.Router.from_yaml(ROUTES, seed=1)
    r = router.route(service=("shop", "reviews"), headers={"x": "1"}, random=[0.5])
    assert_type(r, ambit.RouteResult)
    assert_type(r.backend, "tuple[str, str, int | None] | None")
    assert_type(r.headers, "list[tuple[str, str]] | None")
    retry = r.retry
    assert retry is not None
    assert_type(retry.codes, list[int])
    assert_type(retry.backoff, "float | None")
    assert r.kind == "forward" and r.backend == ("shop", "reviews-v1", 80)
    assert router.route(service=("shop", "reviews"), headers=[("a", "1"), ("a", "2")]).kind == "forward"
    # Kinds are literal types: a typo in a comparison is a type error, not a silent False.
    kind: Literal["forward", "unrouted", "not_found", "redirect", "abort", "rate_limited", "no_backend", "other"]
    kind = r.kind
    assert kind == "forward"


def test_l7_and_jwt_types() -> None:
    policies = ambit.L7Policies.from_yaml(L7)
    auth = ambit.RequestAuth.from_claims({"iss": "https://idp", "sub": "u", "groups": ["a"]})
    assert_type(auth.claims, "dict[str, Any]")
    assert auth.claims["groups"] == ["a"]
    d = policies.evaluate(waypoint=("shop", "waypoint"), service=("shop", "reviews"), method="GET", auth=auth)
    assert_type(d, ambit.L7Decision)
    assert_type(d.audit, list[str])
    assert d and d.code == "AllowedByPolicy"
    authn = ambit.Authenticators.from_yaml("")
    result = authn.authenticate({"authorization": "Bearer x"}, "/", waypoint=("shop", "waypoint"))
    assert_type(result, ambit.AuthnResult)
    assert_type(result.auth, "ambit.RequestAuth | None")
    assert result.kind == "anonymous"
    outcome: Literal["anonymous", "authenticated", "denied"] = result.kind
    code: Literal["AllowedByPolicy", "DeniedByPolicy", "DeniedByCustom", "NoAllowPolicies", "NoAllowMatched", "Other"]
    code = d.code
    assert (outcome, code) == ("anonymous", "AllowedByPolicy")


def test_errors_carry_typed_fields() -> None:
    try:
        ambit.Router.from_yaml("kind: HTTPRoute\napiVersion: gateway.networking.k8s.io/v1\nspec: {rules: 1}\n")
    except ambit.ConfigError as e:
        assert_type(e.field, "str | None")
        assert_type(e.object, "str | None")
    else:
        raise AssertionError("refused")


def test_hbone_is_a_module() -> None:
    import ambit.hbone as hbone_module
    from ambit.hbone import HboneListener, serve

    assert hbone_module is ambit.hbone and HboneListener is ambit.HboneListener
    ca = ambit.CertificateAuthority("cluster.local")
    with serve(ca.issue("spiffe://cluster.local/ns/t/sa/s")) as listener:
        assert_type(listener, HboneListener)


def test_hbone_types() -> None:
    ca = ambit.CertificateAuthority()
    server = ca.issue("spiffe://cluster.local/ns/t/sa/server")
    with ambit.hbone.serve(server) as listener:
        assert_type(listener, ambit.HboneListener)
        s = ambit.hbone.connect(ca.issue("spiffe://cluster.local/ns/t/sa/c"), listener.address, server.id, "10.0.0.1:1")
        peer_socket, peer, authority = listener.accept(timeout=5.0)
        assert_type(peer_socket, socket.socket)
        assert_type(peer, ambit.SpiffeId)
        assert_type(authority, str)
        s.close()
        peer_socket.close()


def test_async_hbone_types() -> None:
    import asyncio

    ca = ambit.CertificateAuthority()
    server = ca.issue("spiffe://cluster.local/ns/t/sa/server")
    client = ca.issue("spiffe://cluster.local/ns/t/sa/c")

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: ambit.SpiffeId, authority: str) -> None:
        writer.write(f"{peer.service_account}@{authority}".encode())

    async def run() -> bytes:
        async with await ambit.hbone.start_server(handler, server) as srv:
            assert_type(srv, ambit.AsyncHboneServer)
            reader, writer = await ambit.hbone.open_connection(client, srv.address, server.id, "10.0.0.1:1")
            data = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            return data

    assert asyncio.run(run()) == b"c@10.0.0.1:1"
