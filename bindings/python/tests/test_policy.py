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
        if d.allowed != want["allow"] or d.policy != want["policy"]:
            failures.append(f"{case['name']}: got {d!r}, want {json.dumps(want)}")
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
