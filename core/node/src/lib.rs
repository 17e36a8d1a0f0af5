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
//! - UDP as CONNECT-UDP flows (an ambit extension), in by SOCKS5 UDP ASSOCIATE or a forward
//!   listener;
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
pub mod dns;
mod dump;
mod inbound;
pub mod inpod;
mod outbound;
mod plaintext;
mod record;
mod report;
mod socket;
mod steer;
pub mod udp;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ambit_identity::CredentialSource;
use ambit_proxy::{Identities, Readiness, Tasks, admin};
use ambit_state::State;
use ambit_telemetry::Metrics;
use ambit_tls::TlsContext;
use arc_swap::ArcSwap;
use tokio::sync::{Mutex, Notify};
use tracing::info;

/// First and longest wait before trying again to get a local workload's certificate.
const CERT_RETRY_START: Duration = Duration::from_millis(500);
const CERT_RETRY_MAX: Duration = Duration::from_secs(30);

pub use ambit_proxy::ProxyError;
pub use dump::DumpSection;
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
    /// DNS proxy listener (UDP and TCP) in the proxy's own namespace, for its workloads.
    pub dns: Option<SocketAddr>,
    /// In-pod: a DNS proxy in each pod on `127.0.0.1:15053` (and `[::1]:15053` where the pod
    /// has IPv6), where istio-cni's rules send the pod's DNS.
    pub dns_capture: bool,
    /// Where the DNS proxy sends what the mesh does not answer, and the cluster domain.
    pub resolver: dns::DnsConfig,
    /// In-pod mode: pods are served inside their own network namespaces, as the node agent
    /// hands them over ([`NodeProxy::serve_zds`]); no HBONE listener is bound on workload
    /// addresses in the proxy's own namespace.
    pub inpod: bool,
    /// Readiness gates held from before the first listener binds until the embedder calls
    /// `readiness().unblock(name)`, as `(name, detail for the 503 body)`: so a probe never
    /// sees 200 before, say, the first control-plane sync is applied.
    pub readiness_gates: Vec<(String, String)>,
    /// Where spans (one per HBONE tunnel, in the trace its `traceparent` names) and access
    /// records go besides the log, e.g. `ambit_proxy::otlp::OtlpExporter`.
    pub exporter: Option<Arc<dyn ambit_telemetry::Exporter>>,
    /// HBONE over HTTP/3 (ambit extension; the `h3` feature): serve it on UDP `inbound_port`
    /// beside TCP on each local workload address. On by default when built in.
    pub serve_h3: bool,
    /// Dial every HBONE peer over HTTP/3, falling back to HTTP/2 per peer that does not answer
    /// QUIC. Off: only workloads marked `hbone_http3` are dialled over HTTP/3.
    pub dial_h3: bool,
    /// Explicit UDP ways into the mesh: each listener carries its clients' datagrams as
    /// CONNECT-UDP flows (an ambit extension).
    pub udp_forwards: Vec<udp::UdpForward>,
    /// A UDP flow with no datagram either way this long is closed.
    pub udp_idle_timeout: Duration,
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
            dns: None,
            dns_capture: false,
            resolver: dns::DnsConfig::default(),
            inpod: false,
            readiness_gates: Vec::new(),
            exporter: None,
            serve_h3: cfg!(feature = "h3"),
            dial_h3: false,
            udp_forwards: Vec::new(),
            udp_idle_timeout: udp::DEFAULT_UDP_IDLE_TIMEOUT,
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
    /// DNS proxy.
    pub dns: Option<SocketAddr>,
    /// UDP forward listeners, in the order configured.
    pub udp_forwards: Vec<SocketAddr>,
}

/// `socks5=127.0.0.1:15080,metrics=...`: the listeners bound, for logs.
impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        ambit_proxy::write_listeners(
            f,
            &[
                ("socks5", self.socks5),
                ("http_connect", self.http_connect),
                ("outbound", self.outbound_capture),
                ("inbound_plaintext", self.inbound_plaintext),
                ("metrics", self.metrics),
                ("readiness", self.readiness),
                ("admin", self.admin),
                ("dns", self.dns),
            ],
        )
    }
}

