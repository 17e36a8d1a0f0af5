//! RequestAuthentication: JWT verification with keys generated at test time (and one token
//! built by openssl), token locations, key rotation, forwarding edits.

use std::time::Duration;

use ambit_authn::{Authenticators, AuthnOutcome, HeaderEdits, JwksError, JwtError, RequestAuth};
use ambit_authz::{HttpRequest, L7Policies, WaypointTarget};
use ambit_identity::SpiffeId;
use ambit_test_util::jwt::JwtSigner;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const NOW: u64 = 1_700_000_000;
const ISS: &str = "https://issuer.example";

const TARGET: WaypointTarget<'static> = WaypointTarget {
    namespace: "shop",
    name: "waypoint",
    service: Some(("shop", "cart")),
};

// === test issuers ===

/// A signing key and its public JWK.
type Signer = JwtSigner;

fn signer(alg: Algorithm, kid: &str) -> Signer {
    JwtSigner::generate(alg, kid)
}

fn jwks(signers: &[&Signer]) -> String {
    ambit_test_util::jwt::jwks(signers)
}

fn claims() -> Value {
    json!({"iss": ISS, "sub": "alice", "aud": "cart", "iat": NOW - 10, "exp": NOW + 3600})
}

/// A RequestAuthentication for service cart with one rule; `extra` is appended to the rule.
fn policy(jwks_json: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: shop}}
spec:
  targetRefs: [{{kind: Service, group: "", name: cart}}]
  jwtRules:
  - issuer: {ISS}
    jwks: '{jwks_json}'
{extra}
"#
    )
}

fn load(yaml: &str) -> Authenticators {
    let (a, warnings) = Authenticators::parse(yaml, "test.yaml", "istio-system").expect("loads");
    assert!(warnings.is_empty(), "{warnings:?}");
    a
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    h
}

fn authn(a: &Authenticators, headers: &HeaderMap, path: &str) -> AuthnOutcome {
    a.authenticate(&TARGET, headers, path, NOW)
}

#[track_caller]
fn authenticated(outcome: AuthnOutcome) -> (RequestAuth, HeaderEdits) {
    match outcome {
        AuthnOutcome::Authenticated { auth, edits } => (auth, edits),
        other => panic!("expected authenticated, got {other}"),
    }
}

#[track_caller]
fn denied(outcome: AuthnOutcome) -> JwtError {
    match outcome {
        AuthnOutcome::Denied { reason } => reason,
        other => panic!("expected denied, got {other}"),
    }
}

#[track_caller]
fn anonymous(outcome: AuthnOutcome) -> HeaderEdits {
    match outcome {
        AuthnOutcome::Anonymous { edits } => edits,
        other => panic!("expected anonymous, got {other}"),
    }
}

// === verification ===

#[test]
fn valid_tokens_for_every_algorithm() {
    let rsa = signer(Algorithm::RS256, "rsa");
    let signers = [
        signer(Algorithm::ES256, "p256"),
        signer(Algorithm::ES384, "p384"),
        signer(Algorithm::EdDSA, "ed"),
    ];
    let mut all: Vec<&Signer> = signers.iter().collect();
    all.push(&rsa);
    let a = load(&policy(&jwks(&all), ""));
    let mut tokens: Vec<(Algorithm, String)> =
        signers.iter().map(|s| (s.alg, s.sign(&claims()))).collect();
    // One RSA key serves every RSA algorithm (its JWK does not pin one).
    for alg in [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ] {
        let mut header = Header::new(alg);
        header.kid = Some("rsa".into());
        let token = jsonwebtoken::encode(&header, &claims(), &rsa.key).expect("sign");
        tokens.push((alg, token));
    }
    for (alg, token) in tokens {
        let (auth, _) = match authn(&a, &bearer(&token), "/") {
            AuthnOutcome::Authenticated { auth, edits } => (auth, edits),
            other => panic!("{alg:?}: {other}"),
        };
        assert_eq!(auth.principal(), "https://issuer.example/alice", "{alg:?}");
        assert_eq!(auth.audiences, vec!["cart".to_owned()]);
    }
}

