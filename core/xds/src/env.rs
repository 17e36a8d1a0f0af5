//! ztunnel's configuration contract: the environment variables ztunnel reads to join a mesh,
//! with its defaults and meanings, so `ambit-ztunnel` runs where ztunnel's DaemonSet would.
//! Parsed from any list of variables, so it is testable without touching the process's.
//!
//! | ztunnel variable | meaning | default |
//! |---|---|---|
//! | `XDS_ADDRESS` | istiod's xDS endpoint; `""` turns xDS off | `https://istiod.istio-system.svc:15012` in Kubernetes, else `https://localhost:15012`; **off when a local config is given** (ambit) |
//! | `CA_ADDRESS` | the Istio CA; `""` turns it off | as `XDS_ADDRESS` (when xDS is on) |
//! | `XDS_ROOT_CA`, `CA_ROOT_CA` | a PEM file, `SYSTEM`, or PEM text | `./var/run/secrets/istio/root-cert.pem` |
//! | `ALT_XDS_HOSTNAME`, `ALT_CA_HOSTNAME` | a second name the server certificate may carry | none |
//! | `AUTH_TOKEN` | a token file (re-read for every call), or the token itself | `./var/run/secrets/tokens/istio-token` if it exists |
//! | `CLUSTER_ID` (`ISTIO_META_CLUSTER_ID` wins) | the `clusterid` header | `Kubernetes` |
//! | `TRUST_DOMAIN` | the node's trust domain (peers of others are refused) | `cluster.local` |
//! | `NODE_NAME` | workloads with this `node` are served here | none |
//! | `POD_NAME`, `POD_NAMESPACE`, `INSTANCE_IP` | the node id `ztunnel~IP~POD.NS~NS.svc.cluster.local` | `""`, `""`, `1.1.1.1` |
//! | `ISTIO_META_<X>` | node metadata `<X>` | |
//! | `XDS_HEADER_<K>`, `CA_HEADER_<K>` | extra headers (`<K>` lowercased) | |
//! | `SECRET_TTL` | certificate lifetime asked for | `24h` |
//! | `LOCAL_XDS_PATH` | a local config file | none |
//! | `PROXY_MODE` | `shared` (one proxy, many workloads, certificates by impersonation) or `dedicated` | `shared` |
//! | `INPOD_UDS` | istio-cni's ZDS socket: in shared mode, pods are served inside their own network namespaces | `/var/run/ztunnel/ztunnel.sock`, used when `INPOD_ENABLED=true` (Istio's chart sets it) or `INPOD_UDS` is set; otherwise ambit serves the node's workloads from its own namespace (ambit) |
//! | `ISTIO_META_DNS_CAPTURE` | the DNS proxy (in-pod: `127.0.0.1:15053` in every pod) | on unless the value is other than `true` |
//! | `CONNECTION_TERMINATION_DEADLINE` | how long open connections may finish after SIGTERM | `5s`; else from `TERMINATION_GRACE_PERIOD_SECONDS` (`secs - 5` above 10 s, else `secs - 1`, at least 1 s) |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ambit_identity::TrustDomain;
use http::Uri;

use crate::control::{ControlPlane, RootCa, Token};

/// Istio's default root certificate path, relative to the working directory (as mounted in
/// ztunnel's pod).
pub const DEFAULT_ROOT_CA: &str = "./var/run/secrets/istio/root-cert.pem";
/// istio-cni's ZDS socket, where it hands the node proxy its pods.
pub const DEFAULT_INPOD_UDS: &str = "/var/run/ztunnel/ztunnel.sock";
/// The projected service-account token's default path.
pub const DEFAULT_TOKEN: &str = "./var/run/secrets/tokens/istio-token";

/// `PROXY_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// One proxy for every workload of the node: certificates are asked for on their behalf
    /// (`ImpersonatedIdentity`).
    Shared,
    /// A proxy for one workload (`PROXY_WORKLOAD_INFO`), with its own identity.
    Dedicated,
}

