//! A compiled set of policies, and the ztunnel decision procedure over it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use crate::model::{
    Action, Attrs, Authorization, Clause, Connection, Match, Rule, Scope, StringMatch,
};
use crate::peer::{MtlsMode, PeerAuthentication};

/// Default Istio root namespace: selector-less policies there apply mesh-wide.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

/// Label selector (`matchLabels`): every pair must be present on the workload.
pub type Labels = BTreeMap<String, String>;

/// All policies known to a node proxy, indexed by scope so that finding the ones that apply to
/// one workload costs a few hash lookups, not a scan.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    by_key: HashMap<String, Arc<Authorization>>,
    global: Vec<Arc<Authorization>>,
    by_namespace: HashMap<String, Vec<Arc<Authorization>>>,
    /// Selector policies from Istio YAML, resolved against workload labels.
    by_selector: HashMap<String, Vec<(Labels, Arc<Authorization>)>>,
    peer_authn: Vec<PeerAuthentication>,
    root_namespace: String,
}

/// The workload a connection is for, as policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct PolicyTarget<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its labels (for `selector` policies loaded from Istio YAML).
    pub labels: &'a Labels,
    /// Policy keys (`namespace/name`) it references explicitly, as istiod sends them.
    pub policy_keys: &'a [String],
}

/// The policies that apply to one workload, ready to evaluate many connections.
#[derive(Debug, Clone, Default)]
pub struct Applicable {
    deny: Vec<Arc<Authorization>>,
    allow: Vec<Arc<Authorization>>,
    dry_run: Vec<Arc<Authorization>>,
}

/// The outcome for one connection. Denial is a value, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// Whether the connection may proceed.
    pub allowed: bool,
    /// The deciding policy (`namespace/name`), when one decided.
    pub policy: Option<String>,
    /// Why.
    pub reason: Reason,
    /// Dry-run policies that matched (logged, never enforced).
    pub dry_run_matches: Vec<String>,
    /// The decision had the dry-run policies been enforced too; `None` when none applies.
    pub dry_run: Option<DryRun>,
}

/// What a decision would have been with the dry-run policies enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRun {
    /// Whether the connection would have been allowed.
    pub allowed: bool,
    /// The deciding policy, when one would have decided.
    pub policy: Option<String>,
}

/// Why a decision came out as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A DENY policy matched.
    DeniedByPolicy,
    /// An ALLOW policy matched.
    AllowedByPolicy,
    /// No ALLOW policy applies to the workload, and no DENY matched.
    NoAllowPolicies,
    /// ALLOW policies apply, but none matched.
    NoAllowMatched,
}

// === impl PolicySet ===

impl PolicySet {
    /// An empty set with root namespace `istio-system`.
    pub fn new() -> Self {
        Self::with_root_namespace(DEFAULT_ROOT_NAMESPACE)
    }

    /// An empty set with another root namespace.
    pub fn with_root_namespace(root: &str) -> Self {
        Self {
            root_namespace: root.to_owned(),
            ..Self::default()
        }
    }

    /// The root namespace.
    pub fn root_namespace(&self) -> &str {
        &self.root_namespace
    }

    /// Adds (or replaces, by key) a policy in workload-API form.
    pub fn insert(&mut self, policy: Authorization) {
        let key = policy.key();
        self.insert_keyed(&key, policy);
    }

    /// Adds (or replaces) a policy under `key`, the name workloads reference it by (the xDS
    /// resource name, normally `namespace/name`).
    pub fn insert_keyed(&mut self, key: &str, policy: Authorization) {
        self.remove(key);
        let p = Arc::new(policy);
        match p.scope {
            Scope::Global => self.global.push(p.clone()),
            Scope::Namespace => self
                .by_namespace
                .entry(p.namespace.clone())
                .or_default()
                .push(p.clone()),
            Scope::WorkloadSelector => {}
        }
        self.by_key.insert(key.to_owned(), p);
    }

    /// Adds a selector-scoped policy (from Istio YAML): it applies to workloads whose labels
    /// include `selector`, in the policy's namespace (every namespace for the root namespace).
    pub fn insert_with_selector(&mut self, policy: Authorization, selector: Labels) {
        self.remove(&policy.key());
        let p = Arc::new(Authorization {
            scope: Scope::WorkloadSelector,
            ..policy
        });
        let ns = if p.namespace == self.root_namespace {
            String::new()
        } else {
            p.namespace.clone()
        };
        self.by_selector
            .entry(ns)
            .or_default()
            .push((selector, p.clone()));
        self.by_key.insert(p.key(), p);
    }