#[test]
fn openssl_built_token_verifies() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/jwt");
    let jwks = std::fs::read_to_string(format!("{dir}/openssl-rs256.jwks.json")).expect("jwks");
    let token = std::fs::read_to_string(format!("{dir}/openssl-rs256.jwt")).expect("token");
    let yaml = policy(jwks.trim(), "").replace(ISS, "https://openssl.example");
    let a = load(&yaml);
    let (auth, _) = authenticated(authn(&a, &bearer(token.trim()), "/"));
    assert_eq!(auth.principal(), "https://openssl.example/carol");
    assert_eq!(auth.claims["scope"], json!(["read", "write"]));
    // One flipped signature bit is caught.
    let mut bad = token.trim().to_owned();
    let last = bad.pop().expect("non-empty");
    bad.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        denied(authn(&a, &bearer(&bad), "/")),
        JwtError::VerificationFailed
    );
}

#[test]
fn time_checks_use_the_callers_clock_with_60s_leeway() {
    let s = signer(Algorithm::ES256, "k");
    let a = load(&policy(&jwks(&[&s]), ""));
    let with = |patch: Value| {
        let mut c = claims();
        for (k, v) in patch.as_object().expect("object") {
            c[k] = v.clone();
        }
        bearer(&s.sign(&c))
    };
    let expired = with(json!({"exp": NOW - 61}));
    assert_eq!(denied(authn(&a, &expired, "/")), JwtError::Expired);
    assert_eq!(JwtError::Expired.to_string(), "Jwt is expired");
    authenticated(authn(&a, &with(json!({"exp": NOW - 59})), "/"));
    // The same token is fine for a caller whose clock is earlier.
    authenticated(a.authenticate(&TARGET, &expired, "/", NOW - 3600));

    let early = with(json!({"nbf": NOW + 61}));
    assert_eq!(denied(authn(&a, &early, "/")), JwtError::NotYetValid);
    authenticated(authn(&a, &with(json!({"nbf": NOW + 30})), "/"));

    assert_eq!(
        denied(authn(&a, &with(json!({"exp": "tomorrow"})), "/")),
        JwtError::BadExp
    );
    // No exp at all is accepted, as in Envoy.
    let mut c = claims();
    c.as_object_mut().expect("object").remove("exp");
    authenticated(authn(&a, &bearer(&s.sign(&c)), "/"));
}

#[test]
fn issuer_must_be_configured() {
    let s = signer(Algorithm::ES256, "k");
    let a = load(&policy(&jwks(&[&s]), ""));
    let mut c = claims();
    c["iss"] = json!("https://evil.example");
    let reason = denied(authn(&a, &bearer(&s.sign(&c)), "/"));
    assert_eq!(reason, JwtError::UnknownIssuer);
    assert_eq!(reason.to_string(), "Jwt issuer is not configured");
}

#[test]
fn audiences_any_of_with_envoy_normalization() {
    let s = signer(Algorithm::ES256, "k");
    let a = load(&policy(
        &jwks(&[&s]),
        "    audiences: [\"cart.example\", \"https://shop.example/\"]",
    ));
    let token = |aud: Value| {
        let mut c = claims();
        c["aud"] = aud;
        bearer(&s.sign(&c))
    };
    authenticated(authn(&a, &token(json!("https://cart.example/")), "/"));
    authenticated(authn(&a, &token(json!(["other", "shop.example"])), "/"));
    assert_eq!(
        denied(authn(&a, &token(json!(["other", "cart"])), "/")),
        JwtError::AudienceNotAllowed
    );
    assert_eq!(
        denied(authn(&a, &token(json!(42)), "/")),
        JwtError::BadAudience
    );
    // Without `audiences` any audience (or none) is accepted.
    let open = load(&policy(&jwks(&[&s]), ""));
    authenticated(authn(&open, &token(json!("anything")), "/"));
}

