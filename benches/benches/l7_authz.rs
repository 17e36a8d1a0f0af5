//! The waypoint's per-request security work: L7 AuthorizationPolicy evaluation for a realistic
//! request against 20 policies (mesh-wide, waypoint- and service-targeted, DENY/ALLOW/AUDIT,
//! with principals, paths, templates, hosts, headers and JWT claims), and JWT authentication
//! (ES256 and RS256 signature verification plus claim checks).

use std::hint::black_box;
use std::net::IpAddr;

use ambit_authn::{Authenticators, AuthnOutcome};
use ambit_authz::{HttpRequest, L7Policies, RequestAuth, WaypointTarget};
use ambit_identity::SpiffeId;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

const NOW: u64 = 1_700_000_000;

fn policies() -> String {
    let mut docs = vec![
        // Mesh-wide guard rails on every waypoint.
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-no-trace, namespace: istio-system}
spec:
  targetRefs: [{kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}]
  action: DENY
  rules:
  - to: [{operation: {methods: ["TRACE", "CONNECT"]}}]
"#
        .to_owned(),
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-require-mtls, namespace: istio-system}
spec:
  targetRefs: [{kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}]
  action: DENY
  rules:
  - from: [{source: {notPrincipals: ["*"]}}]
"#
        .to_owned(),
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-admin, namespace: shop}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
  action: AUDIT
  rules:
  - to: [{operation: {paths: ["/admin/*", "/internal/*"]}}]
"#
        .to_owned(),
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-blocked-ranges, namespace: shop}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
  action: DENY
  rules:
  - from: [{source: {remoteIpBlocks: ["203.0.113.0/24", "198.51.100.0/24"]}}]
  - when: [{key: "request.headers[user-agent]", values: ["sqlmap*", "Nikto*"]}]
"#
        .to_owned(),
    ];
    // Per-service policies for the other services behind the same waypoint (not applicable to
    // the measured request, but indexed alongside).
    for (i, svc) in ["orders", "payments", "users", "search", "reviews", "stock"]
        .iter()
        .enumerate()
    {
        docs.push(format!(
            r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {svc}-allow, namespace: shop}}
spec:
  targetRefs: [{{kind: Service, group: "", name: {svc}}}]
  rules:
  - from: [{{source: {{principals: ["cluster.local/ns/shop/sa/client-{i}"]}}}}]
    to: [{{operation: {{methods: ["GET", "POST"], paths: ["/v1/{svc}/*"]}}}}]
"#
        ));
    }
    // The measured service: DENYs that are checked and miss, then ALLOWs, the last one matching.
    docs.push(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: cart-deny-writes-from-batch, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: cart}]
  action: DENY
  rules:
  - from: [{source: {principals: ["cluster.local/ns/shop/sa/batch"]}}]
    to: [{operation: {methods: ["POST", "PUT", "DELETE"]}}]
"#
        .to_owned(),
    );
    docs.push(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: cart-deny-private, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: cart}]
  action: DENY
  rules:
  - to: [{operation: {paths: ["/private/*", "/v1/cart/{*}/secrets"], notHosts: ["cart.shop.svc.cluster.local"]}}]
"#
        .to_owned(),
    );
    docs.push(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: cart-deny-without-jwt, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: cart}]
  action: DENY
  rules:
  - from: [{source: {notRequestPrincipals: ["*"]}}]
    to: [{operation: {paths: ["/v1/cart/*"]}}]
"#
        .to_owned(),
    );
    for i in 0..6 {
        docs.push(format!(
            r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: cart-allow-{i}, namespace: shop}}
spec:
  targetRefs: [{{kind: Service, group: "", name: cart}}]
  rules:
  - from: [{{source: {{namespaces: ["team-{i}"], principals: ["cluster.local/ns/team-{i}/*"]}}}}]
    to: [{{operation: {{hosts: ["cart.shop.svc.cluster.local", "cart.shop.svc.cluster.local:*"], methods: ["GET"], paths: ["/v{i}/cart/*"]}}}}]
"#
        ));
    }
    docs.push(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: cart-allow-frontend, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: cart}]
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/shop/sa/frontend"]
        requestPrincipals: ["https://issuer.example/*"]
    to:
    - operation:
        hosts: ["cart.shop.svc.cluster.local", "cart.shop.svc.cluster.local:*"]
        methods: ["GET", "HEAD"]
        paths: ["/v1/cart/{*}/items/{**}"]
    when:
    - {key: "request.auth.claims[scope]", values: ["cart:read"]}
    - {key: "request.headers[x-tenant]", values: ["acme"]}
"#
        .to_owned(),
    );
    docs.join("---\n")
}

fn es256() -> (EncodingKey, serde_json::Value) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("ec key");
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).expect("jwk");
    jwk.common.key_id = Some("es".into());
    (key, serde_json::to_value(jwk).expect("json"))
}

fn rs256() -> (EncodingKey, serde_json::Value) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("key");
    let key = EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()).expect("rsa key");
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).expect("jwk");
    jwk.common.key_id = Some("rs".into());
    (key, serde_json::to_value(jwk).expect("json"))
}

