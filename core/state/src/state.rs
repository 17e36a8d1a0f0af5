//! The store of workloads, services and policies, with the lookups the proxies need.
//!
//! Built on persistent maps (`imbl`): cloning a `State` is O(1) and a change to a clone is
//! O(log n), so the control-plane client can apply one pushed workload to a 10,000-workload
//! mesh and publish the result without copying the rest, while connections keep reading the
//! state they started with.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ambit_authz::{Applicable, Authorization, PolicySet, PolicyTarget};
use imbl::HashMap;

use crate::types::{
    GatewayAddress, GatewayDestination, HealthPolicy, Service, Workload, WorkloadStatus,
};

/// Everything a proxy knows about the mesh. Cheap to clone; changed in place by loaders and
/// the xDS client, shared behind an `Arc` by the proxies.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Workloads by uid. The uid is allocated once and shared by every index (`Arc<str>`).
    workloads: HashMap<Arc<str>, Arc<Workload>>,
    /// IP → the workloads that hold it, as (network, uid), the newest last: pods recycle
    /// addresses, and a pushed pod may arrive before its predecessor's removal.
    by_ip: HashMap<IpAddr, Holders>,
    services: HashMap<String, Arc<Service>>,
    /// VIP → (network, service key), the newest last.
    by_vip: HashMap<IpAddr, Vec<(String, String)>>,
    by_hostname: HashMap<String, Vec<String>>,
    /// namespace → name → service key.
    by_name: HashMap<String, HashMap<String, String>>,
    /// Service key → the uids of the workloads that list it (its endpoints), in uid order.
    endpoints: HashMap<String, UidSet>,
    /// Node name → the uids of the workloads on it.
    by_node: HashMap<String, UidSet>,
    /// Workload `hostname` → uid, for the workloads that have one (the newest wins).
    by_workload_hostname: HashMap<String, Arc<str>>,
    policies: Arc<PolicySet>,
}

/// The workloads holding one IP, as (network, uid), the newest last. Almost always one, held
/// without a vector.
#[derive(Debug, Clone)]
enum Holders {
    One((String, Arc<str>)),
    Many(Vec<(String, Arc<str>)>),
}

impl Holders {
    fn push(&mut self, holder: (String, Arc<str>)) {
        match self {
            Self::One(first) => {
                let first = std::mem::replace(first, (String::new(), Arc::from("")));
                *self = Self::Many(vec![first, holder]);
            }
            Self::Many(v) => v.push(holder),
        }
    }

    /// Removes `uid`; returns whether none is left.
    fn remove(&mut self, uid: &str) -> bool {
        match self {
            Self::One((_, u)) => &**u == uid,
            Self::Many(v) => {
                v.retain(|(_, u)| &**u != uid);
                match v.len() {
                    0 => true,
                    1 => {
                        let last = v.remove(0);
                        *self = Self::One(last);
                        false
                    }
                    _ => false,
                }
            }
        }
    }

    fn newest_on(&self, network: &str) -> Option<&Arc<str>> {
        match self {
            Self::One((n, uid)) => (n == network).then_some(uid),
            Self::Many(v) => v.iter().rev().find(|(n, _)| n == network).map(|(_, u)| u),
        }
    }
}

/// A set of workload uids, kept sorted: a service's endpoints or a node's workloads. A plain
/// vector, because a persistent ordered set spends a kilobyte-sized node on a handful of uids.
#[derive(Debug, Clone, Default)]
struct UidSet(Vec<Arc<str>>);

impl UidSet {
    fn insert(&mut self, uid: Arc<str>) {
        if let Err(i) = self.0.binary_search(&uid) {
            self.0.insert(i, uid);
        }
    }

    fn remove(&mut self, uid: &str) {
        if let Ok(i) = self.0.binary_search_by(|u| (**u).cmp(uid)) {
            self.0.remove(i);
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = &Arc<str>> {
        self.0.iter()
    }
}

/// Why a change to the state was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Two workloads of one config claim the same address on the same network.
    #[error("address {ip} is already used by workload {other}")]
    AddressInUse {
        /// The address.
        ip: IpAddr,
        /// The workload holding it.
        other: String,
    },
}

impl State {
    /// An empty state with root namespace `istio-system`.
    pub fn new() -> Self {
        Self::with_root_namespace(ambit_authz::DEFAULT_ROOT_NAMESPACE)
    }

