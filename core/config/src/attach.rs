//! Which waypoint-side objects (AuthorizationPolicy, RequestAuthentication) apply to a request:
//! attachment by `targetRef` / `targetRefs`, as Istio does for waypoints. Shared by the L7
//! authorization and the JWT authentication loaders, so both attach the same way.
//!
//! See [`WaypointTarget`] for the rules.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{ConfigError, Report};

/// The waypoint a request passes through, and the service it is for: what decides which
/// waypoint-side objects (AuthorizationPolicy, RequestAuthentication) apply, by their
/// `targetRef` / `targetRefs`, as Istio attaches them for waypoints:
///
/// | `targetRefs` entry | applies to |
/// |---|---|
/// | `kind: Gateway` (group `gateway.networking.k8s.io`), same namespace | all traffic through that waypoint |
/// | `kind: Service` (group `""`), same namespace | traffic for that service through any waypoint |
/// | `kind: ServiceEntry` (group `networking.istio.io`), same namespace | like `Service`, by name |
/// | `kind: GatewayClass`, name `istio-waypoint`, in the root namespace | all traffic through every waypoint |
///
/// Waypoints apply nothing else: objects with a `selector` are for sidecars and ztunnel, and
/// objects with neither `selector` nor `targetRefs` apply to the namespace's workloads through
/// ztunnel (L4 only). Both are reported as warnings and skipped. An entry naming another
/// namespace, another kind, or the wrong group is reported and ignored; if no entry is usable
/// the object applies nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaypointTarget<'a> {
    /// The waypoint's namespace.
    pub namespace: &'a str,
    /// The waypoint's name (its Gateway resource).
    pub name: &'a str,
    /// The destination service as `(namespace, name)`: a Service, or a ServiceEntry by its
    /// object name. `None` when the request is addressed to a workload directly.
    pub service: Option<(&'a str, &'a str)>,
}

/// Where one object applies.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attachment {
    /// Every waypoint (GatewayClass `istio-waypoint` in the root namespace).
    AllWaypoints,
    /// One waypoint (a Gateway).
    Waypoint {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// One Service (or ServiceEntry), through any waypoint.
    Service {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

/// `spec.targetRef` / `spec.targetRefs[]` on the wire (Gateway API's
/// `PolicyTargetReference`).
#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// API group (`""` for the core group).
    #[serde(default)]
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace (must be the policy's own).
    pub namespace: Option<String>,
    /// A section of the target (a listener or port name); not used by waypoints.
    pub section_name: Option<String>,
}

/// Objects indexed by what they attach to, each bucket sorted by key, so that finding the
/// ones for a request costs two nested hash lookups per kind and allocates nothing.
#[derive(Debug)]
pub struct Attached<T> {
    all: Vec<Arc<T>>,
    waypoints: HashMap<String, HashMap<String, Vec<Arc<T>>>>,
    services: HashMap<String, HashMap<String, Vec<Arc<T>>>>,
}

/// An object that can be attached: it has a `namespace/name` key to sort by.
pub trait Keyed {
    /// The key objects in one bucket are sorted by.
    fn sort_key(&self) -> &str;
}

// === impl Attached ===

impl<T> Default for Attached<T> {
    fn default() -> Self {
        Self {
            all: Vec::new(),
            waypoints: HashMap::new(),
            services: HashMap::new(),
        }
    }
}

impl<T> Clone for Attached<T> {
    fn clone(&self) -> Self {
        Self {
            all: self.all.clone(),
            waypoints: self.waypoints.clone(),
            services: self.services.clone(),
        }
    }
}

impl<T: Keyed> Attached<T> {
    /// Indexes `item` under each of its attachments.
    pub fn insert(&mut self, at: &[Attachment], item: &Arc<T>) {
        for a in at {
            let bucket = match a {
                Attachment::AllWaypoints => &mut self.all,
                Attachment::Waypoint { namespace, name } => self
                    .waypoints
                    .entry(namespace.clone())
                    .or_default()
                    .entry(name.clone())
                    .or_default(),
                Attachment::Service { namespace, name } => self
                    .services
                    .entry(namespace.clone())
                    .or_default()
                    .entry(name.clone())
                    .or_default(),
            };
            if !bucket.iter().any(|q| Arc::ptr_eq(q, item)) {
                bucket.push(item.clone());
                bucket.sort_by(|a, b| a.sort_key().cmp(b.sort_key()));
            }
        }
    }

    /// Removes `item` from every bucket.
    pub fn remove(&mut self, item: &Arc<T>) {
        let keep = |q: &Arc<T>| !Arc::ptr_eq(q, item);
        self.all.retain(keep);
        for index in [&mut self.waypoints, &mut self.services] {
            for by_name in index.values_mut() {
                for v in by_name.values_mut() {
                    v.retain(keep);
                }
                by_name.retain(|_, v| !v.is_empty());
            }
            index.retain(|_, m| !m.is_empty());
        }
    }

    /// Mesh-wide objects, then the waypoint's, then the service's. An object attached twice
    /// (to the waypoint and to the service) is yielded twice; callers tolerate that.
    pub fn for_target<'s>(
        &'s self,
        t: &WaypointTarget<'_>,
    ) -> impl Iterator<Item = &'s Arc<T>> + Clone + 's {
        let lookup =
            |index: &'s HashMap<String, HashMap<String, Vec<Arc<T>>>>, ns: &str, name: &str| {
                index
                    .get(ns)
                    .and_then(|m| m.get(name))
                    .map_or(&[][..], Vec::as_slice)
            };
        let waypoint = lookup(&self.waypoints, t.namespace, t.name);
        let service = t
            .service
            .map_or(&[][..], |(ns, name)| lookup(&self.services, ns, name));
        self.all.iter().chain(waypoint).chain(service)
    }
}

