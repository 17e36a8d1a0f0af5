//! ztunnel's local config (`LOCAL_XDS_PATH`): `workloads`, `services` and `policies` in YAML,
//! camelCase keys. ambit adds workload `labels` (for Istio `selector` policies), workload
//! `hboneHttp3` (peers dial it over HTTP/3) and an `istioPolicies` list of Istio
//! AuthorizationPolicy/PeerAuthentication objects.
//!
//! Errors and warnings are [`ConfigError`] / [`ConfigWarning`] naming the file, the object
//! (`workloads[2] (shop/web)`) and the field. Unknown fields follow the one rule of
//! [`ambit_config::Report::decode`]: a warning naming the nearest known field.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use ambit_authz::{
    Action, Authorization, Clause, IstioPolicies, Match, Rule, Scope, ServiceAccountMatch,
    StringMatch,
};
use ambit_config::{ConfigError, ConfigWarning, Report};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::state::State;
use crate::types::{
    AppTunnelProtocol, ApplicationTunnel, GatewayAddress, GatewayDestination, HealthPolicy,
    IpFamilies, LbMode, LbScope, LoadBalancing, Locality, NetworkMode, Service, TunnelProtocol,
    Visibility, Workload, WorkloadStatus, WorkloadType,
};

/// A loaded config, and the warnings about what it asked for that ambit does not enforce.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoadedConfig {
    /// The state it describes.
    pub state: State,
    /// Caveats: unknown or unsupported fields, and what the Istio policies ask for that the
    /// node proxy cannot enforce.
    pub warnings: Vec<ConfigWarning>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct File {
    #[serde(default)]
    workloads: Vec<serde_yaml_ng::Value>,
    #[serde(default)]
    services: Vec<serde_yaml_ng::Value>,
    #[serde(default)]
    policies: Vec<serde_yaml_ng::Value>,
    #[serde(default)]
    istio_policies: Vec<serde_yaml_ng::Value>,
    root_namespace: Option<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct WorkloadYaml {
    /// Empty: `<clusterId or Kubernetes>//Pod/<namespace>/<name>`.
    #[serde(default)]
    uid: String,
    #[serde(default)]
    name: String,
    namespace: String,
    #[serde(default)]
    workload_ips: Vec<IpAddr>,
    #[serde(default)]
    network: String,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    trust_domain: String,
    #[serde(default)]
    service_account: String,
    #[serde(default)]
    node: String,
    #[serde(default)]
    canonical_name: String,
    #[serde(default)]
    canonical_revision: String,
    #[serde(default)]
    workload_type: Option<String>,
    #[serde(default)]
    workload_name: String,
    #[serde(default)]
    services: BTreeMap<String, BTreeMap<u16, u16>>,
    #[serde(default)]
    authorization_policies: Vec<String>,
    #[serde(default)]
    cluster_id: String,
    capacity: Option<u32>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    waypoint: Option<GatewayYaml>,
    network_gateway: Option<GatewayYaml>,
    #[serde(default)]
    hostname: String,
    status: Option<String>,
    network_mode: Option<String>,
    #[serde(default)]
    native_tunnel: bool,
    #[serde(default)]
    hbone_http3: bool,
    application_tunnel: Option<AppTunnelYaml>,
    locality: Option<LocalityYaml>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct AppTunnelYaml {
    protocol: String,
    port: Option<u16>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct LocalityYaml {
    #[serde(default)]
    region: String,
    #[serde(default)]
    zone: String,
    #[serde(default)]
    subzone: String,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct CidrVipYaml {
    #[serde(default)]
    network: String,
    cidr: String,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct EndpointYaml {
    workload_uid: String,
    #[serde(default)]
    port: BTreeMap<u16, u16>,
    status: Option<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct LoadBalancerYaml {
    #[serde(default)]
    routing_preferences: Vec<String>,
    mode: Option<String>,
    health_policy: Option<String>,
}

/// `{destination: "network/IP" | "namespace/hostname", hboneMtlsPort: 15008}`.
#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct GatewayYaml {
    destination: String,
    hbone_mtls_port: Option<u16>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct WeightedWaypointYaml {
    destination: GatewayYaml,
    #[serde(default)]
    weight: u32,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceYaml {
    name: String,
    namespace: String,
    hostname: String,
    #[serde(default)]
    vips: Vec<String>,
    #[serde(default)]
    ports: BTreeMap<u16, u16>,
    /// ambit extension: service port → `appProtocol`.
    #[serde(default)]
    app_protocols: BTreeMap<u16, String>,
    #[serde(default)]
    subject_alt_names: Vec<String>,
    waypoint: Option<GatewayYaml>,
    #[serde(default)]
    weighted_waypoints: Vec<WeightedWaypointYaml>,
    #[serde(default)]
    cidr_vips: Vec<CidrVipYaml>,
    #[serde(default)]
    endpoints: BTreeMap<String, EndpointYaml>,
    load_balancer: Option<LoadBalancerYaml>,
    ip_families: Option<String>,
    #[serde(default)]
    canonical: bool,
    visibility: Option<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyYaml {
    name: String,
    #[serde(default)]
    namespace: String,
    scope: ScopeYaml,
    action: ActionYaml,
    #[serde(default)]
    rules: Vec<Vec<Vec<MatchYaml>>>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize, Serialize)]
enum ScopeYaml {
    Global,
    Namespace,
    WorkloadSelector,
}

#[derive(Deserialize, Serialize)]
enum ActionYaml {
    Allow,
    Deny,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct MatchYaml {
    #[serde(default)]
    namespaces: Vec<StringMatchYaml>,
    #[serde(default)]
    not_namespaces: Vec<StringMatchYaml>,
    #[serde(default)]
    service_accounts: Vec<SaYaml>,
    #[serde(default)]
    not_service_accounts: Vec<SaYaml>,
    #[serde(default)]
    principals: Vec<StringMatchYaml>,
    #[serde(default)]
    not_principals: Vec<StringMatchYaml>,
    #[serde(default)]
    source_ips: Vec<IpNetYaml>,
    #[serde(default)]
    not_source_ips: Vec<IpNetYaml>,
    #[serde(default)]
    destination_ips: Vec<IpNetYaml>,
    #[serde(default)]
    not_destination_ips: Vec<IpNetYaml>,
    #[serde(default)]
    destination_ports: Vec<u16>,
    #[serde(default)]
    not_destination_ports: Vec<u16>,
}

/// `{Exact: "x"}`, `{Prefix: "x"}`, `{Suffix: "x"}` or `{Presence: {}}` (externally tagged, as
/// ztunnel's serde writes the `StringMatch` oneof), or the same as a YAML tag (`!Exact x`).
struct StringMatchYaml(StringMatch);

impl<'de> Deserialize<'de> for StringMatchYaml {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_yaml_ng::Value::deserialize(d)?;
        let (k, v) = match v {
            serde_yaml_ng::Value::Tagged(t) => (t.tag.to_string(), t.value),
            serde_yaml_ng::Value::Mapping(m) if m.len() == 1 => {
                let Some((k, v)) = m.into_iter().next() else {
                    return Err(serde::de::Error::custom("empty string match"));
                };
                (k.as_str().unwrap_or("?").to_owned(), v)
            }
            _ => {
                return Err(serde::de::Error::custom(
                    "a string match has exactly one of Exact, Prefix, Suffix, Presence",
                ));
            }
        };
        let k = k.trim_start_matches('!').to_owned();
        let text = || {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| serde::de::Error::custom(format!("{k} takes a string")))
        };
        Ok(Self(match k.as_str() {
            "Exact" => StringMatch::Exact(text()?),
            "Prefix" => StringMatch::Prefix(text()?),
            "Suffix" => StringMatch::Suffix(text()?),
            "Presence" => StringMatch::Presence,
            _ => {
                return Err(serde::de::Error::custom(format!(
                    "unknown string match {k:?} (Exact, Prefix, Suffix or Presence)"
                )));
            }
        }))
    }
}

impl Serialize for StringMatchYaml {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        match &self.0 {
            StringMatch::Exact(v) => m.serialize_entry("Exact", v)?,
            StringMatch::Prefix(v) => m.serialize_entry("Prefix", v)?,
            StringMatch::Suffix(v) => m.serialize_entry("Suffix", v)?,
            StringMatch::Presence => {
                m.serialize_entry("Presence", &serde_yaml_ng::Mapping::new())?
            }
        }
        m.end()
    }
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct SaYaml {
    namespace: String,
    service_account: String,
}

/// An IP or CIDR written as a string.
struct IpNetYaml(IpNet);

impl<'de> Deserialize<'de> for IpNetYaml {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<IpNet>()
            .ok()
            .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
            .map(IpNetYaml)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not an IP address or CIDR")))
    }
}

impl Serialize for IpNetYaml {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

// === loading ===

/// Loads a local config file.
pub fn load_file(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(&file, "file", "", format!("cannot read: {e}")))?;
    parse(&text, &file)
}

/// Parses local config text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<LoadedConfig, ConfigError> {
    let mut report = Report::new(file);
    ambit_config::check(text).map_err(|e| report.error("document", "", e.to_string()))?;
    let top: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)
        .map_err(|e| report.error("document", "", format!("not valid YAML: {e}")))?;
    let top = if top.is_null() {
        serde_yaml_ng::Value::Mapping(Default::default())
    } else {
        top
    };
    let f: File = report.decode(top, "document", "")?;
    let root = f
        .root_namespace
        .clone()
        .unwrap_or_else(|| ambit_authz::DEFAULT_ROOT_NAMESPACE.to_owned());
    let mut state = State::with_root_namespace(&root);

    for (i, v) in f.workloads.into_iter().enumerate() {
        let label = object_label("workloads", i, &v);
        let w: WorkloadYaml = report.decode(v, &label, "")?;
        let workload = convert_workload(w).map_err(|(field, m)| report.error(&label, &field, m))?;
        state
            .insert_workload(workload)
            .map_err(|m| report.error(&label, "", m.to_string()))?;
    }
    for (i, v) in f.services.into_iter().enumerate() {
        let label = object_label("services", i, &v);
        let mut s: ServiceYaml = report.decode(v, &label, "")?;
        let endpoints = std::mem::take(&mut s.endpoints);
        let service = convert_service(s).map_err(|(field, m)| report.error(&label, &field, m))?;
        let key = service.key();
        state.insert_service(service);
        // Listed endpoints join the workloads' own `services` entries.
        for (name, ep) in endpoints {
            let Some(w) = state.workload(&ep.workload_uid) else {
                report.warn(
                    &label,
                    &format!("endpoints[{name:?}].workloadUid"),
                    format!("no workload {:?} in this config; ignored", ep.workload_uid),
                );
                continue;
            };
            let mut w = (**w).clone();
            w.services.get_or_default(key.clone()).extend(ep.port);
            if ep.status.as_deref() == Some("Unhealthy") {
                w.status = WorkloadStatus::Unhealthy;
            }
            state.upsert_workload(w);
        }
    }
    for (i, v) in f.policies.into_iter().enumerate() {
        let label = object_label("policies", i, &v);
        let p: PolicyYaml = report.decode(v, &label, "")?;
        state.policies_mut().insert(convert_policy(p));
    }
    if !f.istio_policies.is_empty() {
        let objects = ambit_config::objects_of(f.istio_policies, "istioPolicies", &report)?;
        let mut inner = Report::new(file);
        let loaded = IstioPolicies::from_objects(&objects, &root, &mut inner).map_err(|e| {
            ConfigError::new(
                file,
                &format!("istioPolicies: {}", e.object),
                &e.field,
                e.message,
            )
        })?;
        loaded.apply_to(state.policies_mut());
        for w in inner.into_warnings() {
            report.warn(&format!("istioPolicies: {}", w.object), &w.field, w.message);
        }
    }
    Ok(LoadedConfig {
        state,
        warnings: report.into_warnings(),
    })
}

/// Adds Istio policy YAML (a separate file) to a loaded config.
pub fn add_istio_policies(
    cfg: &mut LoadedConfig,
    yaml: &str,
    file: &str,
) -> Result<(), ConfigError> {
    let root = cfg.state.policies().root_namespace().to_owned();
    let loaded = IstioPolicies::parse(yaml, file, &root)?;
    loaded.apply_to(cfg.state.policies_mut());
    cfg.warnings.extend(loaded.warnings);
    Ok(())
}

fn object_label(list: &str, i: usize, v: &serde_yaml_ng::Value) -> String {
    let get = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("?").to_owned();
    format!("{list}[{i}] ({}/{})", get("namespace"), get("name"))
}

fn convert_workload(w: WorkloadYaml) -> Result<Workload, (String, String)> {
    let protocol = match w.protocol.as_deref().unwrap_or("HBONE") {
        "HBONE" => TunnelProtocol::Hbone,
        "TCP" | "NONE" => TunnelProtocol::None,
        other => {
            return Err((
                "protocol".into(),
                format!("unknown protocol {other:?} (HBONE, TCP or NONE)"),
            ));
        }
    };
    let workload_type = match w
        .workload_type
        .as_deref()
        .unwrap_or("deployment")
        .to_ascii_lowercase()
        .as_str()
    {
        "deployment" => WorkloadType::Deployment,
        "cronjob" => WorkloadType::CronJob,
        "pod" => WorkloadType::Pod,
        "job" => WorkloadType::Job,
        other => {
            return Err((
                "workloadType".into(),
                format!("unknown workload type {other:?} (deployment, cronjob, pod or job)"),
            ));
        }
    };
    let uid = if w.uid.is_empty() {
        let cluster = if w.cluster_id.is_empty() {
            "Kubernetes"
        } else {
            &w.cluster_id
        };
        format!("{cluster}//Pod/{}/{}", w.namespace, w.name)
    } else {
        w.uid.clone()
    };
    let mut out = Workload::new(&uid, &w.name, &w.namespace, w.workload_ips);
    out.network = w.network;
    out.protocol = protocol;
    out.trust_domain = w.trust_domain;
    out.service_account = w.service_account;
    out.node = w.node;
    out.canonical_name = w.canonical_name;
    out.canonical_revision = w.canonical_revision;
    out.workload_type = workload_type;
    out.workload_name = w.workload_name;
    out.services = w
        .services
        .into_iter()
        .map(|(k, ports)| (k, ports.into_iter().collect()))
        .collect();
    out.authorization_policies = w.authorization_policies;
    out.cluster_id = w.cluster_id;
    out.capacity = w.capacity.unwrap_or(1);
    out.labels = w.labels;
    out.waypoint = w
        .waypoint
        .map(|g| convert_gateway(g, "waypoint").map(Box::new))
        .transpose()?;
    out.network_gateway = w
        .network_gateway
        .map(|g| convert_gateway(g, "networkGateway").map(Box::new))
        .transpose()?;
    out.hostname = w.hostname;
    out.status = one_of(
        w.status.as_deref(),
        "status",
        &[
            ("Healthy", WorkloadStatus::Healthy),
            ("Unhealthy", WorkloadStatus::Unhealthy),
        ],
    )?
    .unwrap_or_default();
    out.network_mode = one_of(
        w.network_mode.as_deref(),
        "networkMode",
        &[
            ("Standard", NetworkMode::Standard),
            ("HostNetwork", NetworkMode::HostNetwork),
        ],
    )?
    .unwrap_or_default();
    out.native_tunnel = w.native_tunnel;
    out.hbone_http3 = w.hbone_http3;
    out.application_tunnel = match w.application_tunnel {
        None => None,
        Some(t) => Some(ApplicationTunnel {
            protocol: one_of(
                Some(&t.protocol),
                "applicationTunnel.protocol",
                &[
                    ("NONE", AppTunnelProtocol::None),
                    ("PROXY", AppTunnelProtocol::Proxy),
                ],
            )?
            .unwrap_or_default(),
            port: t.port.filter(|p| *p != 0),
        }),
    };
    out.locality = w.locality.map(|l| {
        Box::new(Locality {
            region: l.region,
            zone: l.zone,
            subzone: l.subzone,
        })
    });
    out.identity().map_err(|e| {
        (
            "serviceAccount".into(),
            format!("does not form a SPIFFE id: {e}"),
        )
    })?;
    Ok(out)
}

fn convert_service(s: ServiceYaml) -> Result<Service, (String, String)> {
    let mut vips = Vec::with_capacity(s.vips.len());
    for (i, v) in s.vips.iter().enumerate() {
        let (network, ip) = v.rsplit_once('/').unwrap_or(("", v.as_str()));
        let ip = ip
            .parse::<IpAddr>()
            .map_err(|_| (format!("vips[{i}]"), format!("{v:?} is not \"network/IP\"")))?;
        vips.push((network.to_owned(), ip));
    }
    let mut out = Service::new(&s.name, &s.namespace, &s.hostname);
    out.vips = vips;
    out.ports = s.ports;
    out.app_protocols = s.app_protocols;
    out.subject_alt_names = s.subject_alt_names;
    out.waypoint = s
        .waypoint
        .map(|g| convert_gateway(g, "waypoint"))
        .transpose()?;
    for (i, w) in s.weighted_waypoints.into_iter().enumerate() {
        let g = convert_gateway(
            w.destination,
            &format!("weightedWaypoints[{i}].destination"),
        )?;
        out.weighted_waypoints.push((g, w.weight));
    }
    for (i, c) in s.cidr_vips.iter().enumerate() {
        let net = c.cidr.parse::<IpNet>().map_err(|e| {
            (
                format!("cidrVips[{i}].cidr"),
                format!("{:?} is not a CIDR: {e}", c.cidr),
            )
        })?;
        out.cidr_vips.push((c.network.clone(), net));
    }
    if let Some(lb) = s.load_balancer {
        let mut routing_preference = Vec::with_capacity(lb.routing_preferences.len());
        for (i, p) in lb.routing_preferences.iter().enumerate() {
            let field = format!("loadBalancer.routingPreferences[{i}]");
            routing_preference.push(
                one_of(
                    Some(p),
                    &field,
                    &[
                        ("Region", LbScope::Region),
                        ("Zone", LbScope::Zone),
                        ("Subzone", LbScope::Subzone),
                        ("Node", LbScope::Node),
                        ("Cluster", LbScope::Cluster),
                        ("Network", LbScope::Network),
                    ],
                )?
                .unwrap_or(LbScope::Region),
            );
        }
        out.load_balancing = Some(LoadBalancing {
            routing_preference,
            mode: one_of(
                lb.mode.as_deref(),
                "loadBalancer.mode",
                &[
                    ("Standard", LbMode::Standard),
                    ("Strict", LbMode::Strict),
                    ("Failover", LbMode::Failover),
                    ("Passthrough", LbMode::Passthrough),
                ],
            )?
            .unwrap_or_default(),
            health_policy: one_of(
                lb.health_policy.as_deref(),
                "loadBalancer.healthPolicy",
                &[
                    ("OnlyHealthy", HealthPolicy::OnlyHealthy),
                    ("AllowAll", HealthPolicy::AllowAll),
                ],
            )?
            .unwrap_or_default(),
        });
    }
    out.ip_families = one_of(
        s.ip_families.as_deref(),
        "ipFamilies",
        &[
            ("Dual", IpFamilies::Dual),
            ("IPv4", IpFamilies::Ipv4Only),
            ("IPv6", IpFamilies::Ipv6Only),
        ],
    )?
    .unwrap_or_default();
    out.canonical = s.canonical;
    out.visibility = one_of(
        s.visibility.as_deref(),
        "visibility",
        &[
            ("Public", Visibility::Public),
            ("Namespace", Visibility::Namespace),
        ],
    )?
    .unwrap_or_default();
    Ok(out)
}

/// The value `v` names among `choices` (exact spelling, as ztunnel's YAML takes them), or an
/// error listing them; `None` when absent.
fn one_of<T: Copy>(
    v: Option<&str>,
    field: &str,
    choices: &[(&str, T)],
) -> Result<Option<T>, (String, String)> {
    let Some(v) = v else { return Ok(None) };
    match choices.iter().find(|(name, _)| *name == v) {
        Some((_, t)) => Ok(Some(*t)),
        None => {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            Err((
                field.to_owned(),
                format!("{v:?} is not one of {}", names.join(", ")),
            ))
        }
    }
}

/// `network/IP` (an empty network is the default one) or `namespace/hostname`.
fn convert_gateway(g: GatewayYaml, field: &str) -> Result<GatewayAddress, (String, String)> {
    let Some((left, right)) = g.destination.rsplit_once('/') else {
        return Err((
            format!("{field}.destination"),
            format!(
                "{:?} is neither \"network/IP\" nor \"namespace/hostname\"",
                g.destination
            ),
        ));
    };
    let destination = match right.parse::<IpAddr>() {
        Ok(ip) => GatewayDestination::Address {
            network: left.to_owned(),
            ip,
        },
        Err(_) if !left.is_empty() && !right.is_empty() => GatewayDestination::Hostname {
            namespace: left.to_owned(),
            hostname: right.to_owned(),
        },
        Err(_) => {
            return Err((
                format!("{field}.destination"),
                format!(
                    "{:?} is neither \"network/IP\" nor \"namespace/hostname\"",
                    g.destination
                ),
            ));
        }
    };
    Ok(GatewayAddress {
        destination,
        hbone_mtls_port: g.hbone_mtls_port.unwrap_or(15008),
    })
}

fn convert_policy(p: PolicyYaml) -> Authorization {
    let rules = p
        .rules
        .into_iter()
        .map(|clauses| Rule {
            clauses: clauses
                .into_iter()
                .map(|matches| Clause {
                    matches: matches.into_iter().map(convert_match).collect(),
                })
                .collect(),
        })
        .collect();
    let mut a = Authorization::new(
        p.namespace,
        p.name,
        match p.scope {
            ScopeYaml::Global => Scope::Global,
            ScopeYaml::Namespace => Scope::Namespace,
            ScopeYaml::WorkloadSelector => Scope::WorkloadSelector,
        },
        match p.action {
            ActionYaml::Allow => Action::Allow,
            ActionYaml::Deny => Action::Deny,
        },
        rules,
    );
    a.dry_run = p.dry_run;
    a
}

fn convert_match(m: MatchYaml) -> Match {
    let s = |v: Vec<StringMatchYaml>| v.into_iter().map(|x| x.0).collect();
    let sa = |v: Vec<SaYaml>| {
        v.into_iter()
            .map(|x| ServiceAccountMatch {
                namespace: x.namespace,
                service_account: x.service_account,
            })
            .collect()
    };
    let ips = |v: Vec<IpNetYaml>| v.into_iter().map(|x| x.0).collect();
    let mut out = Match::default();
    out.namespaces = s(m.namespaces);
    out.not_namespaces = s(m.not_namespaces);
    out.service_accounts = sa(m.service_accounts);
    out.not_service_accounts = sa(m.not_service_accounts);
    out.principals = s(m.principals);
    out.not_principals = s(m.not_principals);
    out.source_ips = ips(m.source_ips);
    out.not_source_ips = ips(m.not_source_ips);
    out.destination_ips = ips(m.destination_ips);
    out.not_destination_ips = ips(m.not_destination_ips);
    out.destination_ports = m.destination_ports;
    out.not_destination_ports = m.not_destination_ports;
    out
}