    /// An empty state with another root namespace.
    pub fn with_root_namespace(root: &str) -> Self {
        Self {
            policies: Arc::new(PolicySet::with_root_namespace(root)),
            ..Self::default()
        }
    }

    /// Adds a workload, refusing an address another workload already holds on its network
    /// (a config file that does that is wrong). See [`State::upsert_workload`] for pushes.
    pub fn insert_workload(&mut self, w: Workload) -> Result<(), StateError> {
        for ip in &w.addresses {
            if let Some(other) = self.uid_at(&w.network, *ip)
                && **other != *w.uid
            {
                return Err(StateError::AddressInUse {
                    ip: *ip,
                    other: other.to_string(),
                });
            }
        }
        self.upsert_workload(w);
        Ok(())
    }

    /// Adds or replaces (by uid) a workload. An address another workload holds is taken
    /// over until this one goes (the newest holder wins lookups).
    pub fn upsert_workload(&mut self, w: Workload) {
        self.remove_workload(&w.uid);
        let uid: Arc<str> = Arc::from(w.uid.as_str());
        for ip in &w.addresses {
            let holder = (w.network.clone(), uid.clone());
            match self.by_ip.get_mut(ip) {
                Some(h) => h.push(holder),
                None => {
                    self.by_ip.insert(*ip, Holders::One(holder));
                }
            }
        }
        for key in w.services.keys() {
            self.endpoints
                .entry(key.clone())
                .or_default()
                .insert(uid.clone());
        }
        self.by_node
            .entry(w.node.clone())
            .or_default()
            .insert(uid.clone());
        if !w.hostname.is_empty() {
            self.by_workload_hostname
                .insert(w.hostname.to_ascii_lowercase(), uid.clone());
        }
        self.workloads.insert(uid, Arc::new(w));
    }

    /// Removes a workload by uid; returns whether it was there.
    pub fn remove_workload(&mut self, uid: &str) -> bool {
        let Some(old) = self.workloads.remove(uid) else {
            return false;
        };
        for ip in &old.addresses {
            if let Some(holders) = self.by_ip.get_mut(ip)
                && holders.remove(uid)
            {
                self.by_ip.remove(ip);
            }
        }
        for key in old.services.keys() {
            if let Some(set) = self.endpoints.get_mut(key) {
                set.remove(uid);
                if set.is_empty() {
                    self.endpoints.remove(key);
                }
            }
        }
        if let Some(set) = self.by_node.get_mut(&old.node) {
            set.remove(uid);
            if set.is_empty() {
                self.by_node.remove(&old.node);
            }
        }
        if !old.hostname.is_empty() {
            let host = old.hostname.to_ascii_lowercase();
            if self
                .by_workload_hostname
                .get(&host)
                .is_some_and(|u| &**u == uid)
            {
                self.by_workload_hostname.remove(&host);
            }
        }
        true
    }

    /// Adds a service (replacing one with the same `namespace/hostname`).
    pub fn insert_service(&mut self, s: Service) {
        self.upsert_service(s);
    }

    /// Adds or replaces (by `namespace/hostname`) a service.
    pub fn upsert_service(&mut self, s: Service) {
        let key = s.key();
        self.remove_service(&key);
        for (net, ip) in &s.vips {
            self.by_vip
                .entry(*ip)
                .or_default()
                .push((net.clone(), key.clone()));
        }
        self.by_hostname
            .entry(s.hostname.clone())
            .or_default()
            .push(key.clone());
        self.by_name
            .entry(s.namespace.clone())
            .or_default()
            .insert(s.name.clone(), key.clone());
        self.services.insert(key, Arc::new(s));
    }

