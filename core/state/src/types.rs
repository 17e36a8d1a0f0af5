//! Workloads and services, mirroring Istio's workload API (`istio.workload`), field for field
//! where ambit uses the field.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use ambit_identity::{SpiffeId, SpiffeIdError};
use ipnet::IpNet;
use serde::Serialize;

use crate::vecmap::VecMap;

/// A workload's ports for one service it backs: service port → target port (0 = the
/// service's own mapping).
pub type ServicePorts = VecMap<u16, u16>;

/// How a workload receives mesh traffic (`TunnelProtocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum TunnelProtocol {
    /// Plain TCP: the workload is not in the mesh (`NONE`).
    #[default]
    None,
    /// HBONE on port 15008.
    Hbone,
}

/// `WorkloadType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum WorkloadType {
    /// A Deployment's pod.
    #[default]
    Deployment,
    /// A CronJob's pod.
    CronJob,
    /// A bare pod.
    Pod,
    /// A Job's pod.
    Job,
}

/// `WorkloadStatus`: unhealthy workloads are not picked as endpoints (unless a service's
/// load balancing allows all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum WorkloadStatus {
    /// Ready.
    #[default]
    Healthy,
    /// Not ready.
    Unhealthy,
}

/// `NetworkMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum NetworkMode {
    /// The pod has its own network namespace.
    #[default]
    Standard,
    /// The pod shares the node's network (its IP is the node's, so it is not found by IP).
    HostNetwork,
}

/// `ApplicationTunnel.Protocol`: how a workload that terminates tunnels itself wants
/// traffic delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum AppTunnelProtocol {
    /// Plain bytes.
    #[default]
    None,
    /// A PROXY protocol v2 header first.
    Proxy,
}

/// `ApplicationTunnel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ApplicationTunnel {
    /// The protocol.
    pub protocol: AppTunnelProtocol,
    /// The port it listens on, when not the target port.
    pub port: Option<u16>,
}

/// `Locality`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Locality {
    /// Region.
    pub region: String,
    /// Zone.
    pub zone: String,
    /// Subzone.
    pub subzone: String,
}

/// `LoadBalancing.Scope`: what endpoints must share with the client to be preferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum LbScope {
    /// Region.
    Region,
    /// Zone.
    Zone,
    /// Subzone.
    Subzone,
    /// Node.
    Node,
    /// Cluster.
    Cluster,
    /// Network.
    Network,
}

/// `LoadBalancing.Mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum LbMode {
    /// No locality preference (`UNSPECIFIED_MODE`).
    #[default]
    Standard,
    /// Only endpoints matching every scope.
    Strict,
    /// Prefer matching endpoints, fall back to others.
    Failover,
    /// Send to the address the client asked for.
    Passthrough,
}

/// `LoadBalancing.HealthPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum HealthPolicy {
    /// Only healthy endpoints.
    #[default]
    OnlyHealthy,
    /// Every endpoint, healthy or not.
    AllowAll,
}

/// `LoadBalancing`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize)]
pub struct LoadBalancing {
    /// Scopes in order of preference.
    pub routing_preference: Vec<LbScope>,
    /// The mode.
    pub mode: LbMode,
    /// Which endpoints may be picked.
    pub health_policy: HealthPolicy,
}

/// `IPFamilies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum IpFamilies {
    /// As the cluster decides.
    #[default]
    Automatic,
    /// IPv4 only.
    Ipv4Only,
    /// IPv6 only.
    Ipv6Only,
    /// Both.
    Dual,
}

/// `Service.Visibility`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum Visibility {
    /// Reachable from every namespace.
    #[default]
    Public,
    /// Reachable from its own namespace only.
    Namespace,
}

/// Where a waypoint is reached (`GatewayAddress`): an address, or a service hostname whose
/// endpoints are the waypoint's pods; HBONE on `hbone_mtls_port` (15008).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub struct GatewayAddress {
    /// The address or hostname.
    pub destination: GatewayDestination,
    /// Its HBONE port.
    pub hbone_mtls_port: u16,
}

/// The two forms of a [`GatewayAddress`] destination.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum GatewayDestination {
    /// `network/IP`.
    Address {
        /// Network (empty = default).
        network: String,
        /// IP.
        ip: IpAddr,
    },
    /// `namespace/hostname` of a service.
    Hostname {
        /// Namespace.
        namespace: String,
        /// FQDN.
        hostname: String,
    },
}

