//! Loading waypoint policies: errors, merging files, replacement, normalization settings.

use std::net::IpAddr;

use ambit_authn::{Authenticators, AuthnOutcome};
use ambit_authz::{HttpRequest, L7Action, L7Policies, PathNormalization, WaypointTarget};
use ambit_identity::SpiffeId;
use http::HeaderMap;

const TARGET: WaypointTarget<'static> = WaypointTarget {
    namespace: "shop",
    name: "waypoint",
    service: Some(("shop", "cart")),
};

fn ap(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n{spec}\n"
    )
}

const TO_CART: &str = "  targetRefs: [{kind: Service, group: \"\", name: cart}]\n";

fn decide(set: &L7Policies, method: &str, path: &str) -> bool {
    let id = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/frontend").expect("id");
    let headers = HeaderMap::new();
    let ip: IpAddr = "10.0.0.1".parse().expect("ip");
    let req = HttpRequest {
        source_id: Some(&id),
        source_ip: ip,
        remote_ip: ip,
        destination_ip: ip,
        destination_port: 80,
        host: "cart",
        method,
        path,
        headers: &headers,
        auth: None,
        sni: None,
    };
    set.evaluate(&TARGET, &req).allowed
}

#[test]
fn errors_name_the_file_object_and_field() {
    let cases = [
        (
            ap("p", &format!("{TO_CART}  action: MAYBE")),
            "f.yaml: AuthorizationPolicy shop/p: spec.action: unknown action \"MAYBE\"",
        ),
        (
            ap(
                "p",
                "  targetRef: {kind: Service, name: a}\n  targetRefs: [{kind: Service, name: b}]",
            ),
            "f.yaml: AuthorizationPolicy shop/p: spec.targetRef: set targetRef or targetRefs, not both",
        ),
        (
            ap(
                "p",
                &format!("{TO_CART}  selector: {{matchLabels: {{app: cart}}}}"),
            ),
            "f.yaml: AuthorizationPolicy shop/p: spec.selector: set selector or targetRefs, not both",
        ),
        (
            ap("p", "  targetRefs: [{kind: Service, nam: cart}]"),
            "f.yaml: AuthorizationPolicy shop/p: spec.targetRefs",
        ),
        (
            "apiVersion: security.istio.io/v2\nkind: AuthorizationPolicy\nmetadata: {name: p}\n"
                .to_owned(),
            "f.yaml: AuthorizationPolicy default/p: apiVersion: \"security.istio.io/v2\" is not supported",
        ),
        ("a: [".to_owned(), "f.yaml: document 1: : not valid YAML"),
    ];
    for (yaml, want) in cases {
        let err = L7Policies::parse(&yaml, "f.yaml", "istio-system").expect_err(want);
        assert!(err.to_string().starts_with(want), "got {err}\nwant {want}");
    }
}

#[test]
fn misspelt_fields_are_warnings_naming_the_field_meant() {
    let yaml = ap(
        "p",
        &format!("{TO_CART}  rules:\n  - to: [{{operation: {{pathz: [x]}}}}]"),
    );
    let (set, warnings) = L7Policies::parse(&yaml, "f.yaml", "istio-system").expect("loads");
    assert_eq!(set.len(), 1);
    assert_eq!(
        warnings[0].to_string(),
        "f.yaml: AuthorizationPolicy shop/p: spec.rules[0].to[0].operation.pathz: unknown field; ignored (did you mean `paths`?)"
    );
}

#[test]
fn other_kinds() {
    let yaml = format!(
        "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm, namespace: shop}}\n---\n\
         apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: ra, namespace: shop}}\n\
         spec: {{jwtRules: [{{issuer: x, jwksUri: \"https://x.example/k\"}}], targetRefs: [{{kind: Service, group: \"\", name: cart}}]}}\n",
        ap("p", &format!("{TO_CART}  rules: [{{}}]"))
    );
    let (set, warnings) = L7Policies::parse(&yaml, "", "istio-system").expect("loads");
    assert_eq!(set.len(), 1);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(
        warnings[0].to_string(),
        "ConfigMap shop/cm: kind: not an AuthorizationPolicy; skipped"
    );
    let p = set.get("shop/p").expect("policy");
    assert_eq!(
        (p.name(), p.namespace(), p.action(), p.rule_count()),
        ("p", "shop", L7Action::Allow, 1)
    );
    // The authenticator loader reads the same stream and ignores the rest silently.
    let (authn, warnings) = Authenticators::parse(&yaml, "", "istio-system").expect("loads");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(authn.len(), 1);
}