    /// Removes a service by `namespace/hostname`; returns whether it was there. Its
    /// endpoints stay known: workloads list the services they back.
    pub fn remove_service(&mut self, key: &str) -> bool {
        let Some(old) = self.services.remove(key) else {
            return false;
        };
        for (_, ip) in &old.vips {
            if let Some(v) = self.by_vip.get_mut(ip) {
                v.retain(|(_, k)| k != key);
                if v.is_empty() {
                    self.by_vip.remove(ip);
                }
            }
        }
        if let Some(v) = self.by_hostname.get_mut(&old.hostname) {
            v.retain(|k| k != key);
            if v.is_empty() {
                self.by_hostname.remove(&old.hostname);
            }
        }
        if let Some(names) = self.by_name.get_mut(&old.namespace)
            && names.get(&old.name).is_some_and(|k| k == key)
        {
            names.remove(&old.name);
            if names.is_empty() {
                self.by_name.remove(&old.namespace);
            }
        }
        true
    }

    /// The policies.
    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// The policies, for loading (copied first if a published state shares them).
    pub fn policies_mut(&mut self) -> &mut PolicySet {
        Arc::make_mut(&mut self.policies)
    }

    /// Adds or replaces a workload-API policy under `key` (its xDS resource name, which
    /// workloads reference in `authorization_policies`).
    pub fn upsert_policy(&mut self, key: &str, policy: Authorization) {
        self.policies_mut().insert_keyed(key, policy);
    }

    /// Removes a policy by key; returns whether it was there.
    pub fn remove_policy(&mut self, key: &str) -> bool {
        if self.policies.get(key).is_none() {
            return false;
        }
        self.policies_mut().remove(key)
    }

    /// A workload by uid.
    pub fn workload(&self, uid: &str) -> Option<&Arc<Workload>> {
        self.workloads.get(uid)
    }

    fn uid_at(&self, network: &str, ip: IpAddr) -> Option<&Arc<str>> {
        self.by_ip.get(&ip)?.newest_on(network)
    }

    /// The workload owning `ip` on `network` (the newest, when a pushed pod took over an
    /// address its predecessor has not released yet).
    pub fn workload_by_addr(&self, network: &str, ip: IpAddr) -> Option<&Arc<Workload>> {
        self.uid_at(network, ip)
            .and_then(|uid| self.workloads.get(&**uid))
    }

    /// The service with VIP `ip` on `network`.
    pub fn service_by_vip(&self, network: &str, ip: IpAddr) -> Option<&Arc<Service>> {
        self.by_vip
            .get(&ip)?
            .iter()
            .rev()
            .find(|(n, _)| n == network)
            .and_then(|(_, k)| self.services.get(k))
    }

    /// A service by hostname (the first one registered, as a DNS name resolves one way).
    pub fn service_by_hostname(&self, hostname: &str) -> Option<&Arc<Service>> {
        self.by_hostname
            .get(hostname)
            .and_then(|keys| keys.first())
            .and_then(|k| self.services.get(k))
    }

    /// Every service with `hostname` (several namespaces may export one name), in the order
    /// they were registered.
    pub fn services_by_hostname<'a>(
        &'a self,
        hostname: &str,
    ) -> impl Iterator<Item = &'a Arc<Service>> + 'a {
        self.by_hostname
            .get(hostname)
            .into_iter()
            .flatten()
            .filter_map(|k| self.services.get(k))
    }

