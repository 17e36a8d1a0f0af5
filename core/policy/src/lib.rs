//! Istio security for ambit, as pure data plus evaluation: no I/O, no runtime.
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
//!   that model exactly as istiod does for ztunnel, with [`LoadWarning`]s for whatever the node
//!   proxy cannot enforce.
//!
//! **The waypoint, L7** (policies attached with `targetRefs`; see [`WaypointTarget`]).
//! - [`Authenticators`] ([`jwt`] module docs): `RequestAuthentication`, JWT verification from
//!   inline or caller-fetched JWKS, with the time passed in. [`Authenticators::authenticate`]
//!   gives an [`AuthnOutcome`]: anonymous, authenticated ([`RequestAuth`] plus the
//!   [`HeaderEdits`] to apply before forwarding), or denied (HTTP 401, [`JwtError`]).
//! - [`L7Policies`] ([`l7`] module docs): `AuthorizationPolicy` with full HTTP semantics (every
//!   source, operation and `when` field; path normalization and URI templates; AUDIT; CUSTOM
//!   failing closed), compiled at load time. [`L7Policies::evaluate`] takes an [`HttpRequest`]
//!   (which carries the [`RequestAuth`]) and gives an [`L7Decision`] (deny → HTTP 403).
//!
//! A waypoint calls them in this order per request: `authenticate` (401 on `Denied`), then
//! `evaluate` with the resulting `RequestAuth` (403 when not allowed), then applies the edits and
//! forwards.
//!
//! L4 example:
//!
//! ```
//! use std::net::IpAddr;
//! use ambit_identity::SpiffeId;
//! use ambit_policy::{Connection, IstioPolicies, Labels, PolicySet, Target};
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
//! IstioPolicies::parse(yaml, set.root_namespace())?.apply_to(&mut set);
//!
//! let frontend = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/frontend")?;
//! let labels = Labels::new();
//! let target = Target { namespace: "shop", labels: &labels, policy_keys: &[] };
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
//! use ambit_policy::{Authenticators, AuthnOutcome, HttpRequest, L7Policies, WaypointTarget};
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
//! let (authn, _) = Authenticators::parse(yaml, "policies.yaml", "istio-system")?;
//!
//! let target = WaypointTarget { namespace: "shop", name: "waypoint", service: Some(("shop", "cart")) };
//! let headers = http::HeaderMap::new();
//! let auth = match authn.authenticate(&target, &headers, "/items/42", 1_700_000_000) {
//!     AuthnOutcome::Authenticated { auth, .. } => Some(auth),
//!     AuthnOutcome::Denied { reason } => panic!("401: {reason}"),
//!     _ => None,
//! };
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
//!     auth: auth.as_ref(),
//!     sni: None,
//! };
//! let decision = policies.evaluate(&target, &req);
//! assert!(decision.allowed, "{decision}");
//! assert_eq!(decision.policy.as_deref(), Some("shop/cart-readers"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod docs;
mod istio;
pub mod jwt;
pub mod l7;
pub mod model;
mod peer;
mod set;
mod waypoint;
mod wire;

pub use istio::{IstioPolicies, LoadError, LoadWarning};
pub use jwt::{
    Authenticators, AuthnOutcome, HeaderEdits, JwksError, JwksUri, JwtError, RequestAuth,
};
pub use l7::{
    HttpRequest, L7Action, L7Applicable, L7Decision, L7Policies, L7Policy, L7Reason,
    PathNormalization,
};
pub use model::{
    Action, Authorization, Clause, Connection, Match, Rule, Scope, ServiceAccountMatch, StringMatch,
};
pub use peer::{MtlsMode, PeerAuthentication};
pub use set::{Applicable, DEFAULT_ROOT_NAMESPACE, Decision, Labels, PolicySet, Reason, Target};
pub use waypoint::WaypointTarget;
