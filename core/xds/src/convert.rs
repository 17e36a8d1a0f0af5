//! Workload-API messages → ambit's state types, validated: what the control plane pushes
//! becomes exactly what the local YAML produces, and anything that cannot be represented is an
//! error naming the field, never a guess. Where ztunnel silently drops an unusable value that
//! would widen a policy (an unset string match, address bytes of the wrong length), this
//! refuses the resource instead, so it is NACKed and the last good version stays in force.

use std::net::IpAddr;

use ambit_authz::{
    Action, Authorization, Clause, Match, Rule, Scope, ServiceAccountMatch, StringMatch,
};
use ambit_state::{
    AppTunnelProtocol, ApplicationTunnel, GatewayAddress, GatewayDestination, HealthPolicy,
    IpFamilies, LbMode, LbScope, LoadBalancing, Locality, NetworkMode, Service, ServicePorts,
    TunnelProtocol, VecMap, Visibility, Workload, WorkloadStatus, WorkloadType,
};
use ipnet::IpNet;

use crate::pb::istio::security as sec;
use crate::pb::istio::workload as wl;

/// Why a pushed resource was refused: the field and what is wrong with it. Its text is what
/// the NACK's `error_detail` says for the resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConvertError {
    /// The field path in the message (`addresses[1]`, `rules[0].clauses[2].matches[0]`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConvertError {
    ConvertError {
        field: field.into(),
        message: message.into(),
    }
}

/// What an `Address` resource holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Converted {
    /// A workload.
    Workload(Box<Workload>),
    /// A service.
    Service(Box<Service>),
}

/// An `istio.workload.Address`.
pub fn address(a: wl::Address) -> Result<Converted, ConvertError> {
    match a.r#type {
        Some(wl::address::Type::Workload(w)) => {
            workload(w).map(|w| Converted::Workload(Box::new(w)))
        }
        Some(wl::address::Type::Service(s)) => service(s).map(|s| Converted::Service(Box::new(s))),
        None => Err(err(
            "type",
            "unknown address type (neither workload nor service)",
        )),
    }
}

/// An IP from its 4 or 16 network-order bytes.
pub fn ip(bytes: &[u8], field: &str) -> Result<IpAddr, ConvertError> {
    match bytes.len() {
        4 => Ok(IpAddr::from(
            <[u8; 4]>::try_from(bytes).map_err(|_| err(field, "failed to parse address"))?,
        )),
        16 => Ok(IpAddr::from(
            <[u8; 16]>::try_from(bytes).map_err(|_| err(field, "failed to parse address"))?,
        )),
        n => Err(err(
            field,
            format!("failed to parse address, had {n} bytes (want 4 or 16)"),
        )),
    }
}

fn port(p: u32, field: &str) -> Result<u16, ConvertError> {
    u16::try_from(p).map_err(|_| err(field, format!("port {p} is out of range")))
}

fn enum_of<T>(
    v: i32,
    field: &str,
    known: impl FnOnce(i32) -> Option<T>,
) -> Result<T, ConvertError> {
    known(v).ok_or_else(|| err(field, format!("unknown enumeration value {v}")))
}