impl GatewayAddress {
    /// A gateway at `destination`, HBONE on `hbone_mtls_port`.
    pub fn new(destination: GatewayDestination, hbone_mtls_port: u16) -> Self {
        Self {
            destination,
            hbone_mtls_port,
        }
    }

    /// A waypoint at `ip` on the default network, port 15008.
    pub fn ip(ip: IpAddr) -> Self {
        Self {
            destination: GatewayDestination::Address {
                network: String::new(),
                ip,
            },
            hbone_mtls_port: 15008,
        }
    }

    /// A waypoint behind service `namespace/hostname`, port 15008.
    pub fn hostname(namespace: &str, hostname: &str) -> Self {
        Self {
            destination: GatewayDestination::Hostname {
                namespace: namespace.to_owned(),
                hostname: hostname.to_owned(),
            },
            hbone_mtls_port: 15008,
        }
    }
}

impl std::fmt::Display for GatewayAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.destination {
            GatewayDestination::Address { network, ip } => {
                write!(f, "{network}/{ip}:{}", self.hbone_mtls_port)
            }
            GatewayDestination::Hostname {
                namespace,
                hostname,
            } => write!(f, "{namespace}/{hostname}:{}", self.hbone_mtls_port),
        }
    }
}

/// A workload (pod or VM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Workload {
    /// Primary key (`cluster/group/kind/namespace/name`, or anything unique).
    pub uid: String,
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Its IPs.
    pub addresses: Vec<IpAddr>,
    /// Network (empty = the default network).
    pub network: String,
    /// How it receives mesh traffic.
    pub protocol: TunnelProtocol,
    /// Trust domain (empty = `cluster.local`).
    pub trust_domain: String,
    /// Service account (empty = `default`).
    pub service_account: String,
    /// The node it runs on.
    pub node: String,
    /// Canonical service (telemetry `*_canonical_service`, `*_app`).
    pub canonical_name: String,
    /// Canonical revision (telemetry `*_canonical_revision`, `*_version`).
    pub canonical_revision: String,
    /// Workload kind.
    pub workload_type: WorkloadType,
    /// Workload (e.g. Deployment) name.
    pub workload_name: String,
    /// Services it backs: `namespace/hostname` → service port → target port.
    pub services: VecMap<String, ServicePorts>,
    /// Selector-scoped policies (`namespace/name`) that apply to it.
    pub authorization_policies: Vec<String>,
    /// Cluster id.
    pub cluster_id: String,
    /// Load-balancing weight (default 1).
    pub capacity: u32,
    /// Labels (ambit extension: lets Istio `selector` policies match local-config workloads).
    pub labels: BTreeMap<String, String>,
    /// The waypoint that traffic addressed to this workload's IP goes through (boxed: most
    /// workloads have none, and each workload's size is memory per pod at mesh scale).
    pub waypoint: Option<Box<GatewayAddress>>,
    /// A hostname, for workloads without IPs (a WorkloadEntry for an external name).
    pub hostname: String,
    /// Healthy or not.
    pub status: WorkloadStatus,
    /// Pod or host network.
    pub network_mode: NetworkMode,
    /// Whether it terminates HBONE itself (no node proxy in front of it).
    pub native_tunnel: bool,
    /// ambit extension: dial its HBONE over HTTP/3 (QUIC on UDP 15008), falling back to
    /// HTTP/2 when its node does not answer QUIC.
    pub hbone_http3: bool,
    /// How it wants tunnelled traffic delivered, when it terminates tunnels itself.
    pub application_tunnel: Option<ApplicationTunnel>,
    /// The gateway that reaches it from another network.
    pub network_gateway: Option<Box<GatewayAddress>>,
    /// Where it runs (none when the control plane says nothing).
    pub locality: Option<Box<Locality>>,
}