/// A running node proxy. Dropping it stops every listener.
#[derive(Debug)]
pub struct NodeProxy {
    node: Arc<Node>,
    bound: Bound,
    tasks: Tasks,
    /// Metrics, readiness and admin: kept serving while the proxy drains.
    endpoints: Tasks,
    server: ambit_hbone::Server<inbound::Inbound>,
    listeners: Arc<Mutex<inbound::Listeners>>,
    inpod: Option<Arc<inpod::InPod>>,
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
    readiness: Arc<Readiness>,
    dump_extra: dump::DumpSections,
    /// Bumped on every state update, for whoever waits for the state to change.
    generation: tokio::sync::watch::Sender<u64>,
    /// The generation that listeners and certificates last followed (see [`Updater::settled`]).
    applied: tokio::sync::watch::Sender<u64>,
    /// The sockets of each in-pod pod, by pod address.
    pod_sockets: std::sync::Mutex<HashMap<IpAddr, Arc<inpod::netns::PodSockets>>>,
    /// `ambit_hbone_tunnels_total{direction,transport}`.
    tunnels: ambit_telemetry::LabeledFamily,
    /// `ambit_udp_flows_total{direction,result}`.
    udp_flows: ambit_telemetry::LabeledFamily,
    /// `ambit_udp_bytes_total{direction,toward}`.
    udp_bytes: ambit_telemetry::LabeledFamily,
}

impl Node {
    /// Records that listeners and certificates follow the state of `generation` (or later).
    fn mark_applied(&self, generation: u64) {
        self.applied.send_if_modified(|g| {
            let newer = generation > *g;
            *g = (*g).max(generation);
            newer
        });
    }
}

/// Replaces a node proxy's state from elsewhere (see [`NodeProxy::updater`]).
#[derive(Debug, Clone)]
pub struct Updater(Arc<Node>);

impl Updater {
    /// As [`NodeProxy::update`]: the new state is in force for new connections at once, open
    /// connections that its policies deny are closed (how many is returned), and listeners
    /// and certificates follow the local workloads.
    pub fn update(&self, state: State) -> usize {
        let state = Arc::new(state);
        self.0.state.store(state.clone());
        // The generation before the wake-up: the listener loop, once woken, reads the
        // generation it is about to follow and must not see an older one.
        self.0.generation.send_modify(|g| *g += 1);
        self.0.changed.notify_one();
        self.0.connections.recheck(&state)
    }