/// What the environment says, resolved to defaults.
#[derive(Debug, Clone)]
pub struct ZtunnelEnv {
    /// The xDS control plane, unless turned off.
    pub xds: Option<ControlPlane>,
    /// The CA, unless turned off.
    pub ca: Option<ControlPlane>,
    /// The cluster id.
    pub cluster_id: String,
    /// The node's trust domain.
    pub trust_domain: TrustDomain,
    /// `NODE_NAME`.
    pub node_name: Option<String>,
    /// `POD_NAME`.
    pub pod_name: String,
    /// `POD_NAMESPACE`.
    pub pod_namespace: String,
    /// `INSTANCE_IP`.
    pub instance_ip: String,
    /// `ISTIO_META_*`, without the prefix.
    pub proxy_metadata: BTreeMap<String, String>,
    /// `SECRET_TTL`.
    pub secret_ttl: Duration,
    /// `LOCAL_XDS_PATH`.
    pub local_xds_path: Option<PathBuf>,
    /// `PROXY_MODE`.
    pub proxy_mode: ProxyMode,
    /// `PROXY_WORKLOAD_INFO` (`namespace/pod/service-account`) in dedicated mode.
    pub workload_info: Option<(String, String, String)>,
    /// The ZDS socket, when pods are to be served in-pod (shared mode with `INPOD_ENABLED=true`
    /// or `INPOD_UDS` set).
    pub inpod_uds: Option<PathBuf>,
    /// How long open connections may finish after a shutdown signal.
    pub drain_deadline: Duration,
    /// `ISTIO_META_DNS_CAPTURE` (absent: on): the DNS proxy runs for the node's pods.
    pub dns_capture: bool,
}

/// A variable that cannot be used, with its value, as ztunnel reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid env var {name}={value:?} ({why})")]
pub struct EnvError {
    /// The variable.
    pub name: String,
    /// Its value.
    pub value: String,
    /// Why it cannot be used.
    pub why: String,
}

impl ZtunnelEnv {
    /// Reads the process's environment (`file_exists` is the file system's).
    pub fn from_process(local_config: Option<&Path>) -> Result<Self, EnvError> {
        Self::from_vars(std::env::vars(), local_config, |p| p.exists())
    }