#[test]
fn signatures_and_keys() {
    let s = signer(Algorithm::ES256, "k1");
    let a = load(&policy(&jwks(&[&s]), ""));
    // Same kid, another key.
    let impostor = signer(Algorithm::ES256, "k1");
    assert_eq!(
        denied(authn(&a, &bearer(&impostor.sign(&claims())), "/")),
        JwtError::VerificationFailed
    );
    // A valid token with its payload swapped.
    let good = s.sign(&claims());
    let mut parts: Vec<&str> = good.split('.').collect();
    let mut c = claims();
    c["sub"] = json!("mallory");
    let forged_payload = URL_SAFE_NO_PAD.encode(c.to_string());
    parts[1] = &forged_payload;
    assert_eq!(
        denied(authn(&a, &bearer(&parts.join(".")), "/")),
        JwtError::VerificationFailed
    );
    // Unknown kid.
    let other_kid = signer(Algorithm::ES256, "k2");
    let reason = denied(authn(&a, &bearer(&other_kid.sign(&claims())), "/"));
    assert_eq!(reason, JwtError::KidAlgMismatch);
    assert_eq!(
        reason.to_string(),
        "Jwks doesn't have key to match kid or alg from Jwt"
    );
    // An algorithm the key set has no key for.
    let ed = signer(Algorithm::EdDSA, "k1");
    assert_eq!(
        denied(authn(&a, &bearer(&ed.sign(&claims())), "/")),
        JwtError::KidAlgMismatch
    );
    // A JWK that pins its algorithm is not used for another one.
    let rsa = signer(Algorithm::RS256, "pinned");
    let mut pinned = rsa.jwk.clone();
    pinned["alg"] = json!("RS256");
    let a_pinned = load(&policy(&json!({"keys": [pinned]}).to_string(), ""));
    let mut header = Header::new(Algorithm::PS256);
    header.kid = Some("pinned".into());
    let ps = jsonwebtoken::encode(&header, &claims(), &rsa.key).expect("sign");
    assert_eq!(
        denied(authn(&a_pinned, &bearer(&ps), "/")),
        JwtError::KidAlgMismatch
    );
    authenticated(authn(&a_pinned, &bearer(&rsa.sign(&claims())), "/"));
    // No kid in the token: every key of the right type is tried.
    let second = signer(Algorithm::ES256, "k2");
    let both = load(&policy(&jwks(&[&s, &second]), ""));
    let second = second.without_kid();
    authenticated(authn(&both, &bearer(&second.sign(&claims())), "/"));
}

#[test]
fn alg_none_and_hmac_are_refused_before_any_key() {
    let rsa = signer(Algorithm::RS256, "rsa");
    let secret_b64 = URL_SAFE_NO_PAD.encode(b"shared-secret");
    // The JWKS also carries an `oct` key: it must never be used.
    let mut set: Value = serde_json::from_str(&jwks(&[&rsa])).expect("json");
    set["keys"]
        .as_array_mut()
        .expect("keys")
        .push(json!({"kty": "oct", "kid": "rsa", "k": secret_b64}));
    let set = set.to_string();
    let a = load(&policy(&set, ""));

    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let payload = b64(&claims());
    for alg in ["none", "None", "NONE", ""] {
        let header = b64(&json!({"alg": alg, "typ": "JWT"}));
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
        ] {
            let got = authn(&a, &bearer(&token), "/");
            assert!(
                matches!(
                    got,
                    AuthnOutcome::Denied {
                        reason: JwtError::UnsupportedAlg | JwtError::BadFormat
                    }
                ),
                "alg {alg:?}: {got}"
            );
        }
    }
    assert_eq!(
        denied(authn(
            &a,
            &bearer(&format!("{}.{payload}.", b64(&json!({"alg": "none"})))),
            "/"
        )),
        JwtError::UnsupportedAlg
    );

    // HS256 keyed with every public form of the RSA key (the algorithm-confusion attack), and
    // with the oct key's secret.
    let n = rsa.jwk["n"].as_str().expect("n").to_owned();
    let secrets: Vec<Vec<u8>> = vec![
        n.clone().into_bytes(),
        URL_SAFE_NO_PAD.decode(&n).expect("n bytes"),
        rsa.jwk.to_string().into_bytes(),
        set.clone().into_bytes(),
        b"shared-secret".to_vec(),
    ];
    for secret in secrets {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let mut header = Header::new(alg);
            header.kid = Some("rsa".into());
            let token =
                jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(&secret))
                    .expect("sign");
            assert_eq!(
                denied(authn(&a, &bearer(&token), "/")),
                JwtError::UnsupportedAlg,
                "{alg:?}"
            );
        }
    }
}

