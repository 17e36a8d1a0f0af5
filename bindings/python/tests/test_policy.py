"""The shared L4 table (testdata/authz/l4-cases.yaml), decided from Python exactly as the Rust
engine decides it, plus the errors a user sees."""

import json
import subprocess

import pytest

import ambit


def load_table(repo):
    # The table is YAML; ambit's own loader is not a YAML library, so convert with Python's
    # standard json via a tiny bridge: ambit ships no YAML parser for Python.
    import importlib.util

    if importlib.util.find_spec("yaml") is None:
        pytest.fail("PyYAML is needed to read the shared table (scripts/test installs it)")
    import yaml

    return yaml.safe_load((repo / "testdata/authz/l4-cases.yaml").read_text())["cases"]


def test_shared_l4_table(repo):
    cases = load_table(repo)
    assert len(cases) >= 30
    failures = []
    for case in cases:
        policy = ambit.Policy.from_yaml(case["policies"])
        conn = case["connection"]
        d = policy.evaluate(
            case["workload"]["namespace"],
            conn.get("source"),
            conn["port"],
            source_ip=conn.get("sourceIp") or "10.0.0.1",
            labels=case["workload"].get("labels"),
        )
        want = case["expect"]
        would = want.get("dryRun")
        want_would = None if would is None else (would["allow"], would["policy"])
        if d.allowed != want["allow"] or d.policy != want["policy"] or d.would_be != want_would:
            failures.append(f"{case['name']}: got {d!r} would_be={d.would_be}, want {json.dumps(want)}")
    assert not failures, "\n".join(failures)


def test_config_errors_and_warnings():
    with pytest.raises(ambit.ConfigError, match=r"AuthorizationPolicy ns/p: spec.action"):
        ambit.Policy.from_yaml(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
            "metadata: {name: p, namespace: ns}\nspec: {action: NOPE}\n"
        )
    p = ambit.Policy.from_yaml(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: get-only, namespace: ns}\n"
        "spec:\n  rules:\n  - to: [{operation: {methods: [GET]}}]\n"
    )
    assert any("HTTP attributes (methods)" in w for w in p.warnings)
    d = p.evaluate("ns", "cluster.local/ns/ns/sa/x", 80)
    assert not d and d.policy is None and "none allowed" in d.reason
    with pytest.raises(ValueError):
        p.evaluate("ns", None, 80, source_ip="not-an-ip")


def test_shared_l7_table(repo):
    """testdata/authz/l7-cases.yaml (shared with core/authz/tests/authz/l7_table.rs), decided from
    Python through ambit.L7Policies exactly as the engine decides it."""
    import yaml

    cases = yaml.safe_load((repo / "testdata/authz/l7-cases.yaml").read_text())["cases"]
    assert len(cases) >= 35
    failures = []
    for case in cases:
        policies = ambit.L7Policies.from_yaml(case["policies"])
        want_warnings = case.get("warnings")
        if want_warnings is None and policies.warnings:
            failures.append(f"{case['name']}: unexpected warnings {policies.warnings}")
        for w in want_warnings or []:
            if not any(w in got for got in policies.warnings):
                failures.append(f"{case['name']}: no warning contains {w!r}: {policies.warnings}")
        target = case.get("target") or {}
        service = target.get("service", "shop/cart")
        r = case["request"] or {}
        auth = ambit.RequestAuth.from_claims(r["auth"]) if "auth" in r else None
        headers = [
            (k, v) for k, vs in (r.get("headers") or {}).items() for v in (vs if isinstance(vs, list) else [vs])
        ]
        d = policies.evaluate(
            waypoint=(target.get("namespace", "shop"), target.get("waypoint", "waypoint")),
            service=tuple(service.split("/", 1)) if service else None,
            source=None if r.get("plaintext") else r.get("source", "cluster.local/ns/shop/sa/frontend"),
            source_ip=r.get("sourceIp", "10.0.0.1"),
            remote_ip=r.get("remoteIp"),
            destination_ip=r.get("destinationIp", "10.96.0.10"),
            port=r.get("port", 80),
            host=r.get("host", "cart.shop.svc.cluster.local"),
            method=r.get("method", "GET"),
            path=r.get("path", "/"),
            headers=headers,
            auth=auth,
            sni=r.get("sni"),
        )
        want = case["expect"]
        got = (d.allowed, d.policy, d.audit, d.dry_run)
        expected = (want["allow"], want["policy"], want.get("audit", []), want.get("dryRun", []))
        would = want.get("wouldBe")
        if got != expected or ("reason" in want and d.code != want["reason"]) or (
            would is not None and d.would_be != (would["allow"], would["policy"])
        ):
            failures.append(f"{case['name']}: got {d!r} {got} would_be={d.would_be}, want {want}")
    assert not failures, "\n".join(failures)


L7_YAML = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: admins-only, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: cart}]
  rules:
  - to: [{operation: {methods: [GET], paths: ["/items/{*}"]}}]
  - when: [{key: "request.auth.claims[groups]", values: [admins]}]
"""


def test_l7_decisions_with_claims_and_errors():
    p = ambit.L7Policies.from_yaml(L7_YAML)
    assert len(p) == 1 and p.names == ["shop/admins-only"] and p.warnings == []
    cart = dict(waypoint=("shop", "waypoint"), service=("shop", "cart"))
    d = p.evaluate(**cart, method="GET", path="/items/./42?x=1")
    assert d and d.policy == "shop/admins-only" and d.code == "AllowedByPolicy"
    d = p.evaluate(**cart, method="DELETE", path="/items/42")
    assert not d and d.code == "NoAllowMatched" and "none allowed" in d.reason
    admin = ambit.RequestAuth.from_claims({"iss": "https://idp", "sub": "ann", "groups": ["admins"]})
    assert admin.principal == "https://idp/ann" and admin.claims["groups"] == ["admins"]
    assert p.evaluate(**cart, method="DELETE", path="/items/42", auth=admin)
    # Not attached to another service.
    assert p.evaluate(waypoint=("shop", "waypoint"), service=("shop", "orders"), method="DELETE").code == (
        "NoAllowPolicies"
    )
    with pytest.raises(ValueError, match="iss"):
        ambit.RequestAuth.from_claims({"sub": "x"})
    with pytest.raises(ValueError, match="path_normalization"):
        ambit.L7Policies.from_yaml(L7_YAML, path_normalization="SOMETIMES")
    with pytest.raises(ambit.ConfigError) as e:
        ambit.L7Policies.from_yaml(L7_YAML.replace("methods: [GET]", "methods: GET"))
    assert e.value.object == "AuthorizationPolicy shop/admins-only"
    assert e.value.field and e.value.field.startswith("spec.rules[0].to[0]")
