//! The store of workloads, services and policies, with the lookups the proxy needs.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ambit_authz::{Applicable, PolicySet, PolicyTarget};

use crate::types::{GatewayAddress, GatewayDestination, Service, Workload};

/// Everything a node proxy knows about the mesh. Immutable once built; replaced whole on
/// reload (cheap to share behind an `Arc`).
#[derive(Debug, Clone, Default)]
pub struct State {
    workloads: HashMap<String, Arc<Workload>>,
    by_addr: HashMap<(String, IpAddr), String>,
    services: HashMap<String, Arc<Service>>,
    by_vip: HashMap<(String, IpAddr), String>,
    by_hostname: HashMap<String, Vec<String>>,
    by_name: HashMap<(String, String), String>,
    policies: PolicySet,
}

impl State {
    /// An empty state with root namespace `istio-system`.
    pub fn new() -> Self {
        Self::with_root_namespace(ambit_authz::DEFAULT_ROOT_NAMESPACE)
    }

    /// An empty state with another root namespace.
    pub fn with_root_namespace(root: &str) -> Self {
        Self {
            policies: PolicySet::with_root_namespace(root),
            ..Self::default()
        }
    }

    /// Adds a workload; refuses an address already owned by another workload on its network.
    pub fn insert_workload(&mut self, w: Workload) -> Result<(), String> {
        for ip in &w.addresses {
            if let Some(other) = self.by_addr.get(&(w.network.clone(), *ip))
                && *other != w.uid
            {
                return Err(format!("address {ip} is already used by workload {other}"));
            }
        }
        if let Some(old) = self.workloads.remove(&w.uid) {
            for ip in &old.addresses {
                self.by_addr.remove(&(old.network.clone(), *ip));
            }
        }
        for ip in &w.addresses {
            self.by_addr.insert((w.network.clone(), *ip), w.uid.clone());
        }
        self.workloads.insert(w.uid.clone(), Arc::new(w));
        Ok(())
    }

    /// Adds a service.
    pub fn insert_service(&mut self, s: Service) {
        let key = s.key();
        for (net, ip) in &s.vips {
            self.by_vip.insert((net.clone(), *ip), key.clone());
        }
        self.by_hostname
            .entry(s.hostname.clone())
            .or_default()
            .push(key.clone());
        self.by_name
            .insert((s.namespace.clone(), s.name.clone()), key.clone());
        self.services.insert(key, Arc::new(s));
    }

    /// The policies.
    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// The policies, for loading.
    pub fn policies_mut(&mut self) -> &mut PolicySet {
        &mut self.policies
    }

    /// A workload by uid.
    pub fn workload(&self, uid: &str) -> Option<&Arc<Workload>> {
        self.workloads.get(uid)
    }

    /// The workload owning `ip` on `network`.
    pub fn workload_by_addr(&self, network: &str, ip: IpAddr) -> Option<&Arc<Workload>> {
        self.by_addr
            .get(&(network.to_owned(), ip))
            .and_then(|uid| self.workloads.get(uid))
    }

    /// The service with VIP `ip` on `network`.
    pub fn service_by_vip(&self, network: &str, ip: IpAddr) -> Option<&Arc<Service>> {
        self.by_vip
            .get(&(network.to_owned(), ip))
            .and_then(|k| self.services.get(k))
    }

    /// A service by hostname (the first one registered, as a DNS name resolves one way).
    pub fn service_by_hostname(&self, hostname: &str) -> Option<&Arc<Service>> {
        self.by_hostname
            .get(hostname)
            .and_then(|keys| keys.first())
            .and_then(|k| self.services.get(k))
    }

    /// A service by namespace and name (as Gateway API `backendRefs` name it).
    pub fn service_by_name(&self, namespace: &str, name: &str) -> Option<&Arc<Service>> {
        self.by_name
            .get(&(namespace.to_owned(), name.to_owned()))
            .and_then(|k| self.services.get(k))
    }

    /// A service by `namespace/hostname`.
    pub fn service(&self, key: &str) -> Option<&Arc<Service>> {
        self.services.get(key)
    }

    /// The workloads that back `service` (its endpoints), with the target port for `port`.
    pub fn endpoints(&self, service: &Service, port: u16) -> Vec<(Arc<Workload>, u16)> {
        let key = service.key();
        let mut out: Vec<_> = self
            .workloads
            .values()
            .filter_map(|w| {
                let ports = w.services.get(&key)?;
                let target = match ports.get(&port) {
                    Some(0) | None => service.target_port(port)?,
                    Some(t) => *t,
                };
                Some((w.clone(), target))
            })
            .collect();
        out.sort_by(|a, b| a.0.uid.cmp(&b.0.uid));
        out
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
                let mut ws: Vec<&Arc<Workload>> = self
                    .workloads
                    .values()
                    .filter(|w| w.services.contains_key(&key) && !w.addresses.is_empty())
                    .collect();
                if ws.is_empty() {
                    return None;
                }
                ws.sort_by(|a, b| a.uid.cmp(&b.uid));
                let w = ws[(random % ws.len() as u64) as usize];
                let ip = w.address()?;
                Some((w.clone(), SocketAddr::new(ip, g.hbone_mtls_port)))
            }
        }
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