#[test]
fn malformed_tokens() {
    let s = signer(Algorithm::ES256, "k");
    let a = load(&policy(&jwks(&[&s]), ""));
    let good = s.sign(&claims());
    let (h, rest) = good.split_once('.').expect("dots");
    let (p, sig) = rest.split_once('.').expect("dots");
    let cases: Vec<(String, JwtError)> = vec![
        ("abc".into(), JwtError::BadFormat),
        (format!("{h}.{p}"), JwtError::BadFormat),
        (format!("{good}.extra"), JwtError::BadFormat),
        (format!("!!!.{p}.{sig}"), JwtError::HeaderBadBase64),
        (
            format!("{}.{p}.{sig}", URL_SAFE_NO_PAD.encode("not json")),
            JwtError::HeaderBadJson,
        ),
        (
            format!("{}.{p}.{sig}", URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT"}"#)),
            JwtError::HeaderBadAlg,
        ),
        (
            format!(
                "{}.{p}.{sig}",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","crit":["exp"]}"#)
            ),
            JwtError::UnsupportedCritical,
        ),
        (format!("{h}.%%%.{sig}"), JwtError::PayloadBadBase64),
        (
            format!("{h}.{}.{sig}", URL_SAFE_NO_PAD.encode("[1,2]")),
            JwtError::PayloadBadJson,
        ),
        (format!("{h}.{p}.***"), JwtError::SignatureBadBase64),
    ];
    for (token, want) in cases {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
        assert_eq!(denied(authn(&a, &headers, "/")), want, "{token}");
    }
}

// === locations ===

#[test]
fn custom_header_with_prefix() {
    let s = signer(Algorithm::ES256, "k");
    let a = load(&policy(
        &jwks(&[&s]),
        "    fromHeaders: [{name: x-jwt-assertion, prefix: \"Token \"}]",
    ));
    let token = s.sign(&claims());
    let mut h = HeaderMap::new();
    h.insert(
        "x-jwt-assertion",
        HeaderValue::from_str(&format!("Token {token}")).expect("header"),
    );
    let (_, edits) = authenticated(authn(&a, &h, "/"));
    assert_eq!(edits.removed_headers(), ["x-jwt-assertion"]);
    // Without the exact prefix the header holds no token.
    h.insert(
        "x-jwt-assertion",
        HeaderValue::from_str(&format!("token {token}")).expect("header"),
    );
    anonymous(authn(&a, &h, "/"));
    // Configured locations replace the defaults.
    anonymous(authn(
        &a,
        &bearer(&token),
        &format!("/?access_token={token}"),
    ));
}

#[test]
fn default_locations() {
    let s = signer(Algorithm::ES256, "k");
    let a = load(&policy(&jwks(&[&s]), ""));
    let token = s.sign(&claims());
    // Scheme is case-insensitive in the default location.
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("bearer {token}")).expect("header"),
    );
    authenticated(authn(&a, &h, "/"));
    // Basic credentials are not a token.
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Basic dXNlcjpwYXNz"),
    );
    anonymous(authn(&a, &h, "/"));
    // access_token query parameter, removed before forwarding.
    let path = format!("/items?page=2&access_token={token}&sort=asc");
    let (_, edits) = authenticated(authn(&a, &HeaderMap::new(), &path));
    assert_eq!(edits.apply_to_path(&path), "/items?page=2&sort=asc");
    assert_eq!(edits.apply_to_path("/plain"), "/plain");
}