    /// Adds (or replaces, by namespace and name) a PeerAuthentication.
    pub fn insert_peer_authentication(&mut self, pa: PeerAuthentication) {
        self.peer_authn
            .retain(|p| !(p.namespace == pa.namespace && p.name == pa.name));
        self.peer_authn.push(pa);
        self.peer_authn
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    }

    /// Every policy with the key it is stored (and referenced) under, in key order.
    pub fn keyed(&self) -> Vec<(&str, &Arc<Authorization>)> {
        let mut v: Vec<(&str, &Arc<Authorization>)> =
            self.by_key.iter().map(|(k, p)| (k.as_str(), p)).collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// Removes a policy by key; returns whether it existed.
    pub fn remove(&mut self, key: &str) -> bool {
        let Some(p) = self.by_key.remove(key) else {
            return false;
        };
        let same = |q: &Arc<Authorization>| Arc::ptr_eq(q, &p);
        self.global.retain(|q| !same(q));
        if let Some(v) = self.by_namespace.get_mut(&p.namespace) {
            v.retain(|q| !same(q));
        }
        for v in self.by_selector.values_mut() {
            v.retain(|(_, q)| !same(q));
        }
        true
    }

    /// A policy by key.
    pub fn get(&self, key: &str) -> Option<&Arc<Authorization>> {
        self.by_key.get(key)
    }

    /// Number of policies (PeerAuthentications not counted).
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether there are no policies and no PeerAuthentications.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty() && self.peer_authn.is_empty()
    }

    /// Every policy, in no particular order.
    pub fn policies(&self) -> impl Iterator<Item = &Arc<Authorization>> {
        self.by_key.values()
    }

    /// The policies that apply to `target`: global, its namespace's, the ones it references,
    /// the selector policies its labels match, and its effective PeerAuthentication as a DENY.
    pub fn applicable(&self, target: PolicyTarget<'_>) -> Applicable {
        let mut all: Vec<Arc<Authorization>> = Vec::new();
        all.extend(self.global.iter().cloned());
        if let Some(v) = self.by_namespace.get(target.namespace) {
            all.extend(v.iter().cloned());
        }
        for key in target.policy_keys {
            // Unknown keys are skipped (ztunnel warns and does the same).
            if let Some(p) = self.by_key.get(key) {
                all.push(p.clone());
            }
        }
        for ns in [target.namespace, ""] {
            for (selector, p) in self.by_selector.get(ns).into_iter().flatten() {
                if selector
                    .iter()
                    .all(|(k, v)| target.labels.get(k) == Some(v))
                {
                    all.push(p.clone());
                }
            }
        }
        if let Some(p) = self.peer_authn_policy(target) {
            all.push(Arc::new(p));
        }
        all.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        all.dedup_by(|a, b| a.namespace == b.namespace && a.name == b.name);
        let mut out = Applicable::default();
        for p in all {
            match (p.dry_run, p.action) {
                (true, _) => out.dry_run.push(p),
                (false, Action::Deny) => out.deny.push(p),
                (false, Action::Allow) => out.allow.push(p),
            }
        }
        out
    }

    /// Decides one connection to `target` (see [`Applicable::evaluate`]).
    pub fn evaluate(&self, target: PolicyTarget<'_>, conn: &Connection<'_>) -> Decision {
        self.applicable(target).evaluate(conn)
    }