    /// Waits until listeners and certificates follow every state given so far (a local
    /// workload's HBONE port is bound, or its missing certificate holds readiness), so that
    /// a daemon can say ready once the first control-plane sync is really in force.
    pub async fn settled(&self) {
        let target = *self.0.generation.borrow();
        let mut applied = self.0.applied.subscribe();
        // The sender lives in the node this handle holds, so the wait ends only by arriving.
        let _ = applied.wait_for(|g| *g >= target).await;
    }
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
        let readiness = Readiness::with_gates(&config.readiness_gates);
        if config.inpod {
            readiness.block(inpod::READY_KEY, inpod::READY_WAITING);
        }
        let metrics = Metrics::new();
        for f in config.exporter.iter().flat_map(|x| x.families()) {
            metrics.register(&f);
        }
        let tunnels = metrics.counter(
            "ambit_hbone_tunnels_total",
            "HBONE tunnels opened, by direction and HTTP version (h2; h3 is ambit's extension).",
            &["direction", "transport"],
        );
        let udp_flows = metrics.counter(
            "ambit_udp_flows_total",
            "UDP flows through the mesh (CONNECT-UDP) that ended, by direction and result.",
            &["direction", "result"],
        );
        let udp_bytes = metrics.counter(
            "ambit_udp_bytes_total",
            "UDP payload bytes carried by flows that ended, by direction and toward which end \
             (destination: what the source sent; source: the answers).",
            &["direction", "toward"],
        );
        let node = Arc::new(Node {
            tunnels,
            udp_flows,
            udp_bytes,
            client: ambit_hbone::Client::new(tls, ambit_hbone::ClientSettings::default()),
            config,
            state: ArcSwap::from_pointee(state),
            identities,
            metrics,
            connections: conns::Connections::default(),
            selector: selector.clone(),
            changed: Notify::new(),
            readiness: Arc::new(readiness),
            dump_extra: dump::DumpSections::default(),
            generation: tokio::sync::watch::channel(0).0,
            applied: tokio::sync::watch::channel(0).0,
            pod_sockets: std::sync::Mutex::default(),
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
        let mut endpoints = Tasks::default();
        let started = Self::bind_all(&node, &mut tasks, &mut endpoints).await;
        let bound = match started {
            Ok(b) => b,
            Err(e) => {
                for (_, t) in listeners.lock().await.tasks.drain() {
                    t.abort();
                }
                return Err(e);
            }
        };
        // Follows state changes: listeners and certificates for new local workloads. While a
        // local workload has no certificate (the CA is down), it tries again with backoff.
        let (n, s, ls) = (node.clone(), server.clone(), listeners.clone());
        tasks.push(tokio::spawn(async move {
            let mut retry = CERT_RETRY_START;
            let mut missing = n
                .readiness
                .pending()
                .iter()
                .any(|(w, _)| w == "certificates");
            loop {
                if missing {
                    let _ = tokio::time::timeout(retry, n.changed.notified()).await;
                    retry = (retry * 2).min(CERT_RETRY_MAX);
                } else {
                    retry = CERT_RETRY_START;
                    n.changed.notified().await;
                }
                let generation = *n.generation.borrow();
                missing = inbound::reconcile(&n, &s, &mut *ls.lock().await).await > 0;
                n.mark_applied(generation);
            }
        }));
        info!(node = %node.config.node, listening = %bound, "node proxy ready");
        Ok(Self {
            node,
            bound,
            tasks,
            endpoints,
            server,
            listeners,
            inpod: None,
        })
    }

    /// Serves pods in-pod as the node agent (istio-cni) at `path` hands them over by ZDS,
    /// reconnecting whenever it goes away. Readiness holds `inpod` until the agent's snapshot is
    /// in and every pod in it is served. Needs `NodeConfig::inpod`, and root (or
    /// CAP_SYS_ADMIN + CAP_NET_ADMIN) to enter pods' namespaces and mark sockets.
    pub fn serve_zds(&mut self, path: std::path::PathBuf) -> Result<(), ProxyError> {
        if !self.node.config.inpod {
            return Err(ProxyError::Config(
                "serving pods from ZDS needs the node proxy in in-pod mode (NodeConfig::inpod)"
                    .into(),
            ));
        }
        let inpod = inpod::InPod::new(self.node.clone(), self.server.clone());
        // Weak: the node holds its dump sections, and the pods hold the node.
        let dump = Arc::downgrade(&inpod);
        self.add_dump_section(
            "workloadState",
            Arc::new(move || dump.upgrade().map(|i| i.dump()).unwrap_or_default()),
        );
        self.tasks.push(tokio::spawn(inpod.clone().run(path)));
        self.inpod = Some(inpod);
        Ok(())
    }

    /// Binds and serves the outbound, metrics, readiness and admin listeners the config asks for.
    async fn bind_all(
        node: &Arc<Node>,
        tasks: &mut Tasks,
        endpoints: &mut Tasks,
    ) -> Result<Bound, ProxyError> {
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
            tasks.push(tokio::spawn(outbound::serve_transparent(
                node.clone(),
                l,
                socket::Scope::default(),
            )));
        }
        if let Some(a) = c.inbound_plaintext {
            let l = admin::bind("inbound plaintext", a).await?;
            bound.inbound_plaintext = l.local_addr().ok();
            tasks.push(tokio::spawn(plaintext::serve(
                node.clone(),
                l,
                socket::Scope::default(),
            )));
        }
        if let Some(a) = c.dns {
            let udp = tokio::net::UdpSocket::bind(a)
                .await
                .map_err(|e| ProxyError::Bind("DNS (UDP)".into(), a, e))?;
            bound.dns = udp.local_addr().ok();
            // TCP on the port UDP got, so that `:0` gives one port for both.
            let tcp_addr = bound.dns.unwrap_or(a);
            let l = admin::bind("DNS (TCP)", tcp_addr).await?;
            let server = dns::DnsServer::new(node.clone(), None);
            tasks.push(tokio::spawn(server.clone().serve_udp(udp)));
            tasks.push(tokio::spawn(server.serve_tcp(l, socket::Scope::default())));
        }
        for fwd in &c.udp_forwards {
            let socket = tokio::net::UdpSocket::bind(fwd.listen)
                .await
                .map_err(|e| ProxyError::Bind("UDP forward".into(), fwd.listen, e))?;
            bound
                .udp_forwards
                .push(socket.local_addr().unwrap_or(fwd.listen));
            tasks.push(tokio::spawn(udp::serve_forward(
                node.clone(),
                socket,
                fwd.clone(),
            )));
        }
        if let Some(a) = c.metrics {
            let n = node.clone();
            let (addr, task) =
                admin::spawn_metrics(a, ambit_proxy::accept_errors(&node.metrics), move || {
                    n.metrics.render()
                })
                .await?;
            bound.metrics = addr;
            endpoints.push(task);
        }
        if let Some(a) = c.readiness {
            let (addr, task) = admin::spawn_readiness(
                a,
                ambit_proxy::accept_errors(&node.metrics),
                node.readiness.clone(),
            )
            .await?;
            bound.readiness = addr;
            endpoints.push(task);
        }
        if let Some(a) = c.admin {
            let l = admin::bind("admin", a).await?;
            bound.admin = l.local_addr().ok();
            let n = node.clone();
            let route = Arc::new(move |path: String| {
                let n = n.clone();
                async move {
                    match path.as_str() {
                        "/config_dump" => (200, "application/json", dump::config_dump(&n)),
                        _ => (404, "text/plain", "not found\n".to_owned()),
                    }
                }
            });
            let errors = ambit_proxy::accept_errors(&node.metrics);
            endpoints.push(tokio::spawn(admin::serve(l, "admin", errors, route)));
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
        self.updater().update(state)
    }

    /// A handle that replaces the state, for a control-plane client to hold while the proxy
    /// is owned elsewhere.
    pub fn updater(&self) -> Updater {
        Updater(self.node.clone())
    }

    /// Replaces the state and waits until listeners and certificates follow it.
    pub async fn sync(&self, state: State) -> usize {
        let closed = self.update(state);
        let generation = *self.node.generation.borrow();
        inbound::reconcile(&self.node, &self.server, &mut *self.listeners.lock().await).await;
        self.node.mark_applied(generation);
        closed
    }

    /// What the node proxy still waits for before `/healthz/ready` says 200. It holds
    /// `certificates` itself while a local workload has none; a daemon may add its own (the
    /// first control-plane sync).
    pub fn readiness(&self) -> &Arc<Readiness> {
        &self.node.readiness
    }

    /// Adds (or replaces) a top-level section of `/config_dump`, computed at each request
    /// (a daemon's control-plane status, say).
    pub fn add_dump_section(&self, name: &str, section: DumpSection) {
        self.node.dump_extra.lock().insert(name.to_owned(), section);
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

    /// Stops accepting, lets inbound tunnels finish for up to `deadline`, then stops. Readiness
    /// says 503 (`draining`) from the start. Returns once every listener is closed, so a new
    /// proxy can bind the same addresses at once.
    pub async fn shutdown(mut self, deadline: Duration) {
        self.node
            .readiness
            .block("draining", "the proxy is shutting down");
        self.tasks.abort_all();
        self.inpod = None;
        self.server.drain(deadline).await;
        let listeners: Vec<_> = self
            .listeners
            .lock()
            .await
            .tasks
            .drain()
            .map(|(_, t)| t)
            .collect();
        for t in &listeners {
            t.abort();
        }
        // Returns once every listener is closed, so its ports can be bound again at once.
        for t in listeners {
            let _ = t.await;
        }
        self.tasks.stop().await;
        self.endpoints.stop().await;
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
    /// The sockets of the in-pod pod with address `ip`, if there is one.
    fn pod_sockets(&self, ip: IpAddr) -> Option<Arc<inpod::netns::PodSockets>> {
        self.lock_pod_sockets().get(&ip).cloned()
    }

    fn lock_pod_sockets(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Arc<inpod::netns::PodSockets>>> {
        self.pod_sockets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connects to a local workload at `dst` for a client at `src`: from inside the pod's
    /// namespace (in-pod), else from this one — from `src` itself when `spoof` and this host
    /// owns that address, so the application sees its real client.
    async fn connect_local(
        &self,
        src: IpAddr,
        dst: SocketAddr,
        spoof: bool,
    ) -> std::io::Result<tokio::net::TcpStream> {
        match self.pod_sockets(dst.ip()) {
            Some(pod) => pod.tcp_from(src, dst).await?.connect(dst).await,
            None if spoof => ambit_hbone::connect_from(Some(src), dst).await,
            None => tokio::net::TcpStream::connect(dst).await,
        }
    }
}