/// An `istio.workload.Workload`, with ztunnel's defaults: capacity 1 when absent, cluster id
/// `Kubernetes` when empty (trust domain and service account default when an identity is made).
pub fn workload(w: wl::Workload) -> Result<Workload, ConvertError> {
    let mut addresses = Vec::with_capacity(w.addresses.len());
    for (i, a) in w.addresses.iter().enumerate() {
        addresses.push(ip(a, &format!("addresses[{i}]"))?);
    }
    let mut out = Workload::new(&w.uid, &w.name, &w.namespace, addresses);
    out.protocol = match enum_of(w.tunnel_protocol, "tunnelProtocol", |v| {
        wl::TunnelProtocol::try_from(v).ok()
    })? {
        wl::TunnelProtocol::None => TunnelProtocol::None,
        wl::TunnelProtocol::Hbone => TunnelProtocol::Hbone,
        wl::TunnelProtocol::LegacyIstioMtls => {
            return Err(err(
                "tunnelProtocol",
                "unsupported tunnel protocol: legacy istio mtls",
            ));
        }
    };
    out.hostname = w.hostname;
    out.network = w.network;
    out.trust_domain = w.trust_domain;
    out.service_account = w.service_account;
    out.node = w.node;
    out.canonical_name = w.canonical_name;
    out.canonical_revision = w.canonical_revision;
    // An unknown workload type is telemetry only: read as a Deployment, as ztunnel does.
    out.workload_type = match wl::WorkloadType::try_from(w.workload_type) {
        Ok(wl::WorkloadType::Cronjob) => WorkloadType::CronJob,
        Ok(wl::WorkloadType::Pod) => WorkloadType::Pod,
        Ok(wl::WorkloadType::Job) => WorkloadType::Job,
        Ok(wl::WorkloadType::Deployment) | Err(_) => WorkloadType::Deployment,
    };
    out.workload_name = w.workload_name;
    out.native_tunnel = w.native_tunnel;
    out.application_tunnel = w
        .application_tunnel
        .map(|t| application_tunnel(&t))
        .transpose()?;
    out.waypoint = w
        .waypoint
        .map(|g| gateway(g, "waypoint").map(Box::new))
        .transpose()?;
    out.network_gateway = w
        .network_gateway
        .map(|g| gateway(g, "networkGateway").map(Box::new))
        .transpose()?;
    out.services = services_map(w.services)?;
    out.authorization_policies = w.authorization_policies;
    out.status = match enum_of(w.status, "status", |v| wl::WorkloadStatus::try_from(v).ok())? {
        wl::WorkloadStatus::Healthy => WorkloadStatus::Healthy,
        wl::WorkloadStatus::Unhealthy => WorkloadStatus::Unhealthy,
    };
    out.cluster_id = if w.cluster_id.is_empty() {
        "Kubernetes".to_owned()
    } else {
        w.cluster_id
    };
    out.locality = w.locality.map(|l| {
        Box::new(Locality {
            region: l.region,
            zone: l.zone,
            subzone: l.subzone,
        })
    });
    out.network_mode = match enum_of(w.network_mode, "networkMode", |v| {
        wl::NetworkMode::try_from(v).ok()
    })? {
        wl::NetworkMode::Standard => NetworkMode::Standard,
        wl::NetworkMode::HostNetwork => NetworkMode::HostNetwork,
    };
    out.capacity = w.capacity.unwrap_or(1);
    Ok(out)
}

fn application_tunnel(t: &wl::ApplicationTunnel) -> Result<ApplicationTunnel, ConvertError> {
    let protocol = match enum_of(t.protocol, "applicationTunnel.protocol", |v| {
        wl::application_tunnel::Protocol::try_from(v).ok()
    })? {
        wl::application_tunnel::Protocol::None => AppTunnelProtocol::None,
        wl::application_tunnel::Protocol::Proxy => AppTunnelProtocol::Proxy,
    };
    let p = port(t.port, "applicationTunnel.port")?;
    Ok(ApplicationTunnel {
        protocol,
        port: (p != 0).then_some(p),
    })
}

fn services_map(
    m: std::collections::HashMap<String, wl::PortList>,
) -> Result<VecMap<String, ServicePorts>, ConvertError> {
    let mut out = VecMap::new();
    for (key, list) in m {
        if !key.contains('/') {
            return Err(err(
                format!("services[{key:?}]"),
                format!("failed to parse namespaced hostname: {key}"),
            ));
        }
        let mut ports = ServicePorts::new();
        for (i, p) in list.ports.iter().enumerate() {
            let at = format!("services[{key:?}].ports[{i}]");
            ports.insert(port(p.service_port, &at)?, port(p.target_port, &at)?);
        }
        ports.shrink_to_fit();
        out.insert(key, ports);
    }
    out.shrink_to_fit();
    Ok(out)
}

/// A `GatewayAddress`: a network address or a service hostname, and the HBONE port.
pub fn gateway(g: wl::GatewayAddress, field: &str) -> Result<GatewayAddress, ConvertError> {
    let destination = match g.destination {
        Some(wl::gateway_address::Destination::Address(a)) => GatewayDestination::Address {
            ip: ip(&a.address, &format!("{field}.address.address"))?,
            network: a.network,
        },
        Some(wl::gateway_address::Destination::Hostname(h)) => GatewayDestination::Hostname {
            namespace: h.namespace,
            hostname: h.hostname,
        },
        None => {
            return Err(err(field, "nonempty gateway address is missing address"));
        }
    };
    let hbone_mtls_port = port(g.hbone_mtls_port, &format!("{field}.hboneMtlsPort"))?;
    Ok(GatewayAddress::new(destination, hbone_mtls_port))
}

