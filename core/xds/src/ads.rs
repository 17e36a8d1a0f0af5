//! The delta-ADS client: one `DeltaAggregatedResources` stream carrying the workload API's two
//! types, wildcard-subscribed, every response ACKed or NACKed by nonce, reconnected with
//! exponential backoff and jitter, and the last good state kept while disconnected.
//!
//! NACK semantics (ztunnel's): each resource of a response is validated on its own. The valid
//! ones are applied even when others are refused; a refused resource keeps its previous version
//! (if any) in force and is not recorded as known, so the server sends it again after a
//! reconnect. The NACK's `error_detail` lists every refusal as `name: field: reason`, joined by
//! `; `. Removals are applied before upserts.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ambit_state::State;
use prost::Message;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::control::{ControlError, ControlPlane, error_chain};
use crate::convert::{self, Converted};
use crate::pb::envoy::config::core::v3 as core;
use crate::pb::envoy::service::discovery::v3::{
    self as discovery, DeltaDiscoveryRequest, DeltaDiscoveryResponse,
    aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
};
use crate::pb::google::rpc::Status;
use crate::pb::istio::security as sec;
use crate::pb::istio::workload as wl;

/// The `Any` type URL of workload-API addresses (workloads and services).
pub const ADDRESS_TYPE: &str = "type.googleapis.com/istio.workload.Address";
/// The `Any` type URL of L4 authorization policies.
pub const AUTHORIZATION_TYPE: &str = "type.googleapis.com/istio.security.Authorization";
/// The types subscribed, in the order their first requests are sent (ztunnel's).
pub const TYPES: [&str; 2] = [ADDRESS_TYPE, AUTHORIZATION_TYPE];

/// Largest response accepted (a full push of a large mesh; ztunnel's limit).
const MAX_MESSAGE: usize = 200 << 20;
/// First and last reconnect delays.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(15);

/// Who this proxy is to the control plane: Envoy's `Node` with ztunnel's id and metadata.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// `ztunnel~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`.
    pub id: String,
    /// Metadata: `NAME`, `NAMESPACE`, `INSTANCE_IPS`, `NODE_NAME`, `CLUSTER_ID`, and every
    /// `ISTIO_META_*` without its prefix, as strings.
    pub metadata: BTreeMap<String, String>,
}

impl NodeInfo {
    /// The node as ztunnel names itself. `metadata` is the proxy metadata (`ISTIO_META_X` as
    /// `X`); the pod's identity fields are added on top, ztunnel's order.
    pub fn ztunnel(
        instance_ip: &str,
        pod_name: &str,
        pod_namespace: &str,
        node_name: &str,
        proxy_metadata: &BTreeMap<String, String>,
    ) -> Self {
        let mut metadata = BTreeMap::new();
        metadata.insert("NAME".to_owned(), pod_name.to_owned());
        metadata.insert("NAMESPACE".to_owned(), pod_namespace.to_owned());
        metadata.insert("INSTANCE_IPS".to_owned(), instance_ip.to_owned());
        metadata.insert("NODE_NAME".to_owned(), node_name.to_owned());
        for (k, v) in proxy_metadata {
            metadata.insert(k.clone(), v.clone());
        }
        Self {
            id: format!(
                "ztunnel~{instance_ip}~{pod_name}.{pod_namespace}~{pod_namespace}.svc.cluster.local"
            ),
            metadata,
        }
    }

    fn to_proto(&self) -> core::Node {
        let fields = self
            .metadata
            .iter()
            .map(|(k, v)| {
                let value = prost_types::Value {
                    kind: Some(prost_types::value::Kind::StringValue(v.clone())),
                };
                (k.clone(), value)
            })
            .collect();
        core::Node {
            id: self.id.clone(),
            metadata: Some(prost_types::Struct { fields }),
            ..core::Node::default()
        }
    }
}

/// How the client reaches its control plane and names itself.
#[derive(Debug, Clone)]
pub struct XdsConfig {
    /// istiod's xDS endpoint.
    pub control: ControlPlane,
    /// The node.
    pub node: NodeInfo,
}

/// What the client knows of its stream, for `/config_dump` and logs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct XdsStatus {
    /// The control plane's address.
    pub address: String,
    /// Whether a stream is open now.
    pub connected: bool,
    /// Whether every type has had a response accepted whole (the first sync).
    pub synced: bool,
    /// Streams opened so far.
    pub streams: u64,
    /// Why the last stream ended or could not be opened.
    pub last_error: Option<String>,
    /// Per type URL.
    pub types: BTreeMap<String, TypeStatus>,
}