// === targetRef resolution ===

/// The attachments of one object, with warnings for everything a waypoint ignores. An empty
/// result means the object applies to no waypoint.
pub fn resolve(
    has_selector: bool,
    target_ref: Option<TargetRef>,
    target_refs: Vec<TargetRef>,
    namespace: &str,
    root_namespace: &str,
    label: &str,
    report: &mut Report,
) -> Result<Vec<Attachment>, ConfigError> {
    let warn = |report: &mut Report, field: &str, message: String| {
        report.warn(label, field, message);
    };
    let (refs, field) = match (target_ref, target_refs.is_empty()) {
        (Some(_), false) => {
            return Err(report.error(
                label,
                "spec.targetRef",
                "set targetRef or targetRefs, not both",
            ));
        }
        (Some(r), true) => (vec![r], "spec.targetRef"),
        (None, _) => (target_refs, "spec.targetRefs"),
    };
    if has_selector && !refs.is_empty() {
        return Err(report.error(
            label,
            "spec.selector",
            "set selector or targetRefs, not both",
        ));
    }
    if has_selector {
        warn(
            report,
            "spec.selector",
            "selects workloads by label; waypoints ignore selector policies (sidecars and \
             ztunnel enforce them); not applied by the waypoint"
                .into(),
        );
        return Ok(Vec::new());
    }
    if refs.is_empty() {
        warn(
            report,
            "spec",
            format!(
                "has no targetRefs: it applies to the workloads of namespace {namespace:?} \
                 through ztunnel (L4 only), not to waypoints; not applied by the waypoint"
            ),
        );
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(refs.len());
    for (i, r) in refs.into_iter().enumerate() {
        let at = if field == "spec.targetRef" {
            field.to_owned()
        } else {
            format!("{field}[{i}]")
        };
        if let Some(ns) = r.namespace.as_deref().filter(|ns| *ns != namespace) {
            warn(
                report,
                &at,
                format!(
                    "targets namespace {ns:?}; only the policy's own namespace can be targeted; \
                     ignored"
                ),
            );
            continue;
        }
        let group = r.group.as_str();
        match (r.kind.as_str(), group) {
            ("Gateway", "gateway.networking.k8s.io") => out.push(Attachment::Waypoint {
                namespace: namespace.to_owned(),
                name: r.name,
            }),
            ("GatewayClass", "gateway.networking.k8s.io") => {
                if namespace == root_namespace && r.name == "istio-waypoint" {
                    out.push(Attachment::AllWaypoints);
                } else {
                    warn(
                        report,
                        &at,
                        format!(
                            "GatewayClass {:?} in namespace {namespace:?}: waypoints only honour \
                             GatewayClass istio-waypoint in the root namespace \
                             {root_namespace:?}; ignored",
                            r.name
                        ),
                    );
                }
            }
            ("Service", "" | "core") | ("ServiceEntry", "networking.istio.io") => {
                out.push(Attachment::Service {
                    namespace: namespace.to_owned(),
                    name: r.name,
                })
            }
            (kind, group) => warn(
                report,
                &at,
                format!(
                    "{kind} in group {group:?} cannot be targeted by a waypoint policy (use \
                     Gateway or GatewayClass in gateway.networking.k8s.io, Service in \"\", or \
                     ServiceEntry in networking.istio.io); ignored"
                ),
            ),
        }
    }
    if out.is_empty() {
        warn(
            report,
            field,
            "no usable target: not applied by any waypoint".into(),
        );
    }
    Ok(out)
}