/// An `istio.workload.Service`.
pub fn service(s: wl::Service) -> Result<Service, ConvertError> {
    let mut out = Service::new(&s.name, &s.namespace, &s.hostname);
    for (i, a) in s.addresses.iter().enumerate() {
        let at = format!("addresses[{i}]");
        let addr = ip(&a.address, &at)?;
        let full = if addr.is_ipv4() { 32 } else { 128 };
        match a.length {
            None => out.vips.push((a.network.clone(), addr)),
            Some(l) if l == full => out.vips.push((a.network.clone(), addr)),
            Some(l) => {
                let prefix =
                    u8::try_from(l).map_err(|_| err(&at, format!("invalid cidr: /{l}")))?;
                let net =
                    IpNet::new(addr, prefix).map_err(|e| err(&at, format!("invalid cidr: {e}")))?;
                out.cidr_vips.push((a.network.clone(), net));
            }
        }
    }
    for (i, p) in s.ports.iter().enumerate() {
        let at = format!("ports[{i}]");
        out.ports
            .insert(port(p.service_port, &at)?, port(p.target_port, &at)?);
    }
    out.subject_alt_names = s.subject_alt_names;
    out.waypoint = s.waypoint.map(|g| gateway(g, "waypoint")).transpose()?;
    for (i, w) in s.weighted_waypoints.into_iter().enumerate() {
        let at = format!("weightedWaypoints[{i}]");
        let Some(d) = w.destination else {
            return Err(err(at, "nonempty gateway address is missing address"));
        };
        out.weighted_waypoints
            .push((gateway(d, &format!("{at}.destination"))?, w.weight));
    }
    out.load_balancing = s.load_balancing.map(load_balancing).transpose()?;
    out.ip_families = match enum_of(s.ip_families, "ipFamilies", |v| {
        wl::IpFamilies::try_from(v).ok()
    })? {
        wl::IpFamilies::Automatic => IpFamilies::Automatic,
        wl::IpFamilies::Ipv4Only => IpFamilies::Ipv4Only,
        wl::IpFamilies::Ipv6Only => IpFamilies::Ipv6Only,
        wl::IpFamilies::Dual => IpFamilies::Dual,
    };
    out.canonical = s.canonical;
    out.ingress_use_waypoint = s.ingress_use_waypoint;
    // An unknown visibility is the widest, PUBLIC, as ztunnel reads it.
    out.visibility = match wl::service::Visibility::try_from(s.visibility) {
        Ok(wl::service::Visibility::Namespace) => Visibility::Namespace,
        Ok(wl::service::Visibility::Public) | Err(_) => Visibility::Public,
    };
    Ok(out)
}

fn load_balancing(lb: wl::LoadBalancing) -> Result<LoadBalancing, ConvertError> {
    use wl::load_balancing::{HealthPolicy as PbHealth, Mode as PbMode, Scope as PbScope};
    let mut routing_preference = Vec::with_capacity(lb.routing_preference.len());
    for (i, s) in lb.routing_preference.iter().enumerate() {
        let at = format!("loadBalancing.routingPreference[{i}]");
        routing_preference.push(match enum_of(*s, &at, |v| PbScope::try_from(v).ok())? {
            PbScope::Region => LbScope::Region,
            PbScope::Zone => LbScope::Zone,
            PbScope::Subzone => LbScope::Subzone,
            PbScope::Node => LbScope::Node,
            PbScope::Cluster => LbScope::Cluster,
            PbScope::Network => LbScope::Network,
            PbScope::UnspecifiedScope => return Err(err(at, "unspecified scope")),
        });
    }
    let mode = match enum_of(lb.mode, "loadBalancing.mode", |v| PbMode::try_from(v).ok())? {
        PbMode::UnspecifiedMode => LbMode::Standard,
        PbMode::Strict => LbMode::Strict,
        PbMode::Failover => LbMode::Failover,
        PbMode::Passthrough => LbMode::Passthrough,
    };
    let health_policy = match enum_of(lb.health_policy, "loadBalancing.healthPolicy", |v| {
        PbHealth::try_from(v).ok()
    })? {
        PbHealth::OnlyHealthy => HealthPolicy::OnlyHealthy,
        PbHealth::AllowAll => HealthPolicy::AllowAll,
    };
    Ok(LoadBalancing {
        routing_preference,
        mode,
        health_policy,
    })
}