    /// The workloads that list `service` (its endpoints), whatever the port.
    pub fn endpoint_workloads<'a>(
        &'a self,
        service: &Service,
    ) -> impl Iterator<Item = &'a Arc<Workload>> + 'a {
        self.endpoints
            .get(&service.key())
            .into_iter()
            .flat_map(|set| set.iter())
            .filter_map(|uid| self.workloads.get(uid))
    }

    /// The workload whose `hostname` is `hostname` (ASCII case ignored).
    pub fn workload_by_hostname(&self, hostname: &str) -> Option<&Arc<Workload>> {
        self.by_workload_hostname
            .get(&hostname.to_ascii_lowercase())
            .and_then(|uid| self.workloads.get(uid))
    }

    /// A service by namespace and name (as Gateway API `backendRefs` name it).
    pub fn service_by_name(&self, namespace: &str, name: &str) -> Option<&Arc<Service>> {
        self.by_name
            .get(namespace)
            .and_then(|names| names.get(name))
            .and_then(|k| self.services.get(k))
    }

    /// A service by `namespace/hostname`.
    pub fn service(&self, key: &str) -> Option<&Arc<Service>> {
        self.services.get(key)
    }

    /// The workloads that back `service` (its endpoints), with the target port for `port`,
    /// in uid order. Unhealthy workloads are left out unless the service's load balancing
    /// allows them (`healthPolicy: ALLOW_ALL`).
    pub fn endpoints(&self, service: &Service, port: u16) -> Vec<(Arc<Workload>, u16)> {
        let key = service.key();
        let allow_unhealthy = service
            .load_balancing
            .as_ref()
            .is_some_and(|lb| lb.health_policy == HealthPolicy::AllowAll);
        let Some(uids) = self.endpoints.get(&key) else {
            return Vec::new();
        };
        uids.iter()
            .filter_map(|uid| {
                let w = self.workloads.get(uid)?;
                if w.status == WorkloadStatus::Unhealthy && !allow_unhealthy {
                    return None;
                }
                let ports = w.services.get(&key)?;
                let target = match ports.get(&port) {
                    Some(0) | None => service.target_port(port)?,
                    Some(t) => *t,
                };
                Some((w.clone(), target))
            })
            .collect()
    }

    /// The waypoint workload a [`GatewayAddress`] names and the address to dial it on; for a
    /// hostname, one of the service's workloads picked by `random`. `None` when the state does
    /// not know it (its identity could not be verified).
    pub fn resolve_gateway(
        &self,
        g: &GatewayAddress,
        random: u64,
    ) -> Option<(Arc<Workload>, SocketAddr)> {
        match &g.destination {
            GatewayDestination::Address { network, ip } => {
                let w = self.workload_by_addr(network, *ip)?;
                Some((w.clone(), SocketAddr::new(*ip, g.hbone_mtls_port)))
            }
            GatewayDestination::Hostname {
                namespace,
                hostname,
            } => {
                let key = format!("{namespace}/{hostname}");
                let ws: Vec<&Arc<Workload>> = self
                    .endpoints
                    .get(&key)?
                    .iter()
                    .filter_map(|uid| self.workloads.get(&**uid))
                    .filter(|w| !w.addresses.is_empty())
                    .collect();
                if ws.is_empty() {
                    return None;
                }
                let w = ws[(random % ws.len() as u64) as usize];
                let ip = w.address()?;
                Some((w.clone(), SocketAddr::new(ip, g.hbone_mtls_port)))
            }
        }
    }

    /// The workloads on `node`, in uid order (what a node proxy serves), without looking at
    /// the others.
    pub fn workloads_on<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a Arc<Workload>> + 'a {
        self.by_node
            .get(node)
            .into_iter()
            .flat_map(|uids| uids.iter())
            .filter_map(|uid| self.workloads.get(&**uid))
    }

    /// Number of workloads.
    pub fn workload_count(&self) -> usize {
        self.workloads.len()
    }

    /// Number of services.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// All workloads.
    pub fn workloads(&self) -> impl Iterator<Item = &Arc<Workload>> {
        self.workloads.values()
    }

    /// All services.
    pub fn services(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.services.values()
    }

    /// The policies that apply to `w`.
    pub fn applicable_policies(&self, w: &Workload) -> Applicable {
        self.policies.applicable(PolicyTarget {
            namespace: &w.namespace,
            labels: &w.labels,
            policy_keys: &w.authorization_policies,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Service, Workload, WorkloadStatus};

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn pod(uid: &str, addr: &str, node: &str, svc: Option<&str>) -> Workload {
        let mut w = Workload::new(uid, uid, "shop", vec![ip(addr)]);
        w.node = node.into();
        if let Some(k) = svc {
            w.services
                .insert(k.into(), [(80, 8080)].into_iter().collect());
        }
        w
    }

    #[test]
    fn a_recycled_address_belongs_to_the_newest_pod_until_it_goes() {
        let mut s = State::new();
        s.upsert_workload(pod("old", "10.0.0.9", "n1", None));
        s.upsert_workload(pod("new", "10.0.0.9", "n1", None));
        assert_eq!(
            s.workload_by_addr("", ip("10.0.0.9"))
                .map(|w| w.uid.as_str()),
            Some("new")
        );
        assert!(s.remove_workload("new"));
        assert_eq!(
            s.workload_by_addr("", ip("10.0.0.9"))
                .map(|w| w.uid.as_str()),
            Some("old")
        );
        assert!(s.remove_workload("old"));
        assert!(s.workload_by_addr("", ip("10.0.0.9")).is_none());
        assert!(!s.remove_workload("old"));
        // A config file may not do that.
        s.insert_workload(pod("a", "10.0.0.1", "n1", None))
            .expect("first");
        let e = s
            .insert_workload(pod("b", "10.0.0.1", "n1", None))
            .expect_err("taken");
        assert_eq!(
            e.to_string(),
            "address 10.0.0.1 is already used by workload a"
        );
    }

    #[test]
    fn endpoints_follow_workloads_and_skip_the_unhealthy() {
        let mut s = State::new();
        let mut svc = Service::new("web", "shop", "web.shop.svc.cluster.local");
        svc.ports.insert(80, 0);
        s.upsert_service(svc.clone());
        let key = svc.key();
        s.upsert_workload(pod("b", "10.0.0.2", "n1", Some(&key)));
        s.upsert_workload(pod("a", "10.0.0.1", "n2", Some(&key)));
        let uids = |s: &State| -> Vec<String> {
            s.endpoints(&svc, 80)
                .iter()
                .map(|(w, _)| w.uid.clone())
                .collect()
        };
        assert_eq!(uids(&s), ["a", "b"]);
        assert_eq!(s.endpoints(&svc, 80)[0].1, 8080);
        let mut sick = pod("a", "10.0.0.1", "n2", Some(&key));
        sick.status = WorkloadStatus::Unhealthy;
        s.upsert_workload(sick);
        assert_eq!(uids(&s), ["b"]);
        let mut lenient = svc.clone();
        lenient.load_balancing = Some(crate::LoadBalancing {
            health_policy: crate::HealthPolicy::AllowAll,
            ..Default::default()
        });
        assert_eq!(s.endpoints(&lenient, 80).len(), 2);
        s.remove_workload("b");
        assert!(uids(&s).is_empty());
        assert_eq!(s.workloads_on("n2").count(), 1);
        assert_eq!(s.workloads_on("n1").count(), 0);
    }

    #[test]
    fn a_clone_is_a_snapshot() {
        let mut s = State::new();
        s.upsert_workload(pod("a", "10.0.0.1", "n1", None));
        let snapshot = s.clone();
        s.upsert_workload(pod("b", "10.0.0.2", "n1", None));
        s.upsert_policy(
            "shop/p",
            Authorization::new(
                "shop",
                "p",
                ambit_authz::Scope::Namespace,
                ambit_authz::Action::Deny,
                vec![],
            ),
        );
        assert_eq!(snapshot.workload_count(), 1);
        assert!(snapshot.policies().is_empty());
        assert_eq!(s.workload_count(), 2);
        assert!(s.remove_policy("shop/p"));
        assert!(!s.remove_policy("shop/p"));
    }

    #[test]
    fn services_are_found_by_vip_name_and_hostname_until_removed() {
        let mut s = State::new();
        let mut svc = Service::new("web", "shop", "web.shop.svc.cluster.local");
        svc.vips.push((String::new(), ip("10.96.0.1")));
        s.upsert_service(svc);
        assert!(s.service_by_vip("", ip("10.96.0.1")).is_some());
        assert!(s.service_by_name("shop", "web").is_some());
        assert!(
            s.service_by_hostname("web.shop.svc.cluster.local")
                .is_some()
        );
        assert!(s.remove_service("shop/web.shop.svc.cluster.local"));
        assert!(s.service_by_vip("", ip("10.96.0.1")).is_none());
        assert!(s.service_by_name("shop", "web").is_none());
        assert!(
            s.service_by_hostname("web.shop.svc.cluster.local")
                .is_none()
        );
    }
}