#[test]
fn query_param_and_cookie_locations() {
    let s = signer(Algorithm::ES256, "k");
    let a = load(&policy(
        &jwks(&[&s]),
        "    fromParams: [jwt]\n    fromCookies: [session]",
    ));
    let token = s.sign(&claims());
    let path = format!("/x?jwt={token}");
    let (_, edits) = authenticated(authn(&a, &HeaderMap::new(), &path));
    assert_eq!(edits.apply_to_path(&path), "/x");

    let mut h = HeaderMap::new();
    h.insert(
        http::header::COOKIE,
        HeaderValue::from_str(&format!("theme=dark; session={token}; lang=en")).expect("cookie"),
    );
    let (auth, edits) = authenticated(authn(&a, &h, "/"));
    assert_eq!(auth.subject.as_deref(), Some("alice"));
    edits.apply(&mut h);
    assert_eq!(h[http::header::COOKIE], "theme=dark; lang=en");
}

#[test]
fn every_token_must_be_valid() {
    let s = signer(Algorithm::ES256, "k");
    let a = load(&policy(&jwks(&[&s]), ""));
    let good = s.sign(&claims());
    let mut c = claims();
    c["exp"] = json!(NOW - 3600);
    let stale = s.sign(&c);
    assert_eq!(
        denied(authn(
            &a,
            &bearer(&good),
            &format!("/?access_token={stale}")
        )),
        JwtError::Expired
    );
    // Two valid tokens: the principal comes from the first location (Authorization).
    let mut c = claims();
    c["sub"] = json!("bob");
    let bob = s.sign(&c);
    let (auth, _) = authenticated(authn(&a, &bearer(&good), &format!("/?access_token={bob}")));
    assert_eq!(auth.subject.as_deref(), Some("alice"));
}

// === remote key sets ===