    /// Reads `vars`. `local_config` is a local config file given some other way (a flag);
    /// `file_exists` decides the token default and the file-or-text readings.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
        local_config: Option<&Path>,
        file_exists: impl Fn(&Path) -> bool,
    ) -> Result<Self, EnvError> {
        let vars: BTreeMap<String, String> = vars.into_iter().collect();
        let get = |k: &str| vars.get(k).map(String::as_str);
        let bad = |name: &str, why: String| EnvError {
            name: name.to_owned(),
            value: get(name).unwrap_or_default().to_owned(),
            why,
        };

        let mut proxy_metadata = BTreeMap::new();
        let mut xds_headers = Vec::new();
        let mut ca_headers = Vec::new();
        for (k, v) in &vars {
            if let Some(m) = k.strip_prefix("ISTIO_META_") {
                proxy_metadata.insert(m.to_owned(), v.clone());
            } else if let Some(h) = k.strip_prefix("XDS_HEADER_") {
                xds_headers.push((h.to_ascii_lowercase(), v.clone()));
            } else if let Some(h) = k.strip_prefix("CA_HEADER_") {
                ca_headers.push((h.to_ascii_lowercase(), v.clone()));
            }
        }
        let cluster_id = get("ISTIO_META_CLUSTER_ID")
            .or(get("CLUSTER_ID"))
            .unwrap_or("Kubernetes")
            .to_owned();
        let trust_domain = TrustDomain::new(get("TRUST_DOMAIN").unwrap_or("cluster.local"))
            .map_err(|e| bad("TRUST_DOMAIN", e.to_string()))?;
        let local_xds_path = get("LOCAL_XDS_PATH")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| local_config.map(Path::to_path_buf));
        let in_kubernetes = get("KUBERNETES_SERVICE_HOST").is_some();
        let default_address = if in_kubernetes {
            "https://istiod.istio-system.svc:15012"
        } else {
            "https://localhost:15012"
        };
        let xds_address = match get("XDS_ADDRESS") {
            Some("") => None,
            Some(a) => Some(address(a).map_err(|why| bad("XDS_ADDRESS", why))?),
            None if local_xds_path.is_some() => None,
            None => Some(address(default_address).map_err(|why| bad("XDS_ADDRESS", why))?),
        };
        let ca_address = match get("CA_ADDRESS") {
            Some("") => None,
            Some(a) => Some(address(a).map_err(|why| bad("CA_ADDRESS", why))?),
            None if xds_address.is_some() => {
                Some(address(default_address).map_err(|why| bad("CA_ADDRESS", why))?)
            }
            None => None,
        };
        let token = match get("AUTH_TOKEN") {
            Some(v) if file_exists(Path::new(v)) => Token::File(PathBuf::from(v)),
            Some("") => Token::None,
            Some(v) => Token::Static(v.to_owned()),
            None if file_exists(Path::new(DEFAULT_TOKEN)) => Token::File(DEFAULT_TOKEN.into()),
            None => Token::None,
        };
        let root = |name: &str| match get(name) {
            Some(v) if file_exists(Path::new(v)) => RootCa::File(PathBuf::from(v)),
            Some(v) => RootCa::from_setting(v),
            None => RootCa::File(PathBuf::from(DEFAULT_ROOT_CA)),
        };
        let plane = |address: Uri, root_ca: RootCa, alt: &str, headers: Vec<(String, String)>| {
            ControlPlane {
                address,
                root_ca,
                alt_hostname: get(alt).filter(|h| !h.is_empty()).map(str::to_owned),
                token: token.clone(),
                cluster_id: cluster_id.clone(),
                headers,
            }
        };
        let xds =
            xds_address.map(|a| plane(a, root("XDS_ROOT_CA"), "ALT_XDS_HOSTNAME", xds_headers));
        let ca = ca_address.map(|a| plane(a, root("CA_ROOT_CA"), "ALT_CA_HOSTNAME", ca_headers));
        let secret_ttl = match get("SECRET_TTL") {
            Some(v) => ambit_config::duration::env(v).map_err(|why| bad("SECRET_TTL", why))?,
            None => Duration::from_secs(24 * 3600),
        };
        let proxy_mode = match get("PROXY_MODE").unwrap_or("shared") {
            "shared" => ProxyMode::Shared,
            "dedicated" => ProxyMode::Dedicated,
            _ => {
                return Err(bad(
                    "PROXY_MODE",
                    "PROXY_MODE must be one of dedicated, shared".into(),
                ));
            }
        };
        let workload_info = match (proxy_mode, get("PROXY_WORKLOAD_INFO")) {
            (_, Some(v)) => {
                let mut parts = v.splitn(3, '/');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(ns), Some(pod), Some(sa))
                        if !ns.is_empty() && !pod.is_empty() && !sa.is_empty() =>
                    {
                        Some((ns.to_owned(), pod.to_owned(), sa.to_owned()))
                    }
                    _ => {
                        return Err(bad(
                            "PROXY_WORKLOAD_INFO",
                            "want namespace/pod/service-account".into(),
                        ));
                    }
                }
            }
            (ProxyMode::Dedicated, None) => {
                return Err(bad(
                    "PROXY_WORKLOAD_INFO",
                    "PROXY_MODE=dedicated requires PROXY_WORKLOAD_INFO to be set".into(),
                ));
            }
            (ProxyMode::Shared, None) => None,
        };
        let inpod_uds = match (proxy_mode, get("INPOD_UDS"), get("INPOD_ENABLED")) {
            (ProxyMode::Dedicated, _, _) => None,
            (_, Some(p), _) if !p.is_empty() => Some(PathBuf::from(p)),
            (_, _, Some(e)) if e.eq_ignore_ascii_case("true") => {
                Some(PathBuf::from(DEFAULT_INPOD_UDS))
            }
            _ => None,
        };
        let drain_deadline = match (
            get("CONNECTION_TERMINATION_DEADLINE"),
            get("TERMINATION_GRACE_PERIOD_SECONDS"),
        ) {
            (Some(v), _) => ambit_config::duration::env(v)
                .map_err(|why| bad("CONNECTION_TERMINATION_DEADLINE", why))?,
            (None, Some(v)) => {
                let secs: u64 = v.trim().parse().map_err(|_| {
                    bad(
                        "TERMINATION_GRACE_PERIOD_SECONDS",
                        "want a whole number of seconds".into(),
                    )
                })?;
                // Leave the kubelet time to kill what is left (ztunnel's rule, without its
                // underflow at 0).
                let left = if secs > 10 {
                    secs - 5
                } else {
                    secs.saturating_sub(1)
                };
                Duration::from_secs(left.max(1))
            }
            (None, None) => Duration::from_secs(5),
        };
        let dns_capture = proxy_metadata
            .get("DNS_CAPTURE")
            .is_none_or(|v| v.eq_ignore_ascii_case("true"));
        Ok(Self {
            inpod_uds,
            drain_deadline,
            dns_capture,
            xds,
            ca,
            cluster_id,
            trust_domain,
            node_name: get("NODE_NAME")
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
            pod_name: get("POD_NAME").unwrap_or_default().to_owned(),
            pod_namespace: get("POD_NAMESPACE").unwrap_or_default().to_owned(),
            instance_ip: get("INSTANCE_IP").unwrap_or("1.1.1.1").to_owned(),
            proxy_metadata,
            secret_ttl,
            local_xds_path,
            proxy_mode,
            workload_info,
        })
    }

    /// The node as the xDS server sees it.
    pub fn node(&self) -> crate::NodeInfo {
        let mut metadata = self.proxy_metadata.clone();
        metadata
            .entry("CLUSTER_ID".to_owned())
            .or_insert_with(|| self.cluster_id.clone());
        crate::NodeInfo::ztunnel(
            &self.instance_ip,
            &self.pod_name,
            &self.pod_namespace,
            self.node_name.as_deref().unwrap_or_default(),
            &metadata,
        )
    }
}