/// One type's bookkeeping.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TypeStatus {
    /// Resources held (name → version).
    pub resources: usize,
    /// Responses ACKed.
    pub acks: u64,
    /// Responses NACKed.
    pub nacks: u64,
    /// The last NACK's error detail.
    pub last_nack: Option<String>,
    /// The last response's nonce.
    pub last_nonce: String,
}

/// A shared view of the client's status.
#[derive(Debug, Clone, Default)]
pub struct StatusHandle(Arc<Mutex<XdsStatus>>);

impl StatusHandle {
    /// A copy of the status now.
    pub fn get(&self) -> XdsStatus {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, XdsStatus> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Called with the new state after every response that changed it.
pub type Publish = Box<dyn Fn(State) + Send + Sync>;

/// The delta-ADS client. [`AdsClient::run`] runs it until dropped.
pub struct AdsClient {
    config: XdsConfig,
    resources: Resources,
    publish: Publish,
    status: StatusHandle,
    synced: watch::Sender<bool>,
    pending: Vec<&'static str>,
}

impl std::fmt::Debug for AdsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdsClient")
            .field("address", &self.config.control.address)
            .field("node", &self.config.node.id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AddressKey {
    Workload(String),
    Service(String),
}

/// How one stream ended.
#[derive(Debug)]
enum Ended {
    /// It could not be opened, or broke; back off.
    Failed(String),
    /// The server ended it cleanly (a restart, a rebalance); reconnect at once.
    Closed,
}

impl From<ControlError> for Ended {
    fn from(e: ControlError) -> Self {
        Self::Failed(e.to_string())
    }
}

impl AdsClient {
    /// A client that starts from `initial` (the local config's state, or empty) and calls
    /// `publish` with each new state.
    pub fn new(config: XdsConfig, initial: State, publish: Publish) -> Self {
        let status = StatusHandle::default();
        status.lock().address = config.control.address.to_string();
        let (synced, _) = watch::channel(false);
        Self {
            config,
            resources: Resources::new(initial),
            publish,
            status,
            synced,
            pending: TYPES.to_vec(),
        }
    }

    /// The client's status, readable while it runs.
    pub fn status(&self) -> StatusHandle {
        self.status.clone()
    }

    /// Becomes `true` once every type has had a response accepted whole (readiness).
    pub fn synced(&self) -> watch::Receiver<bool> {
        self.synced.subscribe()
    }

    /// Connects, and reconnects for ever; the last good state stays in force meanwhile.
    pub async fn run(mut self) {
        let mut backoff = BACKOFF_START;
        loop {
            let served = self.status.lock().streams;
            let ended = match self.stream().await {
                Err(e) => e,
                Ok(never) => match never {},
            };
            let progressed = self.status.lock().streams > served && self.status.lock().connected;
            {
                let mut s = self.status.lock();
                s.connected = false;
                s.last_error = match &ended {
                    Ended::Failed(e) => Some(e.clone()),
                    Ended::Closed => Some("stream closed by the server".into()),
                };
            }
            let delay = match ended {
                Ended::Closed => Duration::ZERO,
                Ended::Failed(e) => {
                    if progressed {
                        backoff = BACKOFF_START;
                    }
                    let d = jitter(backoff);
                    warn!(address = %self.config.control.address, error = %e, retry_in = ?d, "xDS stream ended");
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    d
                }
            };
            tokio::time::sleep(delay).await;
        }
    }

    /// One stream, until it ends (it never ends well: the stream is meant to stay open).
    async fn stream(&mut self) -> Result<std::convert::Infallible, Ended> {
        let channel = self.config.control.connect().await?;
        let metadata = self.config.control.metadata()?;
        let (tx, rx) = mpsc::channel(100);
        let node = self.config.node.to_proto();
        for type_url in TYPES {
            let first = DeltaDiscoveryRequest {
                node: Some(node.clone()),
                type_url: type_url.to_owned(),
                initial_resource_versions: self.resources.versions(type_url),
                ..DeltaDiscoveryRequest::default()
            };
            let _ = tx.try_send(first);
        }
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        *request.metadata_mut() = metadata;
        let mut client =
            AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
        let mut responses = client
            .delta_aggregated_resources(request)
            .await
            .map_err(|s| Ended::Failed(status_text(&s)))?
            .into_inner();
        {
            let mut s = self.status.lock();
            s.connected = true;
            s.streams += 1;
        }
        info!(address = %self.config.control.address, "xDS stream open");
        loop {
            match responses.message().await {
                Ok(Some(response)) => {
                    let reply = self.handle(response);
                    if tx.send(reply).await.is_err() {
                        return Err(Ended::Failed("request stream closed".into()));
                    }
                }
                Ok(None) => return Err(Ended::Closed),
                Err(s) => return Err(Ended::Failed(status_text(&s))),
            }
        }
    }

    /// Applies one response and makes its ACK or NACK.
    fn handle(&mut self, response: DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
        let type_url = match TYPES.iter().find(|t| **t == response.type_url) {
            Some(t) => *t,
            None => {
                warn!(type_url = %response.type_url, "xDS response of a type not subscribed; ACKed and ignored");
                return DeltaDiscoveryRequest {
                    type_url: response.type_url,
                    response_nonce: response.nonce,
                    ..DeltaDiscoveryRequest::default()
                };
            }
        };
        let applied = self.resources.apply(&response);
        if applied.changed {
            (self.publish)(self.resources.state().clone());
        }
        let refusals = applied.refusals;
        let known = self.resources.versions(type_url).len();
        let mut status = self.status.lock();
        let ts = status.types.entry(type_url.to_owned()).or_default();
        ts.resources = known;
        ts.last_nonce = response.nonce.clone();
        let error_detail = if refusals.is_empty() {
            ts.acks += 1;
            self.pending.retain(|t| *t != type_url);
            None
        } else {
            ts.nacks += 1;
            let message = refusals.join("; ");
            warn!(type_url, error = %message, "xDS resources refused (NACK)");
            ts.last_nack = Some(message.clone());
            Some(Status {
                code: 3, // INVALID_ARGUMENT
                message,
                details: Vec::new(),
            })
        };
        if self.pending.is_empty() && !status.synced {
            status.synced = true;
            info!("xDS: first sync complete");
            self.synced.send_replace(true);
        }
        debug!(type_url, nonce = %response.nonce, nack = error_detail.is_some(), "xDS reply");
        DeltaDiscoveryRequest {
            type_url: type_url.to_owned(),
            response_nonce: response.nonce,
            error_detail,
            ..DeltaDiscoveryRequest::default()
        }
    }
}

/// What a response did: whether the state changed, and the resources refused
/// (`name: field: reason`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Applied {
    /// Whether anything was added, replaced or removed.
    pub changed: bool,
    /// The refusals, one per resource, for the NACK.
    pub refusals: Vec<String>,
}

/// The resources a client holds: the state they make, the versions it will tell the server
/// after a reconnect, and what each Address resource name added. [`AdsClient`] applies every
/// response through it; it is public so that its cost can be measured without a network.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    state: State,
    /// name → version of what was accepted, per type (`initial_resource_versions`).
    known: HashMap<&'static str, BTreeMap<String, String>>,
    /// Address resource name → what it added (a workload uid or a service key).
    addresses: HashMap<String, AddressKey>,
}

impl Resources {
    /// Resources on top of `initial` (a local config's state, or empty).
    pub fn new(initial: State) -> Self {
        Self {
            state: initial,
            ..Self::default()
        }
    }

