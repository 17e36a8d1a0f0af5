//! Istio authorization for ambit, as pure data plus evaluation.
//!
//! - [`model`]: the workload-API L4 policy model (`istio.security.Authorization`).
//! - [`PolicySet`]: all policies of a node, indexed by scope; [`PolicySet::applicable`] picks the
//!   ones for one workload and [`Applicable::evaluate`] runs ztunnel's decision order on a
//!   [`Connection`]: DENY match → deny; no ALLOW policy → allow; ALLOW match → allow; else deny.
//!   Decisions are values ([`Decision`]) naming the deciding policy.
//! - [`IstioPolicies`]: Istio `AuthorizationPolicy` and `PeerAuthentication` YAML translated to
//!   that model exactly as istiod does for ztunnel, with [`LoadWarning`]s for whatever the node
//!   proxy cannot enforce.
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
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod istio;
pub mod model;
mod peer;
mod set;

pub use istio::{IstioPolicies, LoadError, LoadWarning};
pub use model::{
    Action, Authorization, Clause, Connection, Match, Rule, Scope, ServiceAccountMatch, StringMatch,
};
pub use peer::{MtlsMode, PeerAuthentication};
pub use set::{Applicable, DEFAULT_ROOT_NAMESPACE, Decision, Labels, PolicySet, Reason, Target};
