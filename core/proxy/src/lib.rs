//! ambit's proxy behaviours on tokio: the node proxy (Istio ztunnel's L4 data path) and the
//! waypoint (the L7 proxy of ambient mode).
//!
//! A [`NodeProxy`] serves the workloads of one node (those whose `node` field names it):
//! - inbound HBONE on `<workload-ip>:15008`, presenting that workload's own certificate,
//!   validating the target (`:authority` IP must be the connected IP; the proxy's ports are
//!   refused), authorizing with L4 policy (401 on deny), connecting to the workload, copying;
//! - outbound from local workloads via SOCKS5, HTTP CONNECT, or transparent capture (15001,
//!   `SO_ORIGINAL_DST`): service VIP → endpoint by capacity, HBONE to `<pod-ip>:15008` with
//!   `:authority <pod-ip>:<target-port>` for mesh workloads, plain TCP otherwise;
//! - inbound plaintext (15006), authorized with no identity;
//! - readiness, Prometheus metrics with Istio's names, and `/config_dump`.
//!
//! Traffic for services and workloads that have a waypoint is tunnelled to it instead
//! (authority = the original VIP or pod address). A [`Waypoint`] terminates those tunnels and
//! serves HTTP/1.1 and HTTP/2 from them: JWT authentication, L7 authorization, Gateway API
//! HTTPRoute, then HBONE to an endpoint with its own identity; see [`L7Config`].
//!
//! State comes in as an [`ambit_xds::State`] and is replaced whole with
//! [`NodeProxy::update`]: listeners follow the local workloads and open connections that the
//! new policies deny are closed.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod admin;
mod conns;
mod identities;
mod inbound;
mod outbound;
mod route;
mod waypoint;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ambit_identity::CredentialSource;
use ambit_telemetry::{AccessLog, Metrics, Reporter, TcpLabels};
use ambit_tls::TlsContext;
use ambit_xds::{Service, State, Workload};
use arc_swap::ArcSwap;
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;
use tracing::info;

pub use route::ILLEGAL_PORTS;
pub use waypoint::{L7Config, L7ConfigError, Waypoint, WaypointBound, WaypointConfig};

/// How a node proxy is set up. Every address is configurable; `None` turns a listener off.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeConfig {
    /// The node's name: workloads whose `node` equals it are local.
    pub node: String,
    /// The node's network (empty = default).
    pub network: String,
    /// HBONE port bound on each local workload address.
    pub inbound_port: u16,
    /// SOCKS5 listener for explicit outbound use.
    pub socks5: Option<SocketAddr>,
    /// HTTP CONNECT listener for explicit outbound use.
    pub http_connect: Option<SocketAddr>,
    /// Transparent outbound listener (15001, after an iptables redirect).
    pub outbound_capture: Option<SocketAddr>,
    /// Inbound plaintext listener (15006, after an iptables redirect).
    pub inbound_plaintext: Option<SocketAddr>,
    /// Prometheus metrics (`/metrics`, `/stats/prometheus`).
    pub metrics: Option<SocketAddr>,
    /// Readiness (`/healthz/ready`).
    pub readiness: Option<SocketAddr>,
    /// Admin (`/config_dump`); keep it on localhost.
    pub admin: Option<SocketAddr>,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Access logs as JSON lines instead of text.
    pub json_access_log: bool,
}

impl NodeConfig {
    /// A config for `node` with ztunnel's default ports on 127.0.0.1 and 15001/15006 off.
    pub fn new(node: &str) -> Self {
        let local = |port| Some(SocketAddr::from(([127, 0, 0, 1], port)));
        Self {
            node: node.to_owned(),
            network: String::new(),
            inbound_port: 15008,
            socks5: local(15080),
            http_connect: None,
            outbound_capture: None,
            inbound_plaintext: None,
            metrics: local(15020),
            readiness: local(15021),
            admin: local(15000),
            connect_timeout: Duration::from_secs(10),
            json_access_log: false,
        }
    }
}

