//! Istio authorization for ambit, as pure data plus evaluation: no I/O, no runtime, no JWT
//! library.
//!
//! Two enforcement points share this crate.
//!
//! **The node proxy (ztunnel role), L4.**
//! - [`model`]: the workload-API L4 policy model (`istio.security.Authorization`).
//! - [`PolicySet`]: all policies of a node, indexed by scope; [`PolicySet::applicable`] picks the
//!   ones for one workload and [`Applicable::evaluate`] runs ztunnel's decision order on a
//!   [`Connection`]: DENY match → deny; no ALLOW policy → allow; ALLOW match → allow; else deny.
//!   Decisions are values ([`Decision`]) naming the deciding policy.
//! - [`IstioPolicies`]: Istio `AuthorizationPolicy` and `PeerAuthentication` YAML translated to
//!   that model exactly as istiod does for ztunnel, with warnings for whatever the node proxy
//!   cannot enforce.
//!
//! **The waypoint, L7** (policies attached with `targetRefs`; see [`WaypointTarget`]).
//! - [`L7Policies`] ([`l7`] module docs): `AuthorizationPolicy` with full HTTP semantics (every
//!   source, operation and `when` field; path normalization and URI templates; AUDIT; CUSTOM
//!   failing closed), compiled at load time. [`L7Policies::evaluate`] takes an [`HttpRequest`]
//!   and gives an [`L7Decision`] (deny → HTTP 403).
//! - The request's JWT identity is an input, [`RequestAuth`]: ambit-authn verifies tokens
//!   (`RequestAuthentication`) and hands it over; a waypoint calls `authenticate` (401 on a bad
//!   token), then [`L7Policies::evaluate`] with the result (403 when not allowed).
//!
//! Every loader reports problems as [`ambit_config::ConfigError`] `{file, object, field,
//! message}` and [`ambit_config::ConfigWarning`].
//!
//! L4 example:
//!
//! ```
//! use std::net::IpAddr;
//! use ambit_identity::SpiffeId;
//! use ambit_authz::{Connection, IstioPolicies, Labels, PolicySet, PolicyTarget};
//!
//! let yaml = r#"
//! apiVersion: security.istio.io/v1
//! kind: AuthorizationPolicy
//! metadata: {name: allow-frontend, namespace: shop}
//! spec:
//!   rules:
//!   - from: [{source: {principals: ["cluster.local/ns/shop/sa/frontend"]}}]
//! "#;
//! let mut set = PolicySet::new();
//! IstioPolicies::parse(yaml, "policies.yaml", set.root_namespace())?.apply_to(&mut set);
//!
//! let frontend = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/frontend")?;
//! let labels = Labels::new();
//! let target = PolicyTarget { namespace: "shop", labels: &labels, policy_keys: &[] };
//! let conn = Connection {
//!     source_id: Some(&frontend),
//!     source_ip: "10.0.0.1".parse::<IpAddr>()?,
//!     destination_ip: "10.0.0.2".parse::<IpAddr>()?,
//!     destination_port: 8080,
//! };
//! let decision = set.evaluate(target, &conn);
//! assert!(decision.allowed);
//! assert_eq!(decision.policy.as_deref(), Some("shop/allow-frontend"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Waypoint example:
//!
//! ```
//! use std::net::IpAddr;
//! use ambit_identity::SpiffeId;
//! use ambit_authz::{HttpRequest, L7Policies, WaypointTarget};
//!
//! let yaml = r#"
//! apiVersion: security.istio.io/v1
//! kind: AuthorizationPolicy
//! metadata: {name: cart-readers, namespace: shop}
//! spec:
//!   targetRefs: [{kind: Service, group: "", name: cart}]
//!   rules:
//!   - from: [{source: {principals: ["cluster.local/ns/shop/sa/frontend"]}}]
//!     to: [{operation: {methods: ["GET"], paths: ["/items/{*}"]}}]
//! "#;
//! let (policies, warnings) = L7Policies::parse(yaml, "policies.yaml", "istio-system")?;
//! assert!(warnings.is_empty());
//!
//! let target = WaypointTarget { namespace: "shop", name: "waypoint", service: Some(("shop", "cart")) };
//! let headers = http::HeaderMap::new();
//! let frontend = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/frontend")?;
//! let ip = "10.0.0.1".parse::<IpAddr>()?;
//! let req = HttpRequest {
//!     source_id: Some(&frontend),
//!     source_ip: ip,
//!     remote_ip: ip,
//!     destination_ip: "10.96.0.10".parse()?,
//!     destination_port: 80,
//!     host: "cart.shop.svc.cluster.local",
//!     method: "GET",
//!     path: "/items/./42?verbose=1",
//!     headers: &headers,
//!     auth: None,
//!     sni: None,
//! };
//! let decision = policies.evaluate(&target, &req);
//! assert!(decision.allowed, "{decision}");
//! assert_eq!(decision.policy.as_deref(), Some("shop/cart-readers"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod auth;
mod istio;
pub mod l7;
pub mod model;
mod peer;
mod set;
mod wire;

pub use ambit_config::attach::WaypointTarget;
pub use auth::RequestAuth;
pub use istio::IstioPolicies;
pub use l7::{
    HttpRequest, L7Action, L7Applicable, L7Decision, L7Policies, L7Policy, L7Reason,
    PathNormalization,
};
pub use model::{
    Action, Authorization, Clause, Connection, Match, Rule, Scope, ServiceAccountMatch, StringMatch,
};
pub use peer::{MtlsMode, PeerAuthentication};
pub use set::{
    Applicable, DEFAULT_ROOT_NAMESPACE, Decision, DryRun, Labels, PolicySet, PolicyTarget, Reason,
};

use ambit_config::{ConfigError, Object, Report};

/// Istio's security API group, both served versions.
pub(crate) fn is_security_api(api_version: &str) -> bool {
    matches!(
        api_version,
        "security.istio.io/v1" | "security.istio.io/v1beta1"
    )
}

/// The error for a security kind under another API version.
pub(crate) fn unsupported_api(obj: &Object, report: &Report) -> ConfigError {
    report.error(
        &obj.label(),
        "apiVersion",
        format!(
            "{:?} is not supported; use security.istio.io/v1 or v1beta1",
            obj.api_version
        ),
    )
}

/// `metadata.annotations["istio.io/dry-run"]`: `"true"` / `"false"` (or YAML booleans).
pub(crate) fn dry_run(
    annotations: &std::collections::BTreeMap<String, serde_yaml_ng::Value>,
    warn: &mut impl FnMut(&str, String),
) -> bool {
    let Some(v) = annotations.get("istio.io/dry-run") else {
        return false;
    };
    match v {
        serde_yaml_ng::Value::Bool(b) => *b,
        serde_yaml_ng::Value::String(s) if s.eq_ignore_ascii_case("true") || s == "1" => true,
        serde_yaml_ng::Value::String(s) if s.eq_ignore_ascii_case("false") || s == "0" => false,
        _ => {
            warn(
                "metadata.annotations[istio.io/dry-run]",
                "not a boolean; the policy is enforced".into(),
            );
            false
        }
    }
}
