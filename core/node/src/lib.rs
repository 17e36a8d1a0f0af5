//! The node proxy: Istio ztunnel's L4 data path for the workloads of one node.
//!
//! A [`NodeProxy`] serves the workloads whose `node` field names it:
//! - inbound HBONE on `<workload-ip>:15008`, presenting that workload's own certificate,
//!   validating the target (`:authority` IP must be the connected IP; the proxy's ports are
//!   refused), authorizing with L4 policy (401 on deny), connecting to the workload, copying;
//! - outbound from local workloads via SOCKS5, HTTP CONNECT, or transparent capture (15001,
//!   `SO_ORIGINAL_DST`): service VIP → endpoint by capacity, HBONE to `<pod-ip>:15008` with
//!   `:authority <pod-ip>:<target-port>` for mesh workloads, plain TCP otherwise; traffic for
//!   services and workloads that have a waypoint is tunnelled to it instead (authority = the
//!   original VIP or pod address);
//! - inbound plaintext (15006), authorized with no identity;
//! - readiness, Prometheus metrics with Istio's names, and `/config_dump`.
//!
//! State comes in as an [`ambit_state::State`] and is replaced whole with
//! [`NodeProxy::update`]: listeners follow the local workloads and open connections that the
//! new policies deny are closed.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use ambit_identity::{CaSource, CertificateAuthority, SystemClock, TrustDomain};
//! use ambit_node::{NodeConfig, NodeProxy};
//! use ambit_tls::{Provider, TlsContext};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let ca = Arc::new(CertificateAuthority::new(TrustDomain::new("cluster.local")?)?);
//! let credentials = Arc::new(CaSource::new(ca, Duration::from_secs(86400), Arc::new(SystemClock)));
//! let state = ambit_state::local::parse("workloads: []\n", "local.yaml")?.state;
//! let node = NodeProxy::start(NodeConfig::new("node-a"), state, credentials,
//!     TlsContext::new(Provider::default())).await?;
//! println!("SOCKS5 on {:?}", node.bound().socks5);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod conns;
mod inbound;
mod outbound;
mod plaintext;
mod socket;
mod steer;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ambit_identity::CredentialSource;
use ambit_proxy::{Identities, Tasks, admin};
use ambit_state::State;
use ambit_telemetry::{AccessLog, Metrics, ResponseFlag, TcpLabels};
use ambit_tls::TlsContext;
use arc_swap::ArcSwap;
use tokio::sync::{Mutex, Notify};
use tracing::info;

pub use ambit_proxy::ProxyError;
pub use steer::ILLEGAL_PORTS;

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
    identities: Arc<Identities>,
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
        let identities = Identities::new(tls.clone(), credentials);
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
            tasks.push(tokio::spawn(plaintext::serve(node.clone(), l)));
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

impl Node {
    /// Records a connection that failed before carrying data, with its response flag.
    fn count_failure(&self, labels: &mut TcpLabels, flag: ResponseFlag) {
        labels.response_flags = flag;
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