/// Why a node proxy could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// A listener could not be bound.
    #[error("cannot listen for {0} on {1}: {2}")]
    Bind(String, SocketAddr, std::io::Error),
    /// Credentials for a workload could not be obtained or loaded.
    #[error("credentials for {0}")]
    Credentials(String),
    /// A setting is unusable (the message names it).
    #[error("configuration: {0}")]
    Config(String),
}

/// The addresses a running node proxy actually bound (ports resolved when 0 was asked for).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Bound {
    /// SOCKS5.
    pub socks5: Option<SocketAddr>,
    /// HTTP CONNECT.
    pub http_connect: Option<SocketAddr>,
    /// Outbound capture.
    pub outbound_capture: Option<SocketAddr>,
    /// Inbound plaintext.
    pub inbound_plaintext: Option<SocketAddr>,
    /// Metrics.
    pub metrics: Option<SocketAddr>,
    /// Readiness.
    pub readiness: Option<SocketAddr>,
    /// Admin.
    pub admin: Option<SocketAddr>,
}

/// A running node proxy. Dropping it stops every listener.
#[derive(Debug)]
pub struct NodeProxy {
    node: Arc<Node>,
    bound: Bound,
    tasks: Tasks,
    server: ambit_hbone::Server<inbound::Inbound>,
    listeners: Arc<Mutex<inbound::Listeners>>,
}

#[derive(Debug)]
pub(crate) struct Node {
    config: NodeConfig,
    state: ArcSwap<State>,
    identities: Arc<identities::Identities>,
    metrics: Metrics,
    connections: conns::Connections,
    client: ambit_hbone::Client,
    selector: inbound::Selector,
    changed: Notify,
}

