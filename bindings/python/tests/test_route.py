"""Gateway API HTTPRoute decisions from Python (ambit.Router): the shared case table
(testdata/route/cases.yaml, also driven by core/route/tests/route/cases.rs), weighted splits, and
the errors a user sees."""

import math

import pytest

import ambit

REVIEWS = ("shop", "reviews")
WAYPOINT = ("shop", "waypoint")


def backend_text(b):
    ns, name, port = b
    return f"{ns}/{name}:{port}" if port is not None else f"{ns}/{name}"


def joined(headers, name):
    values = [v for k, v in headers if k == name]
    return ",".join(values) if values else None


def check_step(router, case, req, at_ms, random, expect):
    target = case.get("target") or {}
    headers = []
    if "host" in req:
        headers.append(("host", req["host"]))
    for k, vs in (req.get("headers") or {}).items():
        headers += [(k, v) for v in (vs if isinstance(vs, list) else [vs])]
    waypoint = target.get("waypoint", "shop/waypoint")
    r = router.route(
        service=tuple(target.get("service", "shop/reviews").split("/", 1)),
        port=target.get("port", 9080),
        method=req.get("method", "GET"),
        path=req.get("path", "/"),
        headers=headers,
        waypoint=tuple(waypoint.split("/", 1)) if waypoint else None,
        authority=req.get("authority"),
        response_headers=case.get("response") or {},
        random=random,
        now=at_ms / 1000,
        client_namespace=target.get("client"),
    )
    wrong = []
    kind = {"backend_not_permitted": "not_permitted"}.get(r.kind, r.kind)
    if kind != expect["outcome"]:
        return [f"got {r!r}, want {expect['outcome']}"]
    if "status" in expect and r.status != expect["status"]:
        wrong.append(f"status {r.status}")
    if "location" in expect and r.location != expect["location"]:
        wrong.append(f"location {r.location!r}")
    if r.kind in ("forward", "abort"):
        delay = None if r.delay is None else round(r.delay * 1000)
        if delay != expect.get("delay_ms"):
            wrong.append(f"delay {delay} ms")
    if r.kind == "backend_not_permitted":
        assert r.backend is not None
        for key, got in [("route", r.route), ("backend", backend_text(r.backend))]:
            if key in expect and got != expect[key]:
                wrong.append(f"{key} {got!r}")
    if r.kind == "preflight":
        for name, want in (expect.get("response_headers") or {}).items():
            if joined(r.response_headers or [], name) != want:
                wrong.append(f"preflight header {name}: {joined(r.response_headers or [], name)!r}")
    if r.kind != "forward":
        return wrong
    assert r.backend is not None and r.headers is not None and r.response_headers is not None
    for key, got in [("route", r.route), ("rule", r.rule), ("backend", backend_text(r.backend)), ("path", r.path)]:
        if key in expect and got != expect[key]:
            wrong.append(f"{key} {got!r}")
    if "timeouts" in expect:
        ms = [None if t is None else round(t * 1000) for t in (r.request_timeout, r.backend_request_timeout)]
        want = [expect["timeouts"].get("request_ms"), expect["timeouts"].get("backend_request_ms")]
        if ms != want:
            wrong.append(f"timeouts {ms}")
    if "retry" in expect:
        want = expect["retry"]
        if want is not None:
            want = (want["attempts"], want["codes"], want.get("backoff_ms"))
        got = None
        if r.retry is not None:
            backoff = None if r.retry.backoff is None else round(r.retry.backoff * 1000)
            got = (r.retry.attempts, r.retry.codes, backoff)
        if got != want:
            wrong.append(f"retry {r.retry!r}")
    if "mirrors" in expect and [backend_text(m) for m in r.mirrors] != expect["mirrors"]:
        wrong.append(f"mirrors {r.mirrors}")
    if "host" in expect and joined(r.headers, "host") != expect["host"]:
        wrong.append(f"host {joined(r.headers, 'host')!r}")
    if "authority" in expect and (r.authority or "") != expect["authority"]:
        wrong.append(f"authority {r.authority!r}")
    for name, want in (expect.get("request_headers") or {}).items():
        if joined(r.headers, name) != want:
            wrong.append(f"request header {name}: {joined(r.headers, name)!r}")
    for name, want in (expect.get("response_headers") or {}).items():
        if joined(r.response_headers, name) != want:
            wrong.append(f"response header {name}: {joined(r.response_headers, name)!r}")
    return wrong