/// An `istio.security.Authorization`.
pub fn authorization(a: sec::Authorization) -> Result<Authorization, ConvertError> {
    let scope = match enum_of(a.scope, "scope", |v| sec::Scope::try_from(v).ok())? {
        sec::Scope::Global => Scope::Global,
        sec::Scope::Namespace => Scope::Namespace,
        sec::Scope::WorkloadSelector => Scope::WorkloadSelector,
    };
    let action = match enum_of(a.action, "action", |v| sec::Action::try_from(v).ok())? {
        sec::Action::Allow => Action::Allow,
        sec::Action::Deny => Action::Deny,
    };
    let mut rules = Vec::with_capacity(a.rules.len());
    for (r, rule) in a.rules.into_iter().enumerate() {
        let mut clauses = Vec::with_capacity(rule.clauses.len());
        for (c, clause) in rule.clauses.into_iter().enumerate() {
            let mut matches = Vec::with_capacity(clause.matches.len());
            for (m, x) in clause.matches.into_iter().enumerate() {
                matches.push(policy_match(
                    x,
                    &format!("rules[{r}].clauses[{c}].matches[{m}]"),
                )?);
            }
            clauses.push(Clause { matches });
        }
        rules.push(Rule { clauses });
    }
    let mut out = Authorization::new(a.namespace, a.name, scope, action, rules);
    out.dry_run = a.dry_run;
    Ok(out)
}

fn policy_match(m: sec::Match, at: &str) -> Result<Match, ConvertError> {
    let strings = |v: Vec<sec::StringMatch>, f: &str| -> Result<Vec<StringMatch>, ConvertError> {
        v.into_iter()
            .enumerate()
            .map(|(i, s)| string_match(s, &format!("{at}.{f}[{i}]")))
            .collect()
    };
    let cidrs = |v: Vec<sec::Address>, f: &str| -> Result<Vec<IpNet>, ConvertError> {
        v.into_iter()
            .enumerate()
            .map(|(i, a)| cidr(&a, &format!("{at}.{f}[{i}]")))
            .collect()
    };
    let ports = |v: Vec<u32>, f: &str| -> Result<Vec<u16>, ConvertError> {
        v.into_iter()
            .enumerate()
            .map(|(i, p)| port(p, &format!("{at}.{f}[{i}]")))
            .collect()
    };
    let accounts = |v: Vec<sec::ServiceAccountMatch>| -> Vec<ServiceAccountMatch> {
        v.into_iter()
            .map(|s| ServiceAccountMatch {
                namespace: s.namespace,
                service_account: s.service_account,
            })
            .collect()
    };
    let mut out = Match::default();
    out.namespaces = strings(m.namespaces, "namespaces")?;
    out.not_namespaces = strings(m.not_namespaces, "notNamespaces")?;
    out.service_accounts = accounts(m.service_accounts);
    out.not_service_accounts = accounts(m.not_service_accounts);
    out.principals = strings(m.principals, "principals")?;
    out.not_principals = strings(m.not_principals, "notPrincipals")?;
    out.source_ips = cidrs(m.source_ips, "sourceIps")?;
    out.not_source_ips = cidrs(m.not_source_ips, "notSourceIps")?;
    out.destination_ips = cidrs(m.destination_ips, "destinationIps")?;
    out.not_destination_ips = cidrs(m.not_destination_ips, "notDestinationIps")?;
    out.destination_ports = ports(m.destination_ports, "destinationPorts")?;
    out.not_destination_ports = ports(m.not_destination_ports, "notDestinationPorts")?;
    Ok(out)
}

fn string_match(s: sec::StringMatch, at: &str) -> Result<StringMatch, ConvertError> {
    use sec::string_match::MatchType;
    match s.match_type {
        Some(MatchType::Exact(v)) => Ok(StringMatch::Exact(v)),
        Some(MatchType::Prefix(v)) => Ok(StringMatch::Prefix(v)),
        Some(MatchType::Suffix(v)) => Ok(StringMatch::Suffix(v)),
        Some(MatchType::Presence(())) => Ok(StringMatch::Presence),
        // ztunnel drops such an entry, which can turn "these principals" into "anyone".
        None => Err(err(at, "string match with no match type")),
    }
}