#[test]
fn jwks_uri_fetch_and_rotation() {
    let yaml = format!(
        r#"
apiVersion: security.istio.io/v1beta1
kind: RequestAuthentication
metadata: {{name: remote, namespace: shop}}
spec:
  targetRefs: [{{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}}]
  jwtRules:
  - issuer: {ISS}
    jwksUri: https://issuer.example/keys
    timeout: 2s
  - issuer: https://accounts.example
"#
    );
    let a = load(&yaml);
    let uris = a.jwks_uris();
    assert_eq!(uris.len(), 2, "{uris:?}");
    assert_eq!(
        uris[0].uri,
        "https://accounts.example/.well-known/openid-configuration"
    );
    assert!(uris[0].openid_discovery);
    assert_eq!(uris[0].timeout, Duration::from_secs(5));
    assert_eq!(uris[1].uri, "https://issuer.example/keys");
    assert!(!uris[1].openid_discovery);
    assert_eq!(uris[1].timeout, Duration::from_secs(2));

    let old = signer(Algorithm::ES256, "2024");
    let new = signer(Algorithm::RS256, "2025");
    let old_token = old.sign(&claims());
    let new_token = new.sign(&claims());
    let uri = "https://issuer.example/keys";
    let reason = denied(authn(&a, &bearer(&old_token), "/"));
    assert_eq!(reason, JwtError::JwksNotFetched);
    assert_eq!(reason.to_string(), "Jwks remote fetch is failed");

    assert_eq!(a.set_jwks(uri, &jwks(&[&old])), Ok(1));
    assert!(a.has_jwks(uri));
    authenticated(authn(&a, &bearer(&old_token), "/"));
    assert_eq!(
        denied(authn(&a, &bearer(&new_token), "/")),
        JwtError::KidAlgMismatch
    );

    // A bad document leaves the current keys in place.
    assert!(matches!(
        a.set_jwks(uri, "{\"keys\": 7}"),
        Err(JwksError::Malformed(_))
    ));
    assert!(matches!(
        a.set_jwks(uri, r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#),
        Err(JwksError::NoUsableKeys(_))
    ));
    authenticated(authn(&a, &bearer(&old_token), "/"));
    assert!(matches!(
        a.set_jwks("https://unknown.example/keys", &jwks(&[&old])),
        Err(JwksError::UnknownUri(_))
    ));

    // Rotation: the old kid is gone, the new key works.
    assert_eq!(a.set_jwks(uri, &jwks(&[&new])), Ok(1));
    assert_eq!(
        denied(authn(&a, &bearer(&old_token), "/")),
        JwtError::KidAlgMismatch
    );
    authenticated(authn(&a, &bearer(&new_token), "/"));

    // A reload keeps fetched keys when asked to.
    let reloaded = load(&yaml);
    assert_eq!(
        denied(authn(&reloaded, &bearer(&new_token), "/")),
        JwtError::JwksNotFetched
    );
    reloaded.adopt_jwks(&a);
    authenticated(authn(&reloaded, &bearer(&new_token), "/"));

    // OpenID discovery: the caller reads jwks_uri from the document.
    assert_eq!(
        ambit_authn::jwks_uri_from_openid_configuration(
            r#"{"issuer":"https://accounts.example","jwks_uri":"https://accounts.example/certs"}"#
        ),
        Ok("https://accounts.example/certs".to_owned())
    );
}

// === forwarding ===

#[test]
fn output_headers_and_token_stripping() {
    let s = signer(Algorithm::ES256, "k");
    let a = load(&policy(
        &jwks(&[&s]),
        r#"    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders:
    - {header: x-jwt-sub, claim: sub}
    - {header: x-jwt-role, claim: realm.role}
    - {header: x-jwt-groups, claim: groups}
    - {header: x-jwt-level, claim: level}
    - {header: x-jwt-object, claim: realm}"#,
    ));
    let mut c = claims();
    c["realm"] = json!({"role": "manager"});
    c["groups"] = json!(["dev", "ops"]);
    c["level"] = json!(3);
    let token = s.sign(&c);
    let mut h = bearer(&token);
    h.insert("x-jwt-object", HeaderValue::from_static("forged"));
    h.insert("x-other", HeaderValue::from_static("kept"));
    let (_, edits) = authenticated(authn(&a, &h, "/"));
    edits.apply(&mut h);
    assert!(
        h.get(http::header::AUTHORIZATION).is_none(),
        "token stripped"
    );
    assert_eq!(h["x-jwt-sub"], "alice");
    assert_eq!(h["x-jwt-role"], "manager");
    assert_eq!(h["x-jwt-groups"], "dev,ops");
    assert_eq!(h["x-jwt-level"], "3");
    assert!(h.get("x-jwt-object").is_none(), "object claims set nothing");
    assert_eq!(h["x-other"], "kept");
    let payload = URL_SAFE_NO_PAD
        .decode(h["x-jwt-payload"].as_bytes())
        .expect("base64url");
    let payload: Value = serde_json::from_slice(&payload).expect("json");
    assert_eq!(payload, c);

    // Clients cannot forge output headers when they send no token.
    let mut forged = HeaderMap::new();
    forged.insert("x-jwt-sub", HeaderValue::from_static("admin"));
    forged.insert("x-jwt-payload", HeaderValue::from_static("e30"));
    let edits = anonymous(authn(&a, &forged, "/"));
    edits.apply(&mut forged);
    assert!(forged.is_empty(), "{forged:?}");
}

#[test]
fn forward_original_token_keeps_it() {
    let s = signer(Algorithm::ES256, "k");
    let a = load(&policy(&jwks(&[&s]), "    forwardOriginalToken: true"));
    let mut h = bearer(&s.sign(&claims()));
    let (_, edits) = authenticated(authn(&a, &h, "/"));
    assert!(edits.is_empty(), "{edits:?}");
    edits.apply(&mut h);
    assert!(h.get(http::header::AUTHORIZATION).is_some());
}

// === attachment, loading ===

#[test]
fn rules_only_apply_to_their_targets() {
    let s = signer(Algorithm::ES256, "k");
    let a = load(&policy(&jwks(&[&s]), ""));
    let orders = WaypointTarget {
        service: Some(("shop", "orders")),
        ..TARGET
    };
    assert!(a.applies_to(&TARGET));
    assert!(!a.applies_to(&orders));
    // No rule applies: the token is not even read, the request stays anonymous.
    let h = bearer("not-a-jwt");
    anonymous(a.authenticate(&orders, &h, "/", NOW));
    assert_eq!(denied(authn(&a, &h, "/")), JwtError::BadFormat);
}

#[test]
fn loading_errors_and_warnings() {
    let s = signer(Algorithm::ES256, "k");
    let set = jwks(&[&s]);
    let err = |extra: &str, jwks: &str| {
        Authenticators::parse(&policy(jwks, extra), "f.yaml", "istio-system")
            .expect_err(extra)
            .to_string()
    };
    let e = err("    jwksUri: https://x.example/keys", &set);
    assert!(
        e.starts_with(
            "f.yaml: RequestAuthentication shop/jwt: spec.jwtRules[0].jwks: set jwks or jwksUri"
        ),
        "{e}"
    );
    let e = err("", "{\"keys\": []}");
    assert!(e.contains("spec.jwtRules[0].jwks: no usable key"), "{e}");
    let e = err("    fromHeaders: [{name: \"bad header\"}]", &set);
    assert!(e.contains("fromHeaders[0].name"), "{e}");
    let e = err("    timeout: soon", &set);
    assert!(e.contains("timeout"), "{e}");
    // A misspelt field is a warning naming the field meant (the one unknown-field rule).
    let (_, warnings) =
        Authenticators::parse(&policy(&set, "    issuerz: x"), "f.yaml", "istio-system")
            .expect("a misspelt field is not an error");
    assert_eq!(
        warnings[0].to_string(),
        "f.yaml: RequestAuthentication shop/jwt: spec.jwtRules[0].issuerz: unknown field; ignored (did you mean `issuer`?)"
    );

    let selector = r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: sidecar, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  jwtRules: [{issuer: x, jwksUri: "https://x.example/keys"}]
"#;
    let (a, warnings) = Authenticators::parse(selector, "", "istio-system").expect("loads");
    assert!(a.is_empty());
    assert!(
        warnings[0]
            .to_string()
            .contains("waypoints ignore selector policies"),
        "{warnings:?}"
    );
}

// === with authorization ===

#[test]
fn authenticated_claims_drive_authorization() {
    let s = signer(Algorithm::ES256, "k");
    let yaml = format!(
        "{}---\n{}",
        policy(&jwks(&[&s]), "    spaceDelimitedClaims: [roles]"),
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: writers, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: cart}]
  rules:
  - from: [{source: {requestPrincipals: ["https://issuer.example/*"]}}]
    to: [{operation: {methods: ["POST"]}}]
    when:
    - {key: "request.auth.claims[scope]", values: ["cart:write"]}
    - {key: "request.auth.claims[roles]", values: ["editor"]}
"#
    );
    let authn_set = load(&yaml);
    let (policies, warnings) = L7Policies::parse(&yaml, "", "istio-system").expect("loads");
    assert!(warnings.is_empty(), "{warnings:?}");
    let frontend = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/frontend").expect("id");
    let decide = |scope: &str| {
        let mut c = claims();
        c["scope"] = json!(scope);
        c["roles"] = json!("viewer editor");
        let headers = bearer(&s.sign(&c));
        let (auth, _) = authenticated(authn(&authn_set, &headers, "/cart"));
        let ip = "10.0.0.1".parse().expect("ip");
        let req = HttpRequest {
            source_id: Some(&frontend),
            source_ip: ip,
            remote_ip: ip,
            destination_ip: ip,
            destination_port: 80,
            host: "cart",
            method: "POST",
            path: "/cart",
            headers: &headers,
            auth: Some(&auth),
            sni: None,
        };
        policies.evaluate(&TARGET, &req).allowed
    };
    assert!(decide("cart:read cart:write"));
    assert!(!decide("cart:read"));
}