    /// The state now.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The versions held for `type_url`, as `initial_resource_versions` sends them.
    pub fn versions(&self, type_url: &str) -> HashMap<String, String> {
        self.known
            .get(type_url)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// Applies one response of a subscribed type: removals first, then each resource on
    /// its own (a refused one keeps its previous version). Another type changes nothing.
    pub fn apply(&mut self, response: &DeltaDiscoveryResponse) -> Applied {
        let mut refusals = Vec::new();
        let changed = match response.type_url.as_str() {
            ADDRESS_TYPE => self.apply_addresses(response, &mut refusals),
            AUTHORIZATION_TYPE => self.apply_authorizations(response, &mut refusals),
            _ => false,
        };
        Applied { changed, refusals }
    }

    fn apply_addresses(
        &mut self,
        response: &DeltaDiscoveryResponse,
        refusals: &mut Vec<String>,
    ) -> bool {
        let mut changed = false;
        for name in &response.removed_resources {
            self.known.entry(ADDRESS_TYPE).or_default().remove(name);
            changed |= self.remove_address(name);
        }
        for r in &response.resources {
            match decode::<wl::Address>(r, ADDRESS_TYPE)
                .and_then(|a| convert::address(a).map_err(|e| e.to_string()))
            {
                Ok(converted) => {
                    let key = match converted {
                        Converted::Workload(w) => {
                            let uid = w.uid.clone();
                            self.state.upsert_workload(*w);
                            AddressKey::Workload(uid)
                        }
                        Converted::Service(s) => {
                            let key = s.key();
                            self.state.upsert_service(*s);
                            AddressKey::Service(key)
                        }
                    };
                    // Only names that are not the key itself are remembered (istiod names
                    // workloads by uid and services by namespace/hostname).
                    let named_as_key = match &key {
                        AddressKey::Workload(k) | AddressKey::Service(k) => *k == r.name,
                    };
                    let old = if named_as_key {
                        self.addresses.remove(&r.name)
                    } else {
                        self.addresses.insert(r.name.clone(), key.clone())
                    };
                    if let Some(old) = old
                        && old != key
                    {
                        self.remove_key(&old);
                    }
                    self.known
                        .entry(ADDRESS_TYPE)
                        .or_default()
                        .insert(r.name.clone(), r.version.clone());
                    changed = true;
                }
                Err(e) => refusals.push(format!("{}: {e}", r.name)),
            }
        }
        changed
    }

    /// Removes what the Address resource `name` added: by the name it was pushed under, else
    /// as ztunnel reads a name (a workload uid, else `namespace/hostname`).
    fn remove_address(&mut self, name: &str) -> bool {
        if let Some(key) = self.addresses.remove(name) {
            return self.remove_key(&key);
        }
        if self.state.remove_workload(name) {
            return true;
        }
        if name.contains('/') && self.state.remove_service(name) {
            return true;
        }
        debug!(name, "xDS removal of an unknown address");
        false
    }

    fn remove_key(&mut self, key: &AddressKey) -> bool {
        match key {
            AddressKey::Workload(uid) => self.state.remove_workload(uid),
            AddressKey::Service(k) => self.state.remove_service(k),
        }
    }

    fn apply_authorizations(
        &mut self,
        response: &DeltaDiscoveryResponse,
        refusals: &mut Vec<String>,
    ) -> bool {
        let mut changed = false;
        for name in &response.removed_resources {
            self.known
                .entry(AUTHORIZATION_TYPE)
                .or_default()
                .remove(name);
            changed |= self.state.remove_policy(name);
        }
        for r in &response.resources {
            match decode::<sec::Authorization>(r, AUTHORIZATION_TYPE)
                .and_then(|a| convert::authorization(a).map_err(|e| e.to_string()))
            {
                Ok(policy) => {
                    // Stored under the resource name, which workloads reference.
                    self.state.upsert_policy(&r.name, policy);
                    self.known
                        .entry(AUTHORIZATION_TYPE)
                        .or_default()
                        .insert(r.name.clone(), r.version.clone());
                    changed = true;
                }
                Err(e) => refusals.push(format!("{}: {e}", r.name)),
            }
        }
        changed
    }
}

/// The message inside a `Resource`, checked to be of the response's type.
fn decode<M: Message + Default>(r: &discovery::Resource, type_url: &str) -> Result<M, String> {
    let Some(any) = &r.resource else {
        return Err("xDS payload without resource".into());
    };
    if !any.type_url.is_empty() && any.type_url != type_url {
        return Err(format!(
            "resource of type {} in a {type_url} response",
            any.type_url
        ));
    }
    M::decode(any.value.as_slice()).map_err(|e| format!("decode: {e}"))
}

fn status_text(s: &tonic::Status) -> String {
    let mut t = format!("{:?}: {}", s.code(), s.message());
    if let Some(src) = std::error::Error::source(s) {
        t.push_str(": ");
        t.push_str(&error_chain(src));
    }
    t
}

/// `d` ± 20 %, so that many proxies restarted together do not reconnect in step.
pub(crate) fn jitter(d: Duration) -> Duration {
    use std::hash::BuildHasher;
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|t| t.as_nanos())
        .unwrap_or(0);
    let r = std::collections::hash_map::RandomState::new().hash_one(nanos) % 401;
    // r in 0..=400 → factor 0.8..=1.2
    d.mul_f64(0.8 + r as f64 / 1000.0)
}
