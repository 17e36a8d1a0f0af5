//! Loading Istio YAML: what is refused, and what is accepted with a warning.

use ambit_authz::{Action, IstioPolicies, PolicySet, Scope};

fn parse(yaml: &str) -> Result<IstioPolicies, ambit_config::ConfigError> {
    IstioPolicies::parse(yaml, "", "istio-system")
}

#[test]
fn errors_name_the_object_and_the_field() {
    let cases = [
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\nspec:\n  action: MAYBE\n",
            "AuthorizationPolicy ns/p: spec.action: unknown action \"MAYBE\"",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p, namespace: ns}\nspec:\n  mtls: {mode: SOMETIMES}\n",
            "PeerAuthentication ns/p: spec.mtls.mode: unknown mode \"SOMETIMES\"",
        ),
        (
            "apiVersion: security.istio.io/v2\nkind: AuthorizationPolicy\nmetadata: {name: p}\n",
            "AuthorizationPolicy default/p: apiVersion: \"security.istio.io/v2\" is not supported",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {namespace: ns}\n",
            "AuthorizationPolicy in document 1: metadata.name: missing",
        ),
        ("key: [unclosed\n", "document 1: : not valid YAML"),
        (
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\nspec:\n  rules: {not: a list}\n",
            "AuthorizationPolicy ns/p: spec.rules: invalid type",
        ),
    ];
    for (yaml, want) in cases {
        let err = parse(yaml).expect_err(want);
        assert!(err.to_string().starts_with(want), "got {err}\nwant {want}");
    }
}

#[test]
fn misspelt_fields_warn_with_the_nearest_known_field_and_istio_fields_load() {
    // A field the Istio API does not have is a warning (ignored), naming the likely intended
    // field; a field it has but the node proxy cannot use is never refused as unknown.
    let loaded = parse(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\nspec:\n  rules:\n  - from: [{source: {principalz: [x], trustDomains: [td]}}]\n",
    )
    .expect("loads");
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert!(
        warnings.iter().any(|w| w
            == "AuthorizationPolicy ns/p: spec.rules[0].from[0].source.principalz: unknown field; ignored (did you mean `principals`?)"),
        "{warnings:?}"
    );
    assert!(
        !warnings.iter().any(|w| w.contains("trustDomains: unknown")),
        "{warnings:?}"
    );
}

#[test]
fn deeply_nested_yaml_is_an_error_not_a_crash() {
    let yaml = format!("spec: {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
    assert!(parse(&yaml).is_err());
}

#[test]
fn unsupported_parts_are_reported() {
    let yaml = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: ns}
spec: {action: AUDIT, rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: ns}
spec: {action: CUSTOM, provider: {name: opa}, rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: waypoint, namespace: ns}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mixed, namespace: ns}
spec:
  action: DENY
  rules:
  - from: [{source: {requestPrincipals: ["*"], namespaces: [bad]}}]
    to: [{operation: {ports: ["80", "http", "70000"], hosts: [x.example]}}]
    when: [{key: source.ip, values: ["not-an-ip", "10.0.0.0/8"]}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cm, namespace: ns}
"#;
    let loaded = parse(yaml).expect("loads");
    let text: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    let has = |needle: &str| text.iter().any(|w| w.contains(needle));
    assert!(
        has(
            "AuthorizationPolicy ns/audit: spec.action: the node proxy does not support the AUDIT action"
        ),
        "{text:#?}"
    );
    assert!(
        has(
            "AuthorizationPolicy ns/ext: spec.action: the node proxy does not support the CUSTOM action"
        ),
        "{text:#?}"
    );
    assert!(
        has("AuthorizationPolicy ns/waypoint: spec.targetRefs: targets a waypoint"),
        "{text:#?}"
    );
    assert!(
        has(
            "spec.rules[0]: HTTP attributes (hosts, requestPrincipals) need a waypoint; this DENY rule is enforced without them"
        ),
        "{text:#?}"
    );
    assert!(
        has("spec.rules[0].to[0].operation.ports: http is not a port"),
        "{text:#?}"
    );
    assert!(
        has("spec.rules[0].to[0].operation.ports: 70000 is not a port"),
        "{text:#?}"
    );
    assert!(
        has("spec.rules[0].when[0].values: \"not-an-ip\" is not an IP"),
        "{text:#?}"
    );
    assert!(
        has("ConfigMap ns/cm: kind: not a security policy"),
        "{text:#?}"
    );
    // Only the DENY policy is enforced, with its L4 parts.
    assert_eq!(loaded.authorizations.len(), 1);
    let (mixed, selector) = &loaded.authorizations[0];
    assert_eq!(
        (mixed.name.as_str(), mixed.action, mixed.scope),
        ("mixed", Action::Deny, Scope::Namespace)
    );
    assert!(selector.is_none());
    let clauses = &mixed.rules[0].clauses;
    assert_eq!(clauses.len(), 3, "to, from, when");
    assert_eq!(clauses[0].matches[0].destination_ports, vec![80]);
    let mut set = PolicySet::new();
    loaded.apply_to(&mut set);
    assert_eq!(set.len(), 1);
}