    /// The effective PeerAuthentication of `target` as a DENY policy, when it requires mTLS on
    /// any port: workload selector > namespace > root namespace, modes inherited when UNSET.
    fn peer_authn_policy(&self, target: PolicyTarget<'_>) -> Option<Authorization> {
        let all = self.peer_authn.as_slice();
        let in_ns = |ns| {
            all.iter()
                .filter(move |p: &&PeerAuthentication| p.namespace == ns)
        };
        let workload = in_ns(target.namespace).find(|p| {
            p.selector
                .as_ref()
                .is_some_and(|s| s.iter().all(|(k, v)| target.labels.get(k) == Some(v)))
        });
        let namespace = in_ns(target.namespace).find(|p| p.selector.is_none());
        let mesh = in_ns(self.root_namespace.as_str()).find(|p| p.selector.is_none());
        let chain = [workload, namespace, mesh];
        let (decider, mode) = chain
            .iter()
            .flatten()
            .find(|p| p.mode != MtlsMode::Unset)
            .map(|p| (*p, p.mode))
            .or_else(|| chain.iter().flatten().next().map(|p| (*p, MtlsMode::Unset)))?;
        let ports = workload.map(|w| &w.port_modes);
        let strict = mode == MtlsMode::Strict;
        let (exempt, extra): (Vec<u16>, Vec<u16>) = match ports {
            Some(ports) => (
                ports
                    .iter()
                    .filter(|(_, m)| {
                        strict && matches!(m, MtlsMode::Permissive | MtlsMode::Disable)
                    })
                    .map(|(p, _)| *p)
                    .collect(),
                ports
                    .iter()
                    .filter(|(_, m)| !strict && **m == MtlsMode::Strict)
                    .map(|(p, _)| *p)
                    .collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        if !strict && extra.is_empty() {
            return None;
        }
        let decider = if !strict {
            workload.unwrap_or(decider)
        } else {
            decider
        };
        let m = Match {
            not_principals: vec![StringMatch::Presence],
            not_destination_ports: exempt,
            destination_ports: extra,
            ..Match::default()
        };
        Some(Authorization {
            name: decider.name.clone(),
            namespace: decider.namespace.clone(),
            scope: Scope::WorkloadSelector,
            action: Action::Deny,
            rules: vec![Rule {
                clauses: vec![Clause { matches: vec![m] }],
            }],
            dry_run: false,
        })
    }
}

// === impl Applicable ===

impl Applicable {
    /// ztunnel's order: any DENY match → deny; no ALLOW policies → allow; any ALLOW match →
    /// allow; else deny. Dry-run policies are never enforced: the same order is run with
    /// them added, and its outcome reported in [`Decision::dry_run`].
    pub fn evaluate(&self, conn: &Connection<'_>) -> Decision {
        let attrs = Attrs::of(conn);
        let dry_run_matches = self
            .dry_run
            .iter()
            .filter(|p| p.matches_attrs(&attrs))
            .map(|p| p.key())
            .collect();
        let (allowed, policy, reason) = decide(&attrs, self.deny.iter(), self.allow.iter());
        let dry_run = (!self.dry_run.is_empty()).then(|| {
            let deny = self
                .deny
                .iter()
                .chain(self.dry_run.iter().filter(|p| p.action == Action::Deny));
            let allow = self
                .allow
                .iter()
                .chain(self.dry_run.iter().filter(|p| p.action == Action::Allow));
            let (allowed, policy, _) = decide(&attrs, deny, allow);
            DryRun {
                allowed,
                policy: policy.map(|p| p.key()),
            }
        });
        Decision {
            allowed,
            policy: policy.map(|p| p.key()),
            reason,
            dry_run_matches,
            dry_run,
        }
    }

    /// How many policies apply (enforced and dry-run).
    pub fn len(&self) -> usize {
        self.deny.len() + self.allow.len() + self.dry_run.len()
    }

    /// Whether no policy applies.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The decision procedure over some DENY and ALLOW policies.
fn decide<'a>(
    attrs: &Attrs<'_>,
    mut deny: impl Iterator<Item = &'a Arc<Authorization>>,
    allow: impl Iterator<Item = &'a Arc<Authorization>>,
) -> (bool, Option<&'a Arc<Authorization>>, Reason) {
    if let Some(p) = deny.find(|p| p.matches_attrs(attrs)) {
        return (false, Some(p), Reason::DeniedByPolicy);
    }
    let mut allow = allow.peekable();
    if allow.peek().is_none() {
        return (true, None, Reason::NoAllowPolicies);
    }
    match allow.find(|p| p.matches_attrs(attrs)) {
        Some(p) => (true, Some(p), Reason::AllowedByPolicy),
        None => (false, None, Reason::NoAllowMatched),
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.reason, &self.policy) {
            (Reason::DeniedByPolicy, Some(p)) => write!(f, "denied by {p}"),
            (Reason::AllowedByPolicy, Some(p)) => write!(f, "allowed by {p}"),
            (Reason::NoAllowPolicies, _) => f.write_str("allowed: no ALLOW policy applies"),
            (Reason::NoAllowMatched, _) => {
                f.write_str("denied: allow policies exist, but none allowed")
            }
            (_, None) => f.write_str(if self.allowed { "allowed" } else { "denied" }),
        }
    }
}