/// A service: a hostname, VIPs and port mappings; endpoints are the workloads that list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Service {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// FQDN.
    pub hostname: String,
    /// Virtual IPs with their network.
    pub vips: Vec<(String, IpAddr)>,
    /// Service port → target port (0 = same as the service port).
    pub ports: BTreeMap<u16, u16>,
    /// Extra identities a client accepts from its endpoints.
    pub subject_alt_names: Vec<String>,
    /// The waypoint that traffic addressed to this service goes through.
    pub waypoint: Option<GatewayAddress>,
    /// Several waypoints chosen per connection by weight (`weighted_waypoints`, field 13);
    /// when non-empty it takes precedence over `waypoint`.
    pub weighted_waypoints: Vec<(GatewayAddress, u32)>,
    /// VIP ranges (an address with a prefix shorter than the address), with their network.
    pub cidr_vips: Vec<(String, IpNet)>,
    /// How endpoints are picked.
    pub load_balancing: Option<LoadBalancing>,
    /// Address families.
    pub ip_families: IpFamilies,
    /// The preferred one of several services sharing a hostname or VIP.
    pub canonical: bool,
    /// Who may reach it.
    pub visibility: Visibility,
    /// Whether ingress gateways send its traffic through its waypoint.
    pub ingress_use_waypoint: bool,
    /// Service port → the Kubernetes `appProtocol` of that port (`kubernetes.io/h2c`, `http2`,
    /// `grpc`, …), when known. Istio's workload API does not carry it, so only the local config
    /// sets it (`appProtocols`, an ambit extension); the waypoint speaks HTTP/2 cleartext to a
    /// port marked `kubernetes.io/h2c`, `h2c`, `http2` or `grpc`.
    pub app_protocols: BTreeMap<u16, String>,
}

impl Workload {
    /// A workload with the given key fields and defaults elsewhere.
    pub fn new(uid: &str, name: &str, namespace: &str, addresses: Vec<IpAddr>) -> Self {
        Self {
            uid: uid.to_owned(),
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            addresses,
            network: String::new(),
            protocol: TunnelProtocol::Hbone,
            trust_domain: String::new(),
            service_account: String::new(),
            node: String::new(),
            canonical_name: String::new(),
            canonical_revision: String::new(),
            workload_type: WorkloadType::Deployment,
            workload_name: String::new(),
            services: VecMap::new(),
            authorization_policies: Vec::new(),
            cluster_id: String::new(),
            capacity: 1,
            labels: BTreeMap::new(),
            waypoint: None,
            hostname: String::new(),
            status: WorkloadStatus::Healthy,
            network_mode: NetworkMode::Standard,
            native_tunnel: false,
            hbone_http3: false,
            application_tunnel: None,
            network_gateway: None,
            locality: None,
        }
    }

    /// Its SPIFFE identity: `spiffe://<td or cluster.local>/ns/<ns>/sa/<sa or default>`.
    pub fn identity(&self) -> Result<SpiffeId, SpiffeIdError> {
        let td = if self.trust_domain.is_empty() {
            "cluster.local"
        } else {
            &self.trust_domain
        };
        let sa = if self.service_account.is_empty() {
            "default"
        } else {
            &self.service_account
        };
        SpiffeId::istio(td, &self.namespace, sa)
    }

    /// The name telemetry reports as `*_workload`: the workload (e.g. Deployment) name, or the
    /// pod's own name when that is unset.
    pub fn workload_label(&self) -> &str {
        if self.workload_name.is_empty() {
            &self.name
        } else {
            &self.workload_name
        }
    }

    /// The first address, for logs and defaults.
    pub fn address(&self) -> Option<IpAddr> {
        self.addresses.first().copied()
    }

    /// The HBONE address peers dial for it: `<ip>:15008`.
    pub fn hbone_addr(&self, ip: IpAddr) -> SocketAddr {
        SocketAddr::new(ip, 15008)
    }
}

impl Service {
    /// A service with the given key fields and no VIPs, ports or waypoint.
    pub fn new(name: &str, namespace: &str, hostname: &str) -> Self {
        Self {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            hostname: hostname.to_owned(),
            vips: Vec::new(),
            ports: BTreeMap::new(),
            subject_alt_names: Vec::new(),
            waypoint: None,
            weighted_waypoints: Vec::new(),
            cidr_vips: Vec::new(),
            load_balancing: None,
            ip_families: IpFamilies::Automatic,
            canonical: false,
            visibility: Visibility::Public,
            ingress_use_waypoint: false,
            app_protocols: BTreeMap::new(),
        }
    }

    /// Whether the backends behind service `port` speak HTTP/2 without TLS (an `appProtocol`
    /// of `kubernetes.io/h2c`, `h2c`, `http2` or `grpc`).
    pub fn speaks_h2c(&self, port: u16) -> bool {
        self.app_protocols
            .get(&port)
            .is_some_and(|p| matches!(p.as_str(), "kubernetes.io/h2c" | "http2" | "grpc" | "h2c"))
    }

    /// `namespace/hostname`, the key workloads use in `services`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.hostname)
    }

    /// The target port for `port` (the service port itself when unmapped or mapped to 0).
    pub fn target_port(&self, port: u16) -> Option<u16> {
        self.ports
            .get(&port)
            .map(|t| if *t == 0 { port } else { *t })
    }
}