impl NodeProxy {
    /// Starts serving `state` with credentials from `credentials` (the built-in CA or PEM
    /// files), on the current tokio runtime. Returns once every listener is bound and the
    /// local workloads' certificates are loaded.
    pub async fn start(
        config: NodeConfig,
        state: State,
        credentials: Arc<dyn CredentialSource>,
        tls: TlsContext,
    ) -> Result<Self, ProxyError> {
        let identities = identities::Identities::new(tls.clone(), credentials);
        let selector = inbound::Selector::default();
        let node = Arc::new(Node {
            client: ambit_hbone::Client::new(tls, ambit_hbone::ClientSettings::default()),
            config,
            state: ArcSwap::from_pointee(state),
            identities,
            metrics: Metrics::new(),
            connections: conns::Connections::default(),
            selector: selector.clone(),
            changed: Notify::new(),
        });
        let server = ambit_hbone::Server::new(
            selector,
            inbound::Inbound(node.clone()),
            ambit_hbone::ServerSettings::default(),
        );
        let listeners = Arc::new(Mutex::new(inbound::Listeners::default()));
        inbound::reconcile(&node, &server, &mut *listeners.lock().await).await;

        // Until the proxy is built, a failed bind must not leave what is already bound running.
        let mut tasks = Tasks::default();
        let started = Self::bind_all(&node, &mut tasks).await;
        let bound = match started {
            Ok(b) => b,
            Err(e) => {
                for (_, t) in listeners.lock().await.tasks.drain() {
                    t.abort();
                }
                return Err(e);
            }
        };
        // Follows state changes: listeners and certificates for new local workloads.
        let (n, s, ls) = (node.clone(), server.clone(), listeners.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                n.changed.notified().await;
                inbound::reconcile(&n, &s, &mut *ls.lock().await).await;
            }
        }));
        info!(node = %node.config.node, ?bound, "node proxy ready");
        Ok(Self {
            node,
            bound,
            tasks,
            server,
            listeners,
        })
    }

    /// Binds and serves the outbound, metrics, readiness and admin listeners the config asks for.
    async fn bind_all(node: &Arc<Node>, tasks: &mut Tasks) -> Result<Bound, ProxyError> {
        let mut bound = Bound::default();
        let c = node.config.clone();
        if let Some(a) = c.socks5 {
            let l = admin::bind("SOCKS5", a).await?;
            bound.socks5 = l.local_addr().ok();
            tasks.push(tokio::spawn(outbound::serve_socks5(node.clone(), l)));
        }
        if let Some(a) = c.http_connect {
            let l = admin::bind("HTTP CONNECT", a).await?;
            bound.http_connect = l.local_addr().ok();
            tasks.push(tokio::spawn(outbound::serve_http_connect(node.clone(), l)));
        }
        if let Some(a) = c.outbound_capture {
            let l = admin::bind("outbound capture", a).await?;
            bound.outbound_capture = l.local_addr().ok();
            tasks.push(tokio::spawn(outbound::serve_transparent(node.clone(), l)));
        }
        if let Some(a) = c.inbound_plaintext {
            let l = admin::bind("inbound plaintext", a).await?;
            bound.inbound_plaintext = l.local_addr().ok();
            tasks.push(tokio::spawn(outbound::serve_inbound_plaintext(
                node.clone(),
                l,
            )));
        }
        if let Some(a) = c.metrics {
            let n = node.clone();
            let (addr, task) = admin::spawn_metrics(a, move || n.metrics.render()).await?;
            bound.metrics = addr;
            tasks.push(task);
        }
        if let Some(a) = c.readiness {
            let (addr, task) = admin::spawn_readiness(a).await?;
            bound.readiness = addr;
            tasks.push(task);
        }
        if let Some(a) = c.admin {
            let l = admin::bind("admin", a).await?;
            bound.admin = l.local_addr().ok();
            let n = node.clone();
            let route = Arc::new(move |path: String| {
                let n = n.clone();
                async move {
                    match path.as_str() {
                        "/config_dump" => (200, "application/json", config_dump(&n)),
                        _ => (404, "text/plain", "not found\n".to_owned()),
                    }
                }
            });
            tasks.push(tokio::spawn(admin::serve(l, route)));
        }
        Ok(bound)
    }

    /// The addresses bound.
    pub fn bound(&self) -> &Bound {
        &self.bound
    }

    /// Replaces the state. Listeners follow the local workloads (asynchronously; see
    /// [`NodeProxy::sync`]), and open connections that the new policies deny are closed now.
    /// Returns how many were closed.
    pub fn update(&self, state: State) -> usize {
        let state = Arc::new(state);
        self.node.state.store(state.clone());
        self.node.changed.notify_one();
        self.node.connections.recheck(&state)
    }

    /// Replaces the state and waits until listeners and certificates follow it.
    pub async fn sync(&self, state: State) -> usize {
        let closed = self.update(state);
        inbound::reconcile(&self.node, &self.server, &mut *self.listeners.lock().await).await;
        closed
    }

    /// The current state.
    pub fn state(&self) -> Arc<State> {
        self.node.state.load_full()
    }

    /// The metrics in Prometheus text format.
    pub fn metrics(&self) -> String {
        self.node.metrics.render()
    }

    /// Inbound connections currently open (and subject to policy re-checks).
    pub fn open_connections(&self) -> usize {
        self.node.connections.len()
    }

    /// Stops accepting, lets inbound tunnels finish for up to `deadline`, then stops.
    pub async fn shutdown(self, deadline: Duration) {
        self.tasks.abort_all();
        self.server.drain(deadline).await;
        for (_, t) in self.listeners.lock().await.tasks.drain() {
            t.abort();
        }
    }
}

impl Drop for NodeProxy {
    fn drop(&mut self) {
        if let Ok(mut l) = self.listeners.try_lock() {
            for (_, t) in l.tasks.drain() {
                t.abort();
            }
        }
    }
}

/// Spawned tasks that are aborted when dropped, so that a proxy which fails to start halfway,
/// or is dropped without `shutdown`, leaves nothing running.
#[derive(Debug, Default)]
pub(crate) struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    pub(crate) fn push(&mut self, t: JoinHandle<()>) {
        self.0.push(t);
    }

    pub(crate) fn abort_all(&self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.abort_all();
    }
}