fn cidr(a: &sec::Address, at: &str) -> Result<IpNet, ConvertError> {
    let addr = ip(&a.address, at)?;
    let prefix =
        u8::try_from(a.length).map_err(|_| err(at, format!("invalid cidr: /{}", a.length)))?;
    IpNet::new(addr, prefix).map_err(|e| err(at, format!("invalid cidr: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of<T: std::fmt::Debug>(r: Result<T, ConvertError>) -> String {
        r.expect_err("refused").field
    }

    #[test]
    fn workloads_refuse_what_cannot_be_represented_naming_the_field() {
        let base = || wl::Workload {
            uid: "u".into(),
            addresses: vec![vec![10, 0, 0, 1]],
            ..Default::default()
        };
        let mut w = base();
        w.tunnel_protocol = wl::TunnelProtocol::LegacyIstioMtls as i32;
        assert_eq!(field_of(workload(w)), "tunnelProtocol");
        let mut w = base();
        w.tunnel_protocol = 99;
        assert_eq!(field_of(workload(w)), "tunnelProtocol");
        let mut w = base();
        w.waypoint = Some(wl::GatewayAddress::default());
        assert_eq!(field_of(workload(w)), "waypoint");
        let mut w = base();
        w.services
            .insert("no-slash".into(), wl::PortList::default());
        assert_eq!(field_of(workload(w)), "services[\"no-slash\"]");
        let mut w = base();
        w.services.insert(
            "shop/web".into(),
            wl::PortList {
                ports: vec![wl::Port {
                    service_port: 70_000,
                    target_port: 80,
                    app_protocol: 0,
                }],
            },
        );
        assert_eq!(field_of(workload(w)), "services[\"shop/web\"].ports[0]");
        // Defaults as ztunnel reads them.
        let w = workload(base()).expect("minimal workload");
        assert_eq!((w.capacity, w.cluster_id.as_str()), (1, "Kubernetes"));
        assert_eq!(w.protocol, TunnelProtocol::None);
        assert!(w.locality.is_none());
        let mut zero = base();
        zero.capacity = Some(0);
        assert_eq!(workload(zero).expect("capacity 0").capacity, 0);
    }

    #[test]
    fn services_split_vips_from_cidrs() {
        let s = wl::Service {
            name: "web".into(),
            namespace: "shop".into(),
            hostname: "web.shop.svc.cluster.local".into(),
            addresses: vec![
                wl::NetworkAddress {
                    network: "".into(),
                    address: vec![10, 96, 0, 1],
                    length: None,
                },
                wl::NetworkAddress {
                    network: "".into(),
                    address: vec![10, 96, 0, 2],
                    length: Some(32),
                },
                wl::NetworkAddress {
                    network: "east".into(),
                    address: vec![10, 97, 0, 0],
                    length: Some(24),
                },
            ],
            ..Default::default()
        };
        let s = service(s).expect("service");
        assert_eq!(s.vips.len(), 2);
        assert_eq!(s.cidr_vips[0].0, "east");
        assert_eq!(s.cidr_vips[0].1.to_string(), "10.97.0.0/24");
        let bad = wl::Service {
            addresses: vec![wl::NetworkAddress {
                network: "".into(),
                address: vec![10, 0, 0, 1],
                length: Some(40),
            }],
            ..Default::default()
        };
        assert_eq!(field_of(service(bad)), "addresses[0]");
    }

    #[test]
    fn policies_never_widen_on_bad_values() {
        let with = |m: sec::Match| sec::Authorization {
            name: "p".into(),
            namespace: "shop".into(),
            rules: vec![sec::Rule {
                clauses: vec![sec::Clause { matches: vec![m] }],
            }],
            ..Default::default()
        };
        // An unset string match (ztunnel drops it, leaving "any principal").
        let m = sec::Match {
            principals: vec![sec::StringMatch { match_type: None }],
            ..Default::default()
        };
        assert_eq!(
            field_of(authorization(with(m))),
            "rules[0].clauses[0].matches[0].principals[0]"
        );
        // Address bytes of the wrong length (ztunnel drops them).
        let m = sec::Match {
            source_ips: vec![sec::Address {
                address: vec![1, 2, 3],
                length: 8,
            }],
            ..Default::default()
        };
        assert_eq!(
            field_of(authorization(with(m))),
            "rules[0].clauses[0].matches[0].sourceIps[0]"
        );
        let mut p = with(sec::Match::default());
        p.action = 7;
        assert_eq!(field_of(authorization(p)), "action");
        let ok = authorization(with(sec::Match {
            destination_ports: vec![8080],
            ..Default::default()
        }))
        .expect("policy");
        assert_eq!(ok.key(), "shop/p");
    }
}
