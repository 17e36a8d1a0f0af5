//! Starting the proxies from configuration text and a CA, as embedders do: the C ABI and the
//! Python package start them through these functions, so a YAML error, a missing identity or
//! a port taken is reported the same way in both. (The example daemons read files and start
//! `NodeProxy`/`Waypoint` directly, with their own reload loops.)

use std::sync::Arc;

use crate::Error;
use crate::config::ConfigWarning;
use crate::identity::{CaSource, CertificateAuthority, SpiffeId};
use crate::node::{NodeConfig, NodeProxy};
use crate::state::State;
use crate::tls::TlsContext;
use crate::waypoint::{L7Config, Waypoint, WaypointConfig};

/// The file errors name for local config handed over as text (not read from a file).
pub const CONFIG_TEXT: &str = "<config>";
/// The file errors name for L7 YAML (HTTPRoute, AuthorizationPolicy, RequestAuthentication)
/// handed over as text, whichever loader reads it: the same broken object is reported at the
/// same place by the route loader, the policy loader and a waypoint.
pub const L7_TEXT: &str = "<l7>";
/// The file errors name for Istio policies (L4) handed over as text.
pub const POLICIES_TEXT: &str = "<policies>";

/// The mesh state of ztunnel-shaped local config (`workloads`, `services`, `policies`,
/// `istioPolicies`); `file` names it in errors.
pub fn local_state(local_yaml: &str, file: &str) -> Result<State, Error> {
    Ok(crate::state::local::parse(local_yaml, file)?.state)
}

/// Routes, policies and authentication from L7 YAML (HTTPRoute, AuthorizationPolicy,
/// RequestAuthentication in any mix), with the warnings of every part.
pub fn l7_config(
    l7_yaml: &str,
    file: &str,
    root_namespace: &str,
) -> Result<(L7Config, Vec<ConfigWarning>), Error> {
    Ok(L7Config::from_yaml(l7_yaml, file, root_namespace)?)
}

/// Starts a node proxy for the mesh in `local_yaml`, issuing workload certificates from `ca`
/// (Istio's default lifetime, rotated at half-life). Call on a tokio runtime.
pub async fn node_proxy(
    config: NodeConfig,
    local_yaml: &str,
    ca: Arc<CertificateAuthority>,
    tls: TlsContext,
) -> Result<NodeProxy, Error> {
    let state = local_state(local_yaml, CONFIG_TEXT)?;
    let source = Arc::new(CaSource::with_default_ttl(ca));
    Ok(NodeProxy::start(config, state, source, tls).await?)
}

/// The identity a waypoint named `name` in `namespace` has when `ca` issues for it:
/// `spiffe://<ca's trust domain>/ns/<namespace>/sa/<name>`, as Istio names waypoint accounts.
pub fn waypoint_identity(
    ca: &CertificateAuthority,
    namespace: &str,
    name: &str,
) -> Result<SpiffeId, Error> {
    Ok(ca.trust_domain().workload_id(namespace, name)?)
}

/// Starts a waypoint for the mesh in `local_yaml` enforcing `l7_yaml`, with a certificate from
/// `ca`; returns it with the L7 config's warnings. Call on a tokio runtime.
pub async fn waypoint(
    config: WaypointConfig,
    local_yaml: &str,
    l7_yaml: &str,
    root_namespace: &str,
    ca: Arc<CertificateAuthority>,
    tls: TlsContext,
) -> Result<(Waypoint, Vec<ConfigWarning>), Error> {
    let state = local_state(local_yaml, CONFIG_TEXT)?;
    let (l7, warnings) = l7_config(l7_yaml, L7_TEXT, root_namespace)?;
    let source = Arc::new(CaSource::with_default_ttl(ca));
    let waypoint = Waypoint::start(config, state, l7, source, tls).await?;
    Ok((waypoint, warnings))
}