impl Node {
    /// Records a connection that failed before carrying data, with its response flag.
    fn count_failure(&self, labels: &mut TcpLabels, flag: &str) {
        labels.response_flags = flag.to_owned();
        let c = self.metrics.tcp(labels);
        c.opened();
        c.closed(0, 0, true);
    }

    fn access_log(&self, log: &AccessLog) {
        let line = if self.config.json_access_log {
            log.to_json()
        } else {
            log.to_text()
        };
        info!(target: "access", "{line}");
    }
}

/// Istio labels from what the state knows about both ends.
pub(crate) fn labels_for(
    reporter: Reporter,
    src: Option<&Workload>,
    dst: Option<&Workload>,
    svc: Option<&Service>,
) -> TcpLabels {
    let mut l = TcpLabels::default();
    l.reporter = Some(reporter);
    if let Some(s) = src {
        l.source_workload = s.workload_name_or_name();
        l.source_canonical_service = s.canonical_name.clone();
        l.source_canonical_revision = s.canonical_revision.clone();
        l.source_workload_namespace = s.namespace.clone();
        l.source_cluster = s.cluster_id.clone();
    }
    if let Some(d) = dst {
        l.destination_workload = d.workload_name_or_name();
        l.destination_canonical_service = d.canonical_name.clone();
        l.destination_canonical_revision = d.canonical_revision.clone();
        l.destination_workload_namespace = d.namespace.clone();
        l.destination_cluster = d.cluster_id.clone();
        l.destination_principal = d.identity().map(|i| i.to_string()).unwrap_or_default();
    }
    if let Some(s) = svc {
        l.destination_service = s.hostname.clone();
        l.destination_service_name = s.name.clone();
        l.destination_service_namespace = s.namespace.clone();
    }
    l
}

trait WorkloadName {
    fn workload_name_or_name(&self) -> String;
}

impl WorkloadName for Workload {
    fn workload_name_or_name(&self) -> String {
        if self.workload_name.is_empty() {
            self.name.clone()
        } else {
            self.workload_name.clone()
        }
    }
}

fn config_dump(node: &Node) -> String {
    let state = node.state.load();
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = format!("{{\"node\":\"{}\",\"workloads\":[", esc(&node.config.node));
    let mut ws: Vec<_> = state.workloads().collect();
    ws.sort_by(|a, b| a.uid.cmp(&b.uid));
    for (i, w) in ws.iter().enumerate() {
        let addrs: Vec<String> = w.addresses.iter().map(|a| format!("\"{a}\"")).collect();
        let _ = write!(
            out,
            "{}{{\"uid\":\"{}\",\"name\":\"{}\",\"namespace\":\"{}\",\"node\":\"{}\",\"addresses\":[{}],\"protocol\":\"{:?}\",\"identity\":\"{}\"}}",
            if i > 0 { "," } else { "" },
            esc(&w.uid),
            esc(&w.name),
            esc(&w.namespace),
            esc(&w.node),
            addrs.join(","),
            w.protocol,
            w.identity().map(|i| i.to_string()).unwrap_or_default()
        );
    }
    out.push_str("],\"services\":[");
    let mut ss: Vec<_> = state.services().collect();
    ss.sort_by_key(|s| s.key());
    for (i, s) in ss.iter().enumerate() {
        let _ = write!(out, "{}\"{}\"", if i > 0 { "," } else { "" }, esc(&s.key()));
    }
    out.push_str("],\"policies\":[");
    let mut ps: Vec<String> = state.policies().policies().map(|p| p.key()).collect();
    ps.sort();
    for (i, p) in ps.iter().enumerate() {
        let _ = write!(out, "{}\"{}\"", if i > 0 { "," } else { "" }, esc(p));
    }
    let _ = writeln!(out, "],\"open_connections\":{}}}", node.connections.len());
    out
}