def test_shared_route_table(repo):
    import yaml

    path = repo / "testdata/route/cases.yaml"
    cases = yaml.safe_load(path.read_text())["cases"]
    assert len(cases) >= 45
    failures = []
    for case in cases:
        if "error" in case:
            want = case["error"]
            with pytest.raises(ambit.ConfigError) as e:
                ambit.Router.from_yaml(case["routes"], file="case.yaml")
            got = (e.value.file, e.value.object, e.value.field or "")
            if got != ("case.yaml", want["object"], want["field"]) or want["contains"] not in str(e.value):
                failures.append(f"{case['name']}: error {got} {e.value}")
            continue
        router = ambit.Router.from_yaml(case["routes"], file="case.yaml")
        unmatched = list(router.warnings)
        for w in case.get("warnings") or []:
            hit = next((g for g in unmatched if f": {w['field']}: " in g and w["contains"] in g), None)
            if hit is None:
                failures.append(f"{case['name']}: no warning at {w['field']} with {w['contains']!r}: {unmatched}")
            else:
                unmatched.remove(hit)
        if unmatched:
            failures.append(f"{case['name']}: unexpected warnings {unmatched}")
        steps = [(0, None, case["expect"])] if "expect" in case else []
        steps += [(s.get("at_ms", 0), s.get("request"), s["expect"]) for s in case.get("steps") or []]
        # The table's random source: fractions cycled. (No case with several steps draws, so a
        # fresh cycle per decision is the same sequence the Rust driver sees.)
        assert not (case.get("rng") and len(steps) > 1), "multi-step cases with draws need a shared source"
        for i, (at_ms, req, expect) in enumerate(steps):
            request = req if req is not None else case.get("request") or {}
            wrong = check_step(router, case, request, at_ms, case.get("rng") or [0.0], expect)
            if wrong:
                failures.append(f"{case['name']} step {i}: {'; '.join(wrong)}")
    assert not failures, f"{len(failures)} of {len(cases)} cases fail:\n" + "\n".join(failures)


SPLIT = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: canary, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 80}]
  rules:
  - matches: [{headers: [{name: x-feature, value: beta}]}]
    backendRefs: [{name: reviews-v2, port: 80}]
  - backendRefs:
    - {name: reviews-v1, port: 80, weight: 90}
    - {name: reviews-v2, port: 80, weight: 10}
    timeouts: {request: 2s, backendRequest: 500ms}
    retry: {codes: [503], attempts: 3, backoff: 100ms}
"""


def test_weighted_split_within_the_binomial_bound_and_seeded():
    router = ambit.Router.from_yaml(SPLIT, seed=7)
    n = 10_000
    v2 = sum(router.route(service=REVIEWS).backend == ("shop", "reviews-v2", 80) for _ in range(n))
    # 99.9% two-sided bound of Binomial(10000, 0.1): mean 1000, sd 30, z = 3.29.
    bound = 3.29 * math.sqrt(n * 0.1 * 0.9)
    assert abs(v2 - 1000) < bound, f"{v2} of {n} went to v2"

    again = ambit.Router.from_yaml(SPLIT, seed=7)
    first = [again.route(service=REVIEWS).backend for _ in range(200)]
    other = ambit.Router.from_yaml(SPLIT, seed=7)
    assert [other.route(service=REVIEWS).backend for _ in range(200)] == first, "same seed, same sequence"
    per_call = {router.route(service=REVIEWS, seed=s).backend for s in range(50)}
    assert per_call == {("shop", "reviews-v1", 80), ("shop", "reviews-v2", 80)}
    assert router.route(service=REVIEWS, seed=3).backend == router.route(service=REVIEWS, seed=3).backend
    assert router.route(service=REVIEWS, random=[0.95]).backend == ("shop", "reviews-v2", 80)
    assert router.route(service=REVIEWS, random=[0.5]).backend == ("shop", "reviews-v1", 80)


def test_forward_details_header_match_and_other_outcomes():
    router = ambit.Router.from_yaml(SPLIT)
    assert router.names == ["shop/canary"] and len(router) == 1 and router.warnings == []
    r = router.route(service=REVIEWS, headers={"x-feature": "beta", "host": "reviews"}, path="/a?b=1")
    assert (r.kind, r.status, r.backend, r.route, r.rule) == ("forward", None, ("shop", "reviews-v2", 80), "shop/canary", 0)
    assert r.path == "/a?b=1" and r.headers == [("x-feature", "beta"), ("host", "reviews")]
    assert r.retry is None and r.request_timeout is None
    r = router.route(service=REVIEWS, random=[0.0])
    assert (r.request_timeout, r.backend_request_timeout) == (2.0, 0.5)
    assert r.retry is not None and (r.retry.attempts, r.retry.codes, r.retry.backoff) == (3, [503], 0.1)
    other = router.route(service=("shop", "ratings"), path="/x", headers=[("a", "1"), ("a", "2")])
    assert (other.kind, other.status, other.path, other.headers) == ("unrouted", None, "/x", [("a", "1"), ("a", "2")])
    assert router.route(service=REVIEWS, port=9080).kind == "unrouted", "routes name port 80"


def test_errors_are_config_errors_and_value_errors():
    with pytest.raises(ambit.ConfigError) as e:
        ambit.Router.from_yaml(SPLIT.replace("weight: 90", "weight: -1"), file="split.yaml")
    assert (e.value.file, e.value.object) == ("split.yaml", "HTTPRoute shop/canary")
    assert e.value.field == "spec.rules[1].backendRefs[0].weight"
    assert isinstance(e.value, ambit.AmbitError)
    router = ambit.Router.from_yaml(SPLIT)
    with pytest.raises(ValueError, match="HTTP method"):
        router.route(service=REVIEWS, method="GE T")
    with pytest.raises(ValueError, match="header name"):
        router.route(service=REVIEWS, headers={"bad name": "x"})
    with pytest.raises(ValueError, match="now"):
        router.route(service=REVIEWS, now=-1)