#[test]
fn merge_replace_remove() {
    let (mut set, _) = L7Policies::parse(
        &ap(
            "writes",
            &format!(
                "{TO_CART}  action: DENY\n  rules:\n  - to: [{{operation: {{methods: [POST]}}}}]"
            ),
        ),
        "a.yaml",
        "istio-system",
    )
    .expect("a");
    let (b, _) = L7Policies::parse(
        &ap(
            "reads",
            &format!("{TO_CART}  rules:\n  - to: [{{operation: {{methods: [GET, POST]}}}}]"),
        ),
        "b.yaml",
        "istio-system",
    )
    .expect("b");
    set.merge(b);
    assert_eq!(set.len(), 2);
    assert!(decide(&set, "GET", "/"));
    assert!(!decide(&set, "POST", "/"));
    assert!(!decide(&set, "PUT", "/"));

    // Same name again: replaced, not duplicated.
    let (c, _) = L7Policies::parse(
        &ap(
            "writes",
            &format!(
                "{TO_CART}  action: DENY\n  rules:\n  - to: [{{operation: {{methods: [DELETE]}}}}]"
            ),
        ),
        "c.yaml",
        "istio-system",
    )
    .expect("c");
    set.merge(c);
    assert_eq!(set.len(), 2);
    assert!(decide(&set, "POST", "/"));

    assert!(set.remove("shop/reads"));
    assert!(!set.remove("shop/reads"));
    assert!(decide(&set, "PUT", "/"));
    assert!(set.applicable(&TARGET).len() == 1);
}

#[test]
fn path_normalization_is_configurable() {
    let (mut set, _) = L7Policies::parse(
        &ap(
            "admin",
            &format!("{TO_CART}  action: DENY\n  rules:\n  - to: [{{operation: {{paths: [\"/admin/*\"]}}}}]"),
        ),
        "",
        "istio-system",
    )
    .expect("loads");
    assert_eq!(set.path_normalization(), PathNormalization::Base);
    assert!(decide(&set, "GET", "/public/..%2Fadmin/x"));
    assert!(decide(&set, "GET", "//admin/x"));
    set.set_path_normalization(PathNormalization::DecodeAndMergeSlashes);
    assert!(!decide(&set, "GET", "/public/..%2Fadmin/x"));
    assert!(!decide(&set, "GET", "//admin/x"));
    set.set_path_normalization(PathNormalization::None);
    assert!(decide(&set, "GET", "/x/../admin/y"));
}

#[test]
fn dry_run_annotation_must_be_boolean() {
    let yaml = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
                metadata: {name: p, namespace: shop, annotations: {istio.io/dry-run: maybe}}\n\
                spec:\n  targetRefs: [{kind: Service, group: \"\", name: cart}]\n  action: DENY\n  rules: [{}]\n";
    let (set, warnings) = L7Policies::parse(yaml, "", "istio-system").expect("loads");
    assert!(
        warnings[0]
            .to_string()
            .contains("not a boolean; the policy is enforced"),
        "{warnings:?}"
    );
    assert!(!decide(&set, "GET", "/"));
}

#[test]
fn authenticators_merge_keeps_key_slots_reachable() {
    let ra = |name: &str, svc: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: {name}, namespace: shop}}\n\
             spec:\n  targetRefs: [{{kind: Service, group: \"\", name: {svc}}}]\n  jwtRules:\n  - issuer: https://issuer.example\n    jwksUri: https://issuer.example/keys\n"
        )
    };
    let (mut a, _) = Authenticators::parse(&ra("a", "cart"), "", "istio-system").expect("a");
    let (b, _) = Authenticators::parse(&ra("b", "orders"), "", "istio-system").expect("b");
    a.merge(b);
    assert_eq!(a.len(), 2);
    assert_eq!(a.jwks_uris().len(), 1);
    assert_eq!(a.jwks_uris()[0].to_string(), "https://issuer.example/keys");
    // Before the keys arrive, both services refuse tokens for the issuer.
    let token = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIn0.c2ln";
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header"),
    );
    let orders = WaypointTarget {
        service: Some(("shop", "orders")),
        ..TARGET
    };
    for t in [TARGET, orders] {
        match a.authenticate(&t, &h, "/", 0) {
            AuthnOutcome::Denied { reason } => {
                assert_eq!(reason.to_string(), "Jwks remote fetch is failed")
            }
            other => panic!("{other}"),
        }
    }
    // One install reaches the rules of both files (a signature check now runs and fails).
    let jwks = r#"{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
    assert_eq!(a.set_jwks("https://issuer.example/keys", jwks), Ok(1));
    for t in [TARGET, orders] {
        match a.authenticate(&t, &h, "/", 0) {
            AuthnOutcome::Denied { reason } => {
                assert_eq!(reason.to_string(), "Jwt verification fails")
            }
            other => panic!("{other}"),
        }
    }
    assert!(a.remove("shop/b"));
    assert!(!a.applies_to(&orders));
}

#[test]
fn shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<L7Policies>();
    send_sync::<ambit_authz::L7Applicable>();
    send_sync::<Authenticators>();
    send_sync::<ambit_authn::HeaderEdits>();
    send_sync::<ambit_authz::RequestAuth>();
}