fn bench(c: &mut Criterion) {
    let (policies, warnings) =
        L7Policies::parse(&policies(), "bench.yaml", "istio-system").expect("policies");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(policies.len(), 20);
    let target = WaypointTarget {
        namespace: "shop",
        name: "waypoint",
        service: Some(("shop", "cart")),
    };

    let mut headers = HeaderMap::new();
    for (k, v) in [
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        ),
        ("accept", "application/json"),
        ("x-request-id", "5f1c9a0e-8d2b-4a6e-9f1e-2c3b4d5e6f70"),
        ("x-tenant", "acme"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ] {
        headers.insert(k, HeaderValue::from_static(v));
    }
    let auth = RequestAuth::from_claims(json!({
        "iss": "https://issuer.example", "sub": "alice", "aud": ["cart"],
        "scope": ["openid", "cart:read", "cart:write"], "exp": NOW + 600
    }))
    .expect("auth");
    let frontend = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/frontend").expect("id");
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    let req = HttpRequest {
        source_id: Some(&frontend),
        source_ip: ip("10.0.3.17"),
        remote_ip: ip("10.0.3.17"),
        destination_ip: ip("10.96.12.40"),
        destination_port: 80,
        host: "cart.shop.svc.cluster.local",
        method: "GET",
        path: "/v1/cart/8d2b/items/42/options?currency=EUR",
        headers: &headers,
        auth: Some(&auth),
        sni: None,
    };
    let d = policies.evaluate(&target, &req);
    assert!(d.allowed, "{d}");
    assert_eq!(d.policy.as_deref(), Some("shop/cart-allow-frontend"));
    assert_eq!(policies.applicable(&target).len(), 14);

    c.bench_function("l7_authz/evaluate_20_policies", |b| {
        b.iter(|| policies.evaluate(black_box(&target), black_box(&req)))
    });
    let applicable = policies.applicable(&target);
    c.bench_function("l7_authz/evaluate_cached_applicable", |b| {
        b.iter(|| black_box(&applicable).evaluate(black_box(&req)))
    });
    let mut dotted = req;
    dotted.path = "/v1/cart/8d2b/./items/%34%32/options?currency=EUR";
    assert!(policies.evaluate(&target, &dotted).allowed);
    c.bench_function("l7_authz/evaluate_path_needing_normalization", |b| {
        b.iter(|| policies.evaluate(black_box(&target), black_box(&dotted)))
    });

    // JWT: one ES256 and one RS256 issuer, inline key sets.
    let (es_key, es_jwk) = es256();
    let (rs_key, rs_jwk) = rs256();
    let ra = |iss: &str, jwk: &serde_json::Value, name: &str| {
        format!(
            r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: {name}, namespace: shop}}
spec:
  targetRefs: [{{kind: Service, group: "", name: cart}}]
  jwtRules:
  - issuer: {iss}
    audiences: [cart]
    jwks: '{}'
    outputClaimToHeaders: [{{header: x-jwt-sub, claim: sub}}]
"#,
            json!({"keys": [jwk]})
        )
    };
    let yaml = format!(
        "{}---{}",
        ra("https://es.example", &es_jwk, "es"),
        ra("https://rs.example", &rs_jwk, "rs")
    );
    let (authn, warnings) = Authenticators::parse(&yaml, "", "istio-system").expect("authn");
    assert!(warnings.is_empty(), "{warnings:?}");
    for (name, iss, alg, kid, key) in [
        (
            "es256",
            "https://es.example",
            Algorithm::ES256,
            "es",
            &es_key,
        ),
        (
            "rs256",
            "https://rs.example",
            Algorithm::RS256,
            "rs",
            &rs_key,
        ),
    ] {
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        let claims = json!({"iss": iss, "sub": "alice", "aud": "cart", "exp": NOW + 600,
                            "scope": "openid cart:read"});
        let token = jsonwebtoken::encode(&header, &claims, key).expect("token");
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
        assert!(
            matches!(
                authn.authenticate(&target, &h, "/v1/cart", NOW),
                AuthnOutcome::Authenticated { .. }
            ),
            "{name}"
        );
        // The signature check alone, to show what the rest of authentication costs.
        let jwk: Jwk = serde_json::from_value(if alg == Algorithm::ES256 {
            es_jwk.clone()
        } else {
            rs_jwk.clone()
        })
        .expect("jwk");
        let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("decoding key");
        let (message, signature) = token.rsplit_once('.').expect("token");
        assert!(
            jsonwebtoken::crypto::verify(signature, message.as_bytes(), &decoding, alg)
                .expect("verify")
        );
        c.bench_function(&format!("l7_authz/jwt_{name}_signature_only"), |b| {
            b.iter(|| {
                jsonwebtoken::crypto::verify(
                    black_box(signature),
                    black_box(message.as_bytes()),
                    &decoding,
                    alg,
                )
            })
        });
        c.bench_function(&format!("l7_authz/jwt_{name}_authenticate"), |b| {
            b.iter(|| {
                authn.authenticate(
                    black_box(&target),
                    black_box(&h),
                    black_box("/v1/cart"),
                    NOW,
                )
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