/// A control-plane URI: `https://` is added when there is no scheme; only `https` is accepted.
fn address(a: &str) -> Result<Uri, String> {
    let with_scheme = if a.contains("://") {
        a.to_owned()
    } else {
        format!("https://{a}")
    };
    let uri: Uri = with_scheme.parse().map_err(|e| format!("not a URI: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err("only https:// is supported (istiod serves gRPC over TLS)".into());
    }
    if uri.host().is_none() {
        return Err("no host".into());
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)], local: Option<&str>) -> Result<ZtunnelEnv, EnvError> {
        ZtunnelEnv::from_vars(
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            local.map(Path::new),
            |p| p == Path::new("/tok") || p == Path::new("/root.pem"),
        )
    }

    #[test]
    fn defaults_are_ztunnels() {
        let e = env(&[], None).expect("defaults");
        let xds = e.xds.as_ref().expect("xDS on by default");
        assert_eq!(xds.address.to_string(), "https://localhost:15012/");
        assert_eq!(
            e.ca.as_ref().expect("CA").address.to_string(),
            "https://localhost:15012/"
        );
        assert_eq!(xds.root_ca, RootCa::File(DEFAULT_ROOT_CA.into()));
        assert_eq!(xds.token, Token::None);
        assert_eq!(
            (e.cluster_id.as_str(), e.trust_domain.as_str()),
            ("Kubernetes", "cluster.local")
        );
        assert_eq!(e.secret_ttl, Duration::from_secs(86_400));
        assert_eq!(e.proxy_mode, ProxyMode::Shared);
        assert_eq!(e.node().id, "ztunnel~1.1.1.1~.~.svc.cluster.local");
        let k8s = env(&[("KUBERNETES_SERVICE_HOST", "10.0.0.1")], None).expect("k8s");
        assert_eq!(
            k8s.xds.expect("xDS").address.to_string(),
            "https://istiod.istio-system.svc:15012/"
        );
    }

    #[test]
    fn inpod_and_drain_follow_ztunnel() {
        let e = env(&[], None).expect("defaults");
        assert_eq!(e.inpod_uds, None, "no ZDS unless asked (ambit's node mode)");
        assert!(e.dns_capture, "DNS capture is on by default (Istio 1.29)");
        let off = env(&[("ISTIO_META_DNS_CAPTURE", "false")], None).expect("off");
        assert!(!off.dns_capture);
        assert_eq!(e.drain_deadline, Duration::from_secs(5));
        let chart = env(&[("INPOD_ENABLED", "true")], None).expect("chart");
        assert_eq!(chart.inpod_uds, Some(PathBuf::from(DEFAULT_INPOD_UDS)));
        let path = env(&[("INPOD_UDS", "/run/z.sock")], None).expect("path");
        assert_eq!(path.inpod_uds, Some(PathBuf::from("/run/z.sock")));
        let dedicated = env(
            &[
                ("INPOD_ENABLED", "true"),
                ("PROXY_MODE", "dedicated"),
                ("PROXY_WORKLOAD_INFO", "ns/pod/sa"),
            ],
            None,
        )
        .expect("dedicated");
        assert_eq!(dedicated.inpod_uds, None, "dedicated mode never uses ZDS");
        let grace = |v: &str| {
            env(&[("TERMINATION_GRACE_PERIOD_SECONDS", v)], None)
                .expect("grace")
                .drain_deadline
        };
        assert_eq!(grace("30"), Duration::from_secs(25));
        assert_eq!(grace("10"), Duration::from_secs(9));
        assert_eq!(grace("0"), Duration::from_secs(1), "no underflow at 0");
        let both = env(
            &[
                ("TERMINATION_GRACE_PERIOD_SECONDS", "30"),
                ("CONNECTION_TERMINATION_DEADLINE", "2s"),
            ],
            None,
        )
        .expect("both");
        assert_eq!(both.drain_deadline, Duration::from_secs(2));
        let bad =
            env(&[("TERMINATION_GRACE_PERIOD_SECONDS", "soon")], None).expect_err("not a number");
        assert_eq!(bad.name, "TERMINATION_GRACE_PERIOD_SECONDS");
    }

    #[test]
    fn every_variable_is_read() {
        let e = env(
            &[
                ("XDS_ADDRESS", "istiod.example:15012"),
                ("CA_ADDRESS", "https://ca.example:15012"),
                ("XDS_ROOT_CA", "/root.pem"),
                ("CA_ROOT_CA", "SYSTEM"),
                ("ALT_XDS_HOSTNAME", "istiod.istio-system.svc"),
                ("AUTH_TOKEN", "/tok"),
                ("CLUSTER_ID", "c1"),
                ("ISTIO_META_CLUSTER_ID", "c2"),
                ("ISTIO_META_DNS_CAPTURE", "true"),
                ("TRUST_DOMAIN", "corp.example"),
                ("NODE_NAME", "worker-1"),
                ("POD_NAME", "ztunnel-x"),
                ("POD_NAMESPACE", "istio-system"),
                ("INSTANCE_IP", "10.1.2.3"),
                ("XDS_HEADER_X_TENANT", "blue"),
                ("CA_HEADER_X_CA", "1"),
                ("SECRET_TTL", "12h"),
            ],
            None,
        )
        .expect("parses");
        let xds = e.xds.as_ref().expect("xDS");
        assert_eq!(xds.address.to_string(), "https://istiod.example:15012/");
        assert_eq!(xds.root_ca, RootCa::File("/root.pem".into()));
        assert_eq!(xds.alt_hostname.as_deref(), Some("istiod.istio-system.svc"));
        assert_eq!(xds.token, Token::File("/tok".into()));
        assert_eq!(xds.cluster_id, "c2");
        assert_eq!(xds.headers, [("x_tenant".to_owned(), "blue".to_owned())]);
        let ca = e.ca.as_ref().expect("CA");
        assert_eq!(ca.root_ca, RootCa::System);
        assert_eq!(ca.headers, [("x_ca".to_owned(), "1".to_owned())]);
        assert_eq!(e.secret_ttl, Duration::from_secs(12 * 3600));
        let node = e.node();
        assert_eq!(
            node.id,
            "ztunnel~10.1.2.3~ztunnel-x.istio-system~istio-system.svc.cluster.local"
        );
        assert_eq!(
            node.metadata.get("NAME").map(String::as_str),
            Some("ztunnel-x")
        );
        assert_eq!(
            node.metadata.get("INSTANCE_IPS").map(String::as_str),
            Some("10.1.2.3")
        );
        assert_eq!(
            node.metadata.get("NODE_NAME").map(String::as_str),
            Some("worker-1")
        );
        assert_eq!(
            node.metadata.get("CLUSTER_ID").map(String::as_str),
            Some("c2")
        );
        assert_eq!(
            node.metadata.get("DNS_CAPTURE").map(String::as_str),
            Some("true")
        );
        // A token that is not a file is the token itself.
        let lit = env(&[("AUTH_TOKEN", "abc")], None).expect("literal");
        assert_eq!(lit.xds.expect("xDS").token, Token::Static("abc".into()));
    }

    #[test]
    fn empty_addresses_turn_clients_off_and_a_local_config_means_local_only() {
        let e = env(&[("XDS_ADDRESS", ""), ("CA_ADDRESS", "")], None).expect("off");
        assert!(e.xds.is_none() && e.ca.is_none());
        let local = env(&[], Some("/etc/local.yaml")).expect("local");
        assert!(local.xds.is_none() && local.ca.is_none());
        assert_eq!(local.local_xds_path, Some(PathBuf::from("/etc/local.yaml")));
        // Both, when asked for (as ztunnel runs them).
        let both = env(&[("XDS_ADDRESS", "https://istiod:15012")], Some("/l.yaml")).expect("both");
        assert!(both.xds.is_some() && both.ca.is_some());
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases: [(&[(&str, &str)], &str); 5] = [
            (&[("XDS_ADDRESS", "http://istiod:15010")], "XDS_ADDRESS"),
            (&[("PROXY_MODE", "Shared")], "PROXY_MODE"),
            (&[("PROXY_MODE", "dedicated")], "PROXY_WORKLOAD_INFO"),
            (&[("SECRET_TTL", "a day")], "SECRET_TTL"),
            (&[("TRUST_DOMAIN", "Bad Domain")], "TRUST_DOMAIN"),
        ];
        for (vars, name) in cases {
            let e = env(vars, None).expect_err(name);
            assert_eq!(e.name, name, "{e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("invalid env var {name}=")),
                "{e}"
            );
        }
        let d = env(
            &[
                ("PROXY_MODE", "dedicated"),
                ("PROXY_WORKLOAD_INFO", "shop/web-1/web"),
            ],
            None,
        )
        .expect("dedicated");
        assert_eq!(
            d.workload_info,
            Some(("shop".into(), "web-1".into(), "web".into()))
        );
    }
}
