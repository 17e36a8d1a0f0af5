//! In-pod ("shared") mode: istio-cni's node agent hands the proxy each pod's network namespace
//! over ZDS, and the proxy serves the pod from inside it — HBONE on 15008, captured outbound on
//! 15001 and plaintext inbound on 15006, all bound in the pod's namespace with the pod's
//! identity, and every connection the proxy makes for the pod made from there too. The pod's
//! own addresses stay the source of its traffic, and the node needs no redirect rules.
//!
//! The proxy is ZDS's client, as ztunnel is: the agent listens on `INPOD_UDS`, the proxy
//! connects, says hello, and answers every request with one ack. After the agent's snapshot
//! (`snapshot_sent`) pods it did not name are removed; a pod that cannot be served yet (its
//! workload is not in the state, a port is taken) is refused in the ack and retried.

pub mod netns;
pub mod zds;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ambit_state::Workload;
use ambit_telemetry::LabeledFamily;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::Node;
use crate::inbound::Inbound;
use crate::socket::Scope;
use netns::{Netns, NetnsRunner, PodSockets};
use zds::pb;
use zds::{Checked, Datagram, ZdsConn};

/// Inbound HBONE port inside a pod.
pub const POD_HBONE_PORT: u16 = 15008;
/// Captured outbound port inside a pod.
pub const POD_OUTBOUND_PORT: u16 = 15001;
/// Captured plaintext inbound port inside a pod.
pub const POD_INBOUND_PORT: u16 = 15006;
/// DNS proxy port inside a pod (on its loopback addresses).
pub const POD_DNS_PORT: u16 = 15053;

/// Readiness condition held until the agent's snapshot is in and every pod is served.
pub(crate) const READY_KEY: &str = "inpod";
/// The readiness detail until the node agent has sent its snapshot (held from the start by
/// [`NodeProxy::start`](crate::NodeProxy::start) in in-pod mode).
pub(crate) const READY_WAITING: &str = "waiting for the node agent's snapshot";
/// How long an add waits for the pod's workload to appear in the state before it is refused
/// (and retried); the agent waits 5 s for each ack.
const WORKLOAD_WAIT: Duration = Duration::from_secs(2);
/// Pods that could not be served are tried again this often.
const RETRY_EVERY: Duration = Duration::from_secs(5);
const CONNECT_BACKOFF_START: Duration = Duration::from_millis(10);
const CONNECT_BACKOFF_MAX: Duration = Duration::from_secs(15);

/// The pods served in-pod, and the ZDS session that names them.
#[derive(Debug)]
pub(crate) struct InPod {
    node: Arc<Node>,
    server: ambit_hbone::Server<Inbound>,
    runner: Arc<NetnsRunner>,
    pods: Mutex<HashMap<String, Pod>>,
    /// Pods refused so far on this connection, tried again every [`RETRY_EVERY`].
    pending: Mutex<HashMap<String, Pending>>,
    metrics: PodMetrics,
}

/// A pod the agent named that is not served yet: who it is, its namespace, and why not.
type Pending = (pb::WorkloadInfo, Arc<Netns>, String);

#[derive(Debug)]
struct PodMetrics {
    active: LabeledFamily,
    pending: LabeledFamily,
    started: LabeledFamily,
    stopped: LabeledFamily,
}

/// One pod being served.
#[derive(Debug)]
struct Pod {
    info: pb::WorkloadInfo,
    workload: String,
    sockets: Arc<PodSockets>,
    addresses: Vec<IpAddr>,
    /// Its listeners' loops; each owns its connections' tasks, so aborting it ends them.
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Pod {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What one ZDS connection has heard.
#[derive(Debug, Default)]
struct Session {
    /// Pods added or kept on this connection.
    seen: HashSet<String>,
    snapshot: bool,
}

impl InPod {
    pub(crate) fn new(node: Arc<Node>, server: ambit_hbone::Server<Inbound>) -> Arc<Self> {
        let m = &node.metrics;
        let metrics = PodMetrics {
            active: m.gauge(
                "workload_manager_active_proxy_count",
                "Pods served in-pod now.",
                &[],
            ),
            pending: m.gauge(
                "workload_manager_pending_proxy_count",
                "Pods the node agent named that cannot be served yet.",
                &[],
            ),
            started: m.counter(
                "workload_manager_proxies_started_total",
                "In-pod proxies started.",
                &[],
            ),
            stopped: m.counter(
                "workload_manager_proxies_stopped_total",
                "In-pod proxies stopped.",
                &[],
            ),
        };
        Arc::new(Self {
            node,
            server,
            runner: Arc::new(NetnsRunner::default()),
            pods: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// Talks ZDS with the agent at `path` for as long as the task runs, reconnecting with
    /// backoff; pods keep being served while the agent is away.
    pub(crate) async fn run(self: Arc<Self>, path: PathBuf) {
        let mut backoff = CONNECT_BACKOFF_START;
        let mut logged = false;
        loop {
            let conn = match ZdsConn::connect(&path).await {
                Ok(c) => c,
                Err(e) => {
                    if !logged {
                        warn!(path = %path.display(), error = %e, "cannot connect to the node agent (istio-cni); retrying");
                        logged = true;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(CONNECT_BACKOFF_MAX);
                    continue;
                }
            };
            backoff = CONNECT_BACKOFF_START;
            logged = false;
            info!(path = %path.display(), "connected to the node agent");
            let hello = pb::ZdsHello {
                version: pb::Version::V1 as i32,
            };
            let ended = match conn.send(&hello).await {
                Ok(()) => self.session(&conn).await,
                Err(e) => Err(e),
            };
            match ended {
                Ok(()) => info!("the node agent closed the ZDS connection; reconnecting"),
                Err(e) => warn!(error = %e, "ZDS connection failed; reconnecting"),
            }
            self.node.readiness.block(
                READY_KEY,
                "reconnecting to the node agent; waiting for its snapshot",
            );
        }
    }

    /// One connection: answers every request until it ends.
    async fn session(&self, conn: &ZdsConn) -> std::io::Result<()> {
        let mut session = Session::default();
        self.lock_pending().clear();
        self.update_readiness(&session);
        let mut retry = tokio::time::interval(RETRY_EVERY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        retry.tick().await;
        loop {
            let d = tokio::select! {
                d = conn.recv() => d?,
                _ = retry.tick() => {
                    self.retry_pending().await;
                    self.update_readiness(&session);
                    continue;
                }
            };
            if d.bytes.is_empty() && d.fds.is_empty() && !d.truncated {
                return Ok(());
            }
            let error = match self.handle(d, &mut session).await {
                Ok(()) => String::new(),
                Err(e) => {
                    warn!(error = %e, "ZDS request refused");
                    e
                }
            };
            let ack = pb::WorkloadResponse {
                payload: Some(pb::Response::Ack(pb::Ack { error })),
            };
            conn.send(&ack).await?;
            self.update_readiness(&session);
        }
    }

    /// Carries out one request; the error is the ack's text.
    async fn handle(&self, d: Datagram, session: &mut Session) -> Result<(), String> {
        let mut fds = d.fds;
        match zds::check(&d.bytes, fds.len(), d.truncated)? {
            Checked::Add { uid, info } => {
                let Some(fd) = fds.pop() else {
                    return Err(format!("AddWorkload {uid} carries no descriptor"));
                };
                session.seen.insert(uid.clone());
                let ns = Netns::new(fd).map_err(|e| format!("pod {uid}: {e}"))?;
                self.add(&uid, info, Arc::new(ns)).await
            }
            Checked::Keep(uid) => {
                if session.snapshot {
                    return Err(format!("KeepWorkload {uid} after the snapshot"));
                }
                if !self.lock_pods().contains_key(&uid) {
                    return Err(format!("KeepWorkload {uid}: not served here"));
                }
                session.seen.insert(uid);
                Ok(())
            }
            Checked::Del(uid) => {
                session.seen.remove(&uid);
                self.lock_pending().remove(&uid);
                self.remove(&uid, "deleted by the node agent");
                Ok(())
            }
            Checked::SnapshotSent => {
                if session.snapshot {
                    return Err("a second SnapshotSent on one connection".into());
                }
                session.snapshot = true;
                let gone: Vec<String> = self
                    .lock_pods()
                    .keys()
                    .filter(|uid| !session.seen.contains(*uid))
                    .cloned()
                    .collect();
                for uid in gone {
                    self.remove(&uid, "not in the node agent's snapshot");
                }
                Ok(())
            }
        }
    }

    /// Serves pod `uid` from inside `ns` (idempotent for the same namespace; another namespace
    /// replaces the old one). A failure leaves the pod pending, to be tried again.
    async fn add(&self, uid: &str, info: pb::WorkloadInfo, ns: Arc<Netns>) -> Result<(), String> {
        if let Some(p) = self.lock_pods().get(uid)
            && p.sockets.netns().same_as(&ns)
        {
            return Ok(());
        }
        self.remove(uid, "its network namespace changed");
        match self.start(uid, &info, ns.clone()).await {
            Ok(pod) => {
                info!(pod = uid, name = %info.name, namespace = %info.namespace, addresses = %ips(&pod.addresses), "serving pod in its network namespace");
                self.lock_pending().remove(uid);
                self.register(&pod);
                self.lock_pods().insert(uid.to_owned(), pod);
                self.metrics.started.inc(&[]);
                self.count();
                Ok(())
            }
            Err(e) => {
                let e = format!("pod {uid} ({}/{}): {e}", info.namespace, info.name);
                self.lock_pending()
                    .insert(uid.to_owned(), (info, ns, e.clone()));
                self.count();
                Err(e)
            }
        }
    }

    async fn start(
        &self,
        uid: &str,
        info: &pb::WorkloadInfo,
        ns: Arc<Netns>,
    ) -> Result<Pod, String> {
        let w = self.find_workload(uid, info).await.ok_or_else(|| {
            format!(
                "no workload on node {} for pod uid {uid} or {}/{} with service account {}",
                self.node.config.node, info.namespace, info.name, info.service_account
            )
        })?;
        let sockets = Arc::new(PodSockets::new(uid, ns, self.runner.clone()));
        let hbone = listen_any(&sockets, POD_HBONE_PORT).await?;
        let outbound = listen_any(&sockets, POD_OUTBOUND_PORT).await?;
        let inbound = listen_any(&sockets, POD_INBOUND_PORT).await?;
        let scope = Scope::Pod;
        let server = self.server.clone();
        let mut tasks = vec![
            tokio::spawn(async move { drop(server.serve(hbone).await) }),
            tokio::spawn(crate::outbound::serve_transparent(
                self.node.clone(),
                outbound,
                scope,
            )),
            tokio::spawn(crate::plaintext::serve(self.node.clone(), inbound, scope)),
        ];
        if self.node.config.dns_capture {
            let dns = crate::dns::DnsServer::new(
                self.node.clone(),
                Some((w.uid.clone(), sockets.clone())),
            );
            for ip in [
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ] {
                let addr = SocketAddr::new(ip, POD_DNS_PORT);
                let bound = async {
                    let udp = sockets.udp(addr).await?;
                    let tcp = sockets.listen(addr).await?;
                    Ok::<_, std::io::Error>((udp, tcp))
                }
                .await;
                match bound {
                    Ok((udp, tcp)) => {
                        tasks.push(tokio::spawn(dns.clone().serve_udp(udp)));
                        tasks.push(tokio::spawn(dns.clone().serve_tcp(tcp, scope)));
                    }
                    // A pod without IPv6 on its loopback gets DNS on 127.0.0.1 only.
                    Err(e) if ip.is_ipv6() => {
                        tracing::debug!(pod = uid, error = %e, "no DNS proxy on [::1] in the pod")
                    }
                    Err(e) => {
                        for t in &tasks {
                            t.abort();
                        }
                        return Err(format!(
                            "cannot listen for DNS on {addr} in the pod's network namespace: {e}"
                        ));
                    }
                }
            }
        }
        Ok(Pod {
            info: info.clone(),
            workload: w.uid.clone(),
            sockets,
            addresses: w.addresses.clone(),
            tasks,
        })
    }

    /// The local workload for a pod: by uid, else by name, namespace and service account,
    /// waiting a little for the state to catch up with the agent.
    async fn find_workload(&self, uid: &str, info: &pb::WorkloadInfo) -> Option<Arc<Workload>> {
        let mut changes = self.node.generation.subscribe();
        let deadline = tokio::time::Instant::now() + WORKLOAD_WAIT;
        loop {
            let state = self.node.state.load_full();
            let local: Vec<&Arc<Workload>> = state.workloads_on(&self.node.config.node).collect();
            let found = local.iter().find(|w| w.uid == uid).or_else(|| {
                local.iter().find(|w| {
                    w.name == info.name
                        && w.namespace == info.namespace
                        && (info.service_account.is_empty()
                            || w.service_account == info.service_account)
                })
            });
            if let Some(w) = found {
                return Some((*w).clone());
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    /// Stops serving pod `uid`: its listeners close and its open connections end.
    fn remove(&self, uid: &str, why: &str) {
        let Some(pod) = self.lock_pods().remove(uid) else {
            return;
        };
        info!(pod = uid, name = %pod.info.name, namespace = %pod.info.namespace, reason = why, "no longer serving pod");
        {
            let mut map = self.node.lock_pod_sockets();
            for ip in &pod.addresses {
                if map.get(ip).is_some_and(|s| Arc::ptr_eq(s, &pod.sockets)) {
                    map.remove(ip);
                }
            }
        }
        self.node.connections.close_workload(&pod.workload, why);
        drop(pod);
        self.metrics.stopped.inc(&[]);
        self.count();
    }

    fn register(&self, pod: &Pod) {
        let mut map = self.node.lock_pod_sockets();
        for ip in &pod.addresses {
            map.insert(*ip, pod.sockets.clone());
        }
    }

    async fn retry_pending(&self) {
        let pending: Vec<(String, pb::WorkloadInfo, Arc<Netns>)> = self
            .lock_pending()
            .iter()
            .map(|(uid, (info, ns, _))| (uid.clone(), info.clone(), ns.clone()))
            .collect();
        for (uid, info, ns) in pending {
            let _ = self.add(&uid, info, ns).await;
        }
    }

    fn update_readiness(&self, session: &Session) {
        let pending = self.lock_pending();
        if !session.snapshot {
            self.node.readiness.block(READY_KEY, READY_WAITING);
        } else if pending.is_empty() {
            self.node.readiness.unblock(READY_KEY);
        } else {
            let why: Vec<&str> = pending.values().map(|(_, _, e)| e.as_str()).collect();
            self.node.readiness.block(
                READY_KEY,
                format!(
                    "{} pod(s) not served yet: {}",
                    pending.len(),
                    why.join("; ")
                ),
            );
        }
    }

    fn count(&self) {
        let active = self.lock_pods().len() as u64;
        let pending = self.lock_pending().len() as u64;
        self.metrics.active.set(&[], active);
        self.metrics.pending.set(&[], pending);
    }

    /// The `/config_dump` section: every pod the agent named, served or pending.
    pub(crate) fn dump(&self) -> serde_json::Value {
        let mut out = BTreeMap::new();
        for (uid, p) in self.lock_pods().iter() {
            out.insert(
                uid.clone(),
                serde_json::json!({
                    "state": "Up",
                    "workload": p.workload,
                    "addresses": p.addresses,
                    "info": info_json(&p.info),
                }),
            );
        }
        for (uid, (info, _, e)) in self.lock_pending().iter() {
            out.insert(
                uid.clone(),
                serde_json::json!({"state": "Pending", "error": e, "info": info_json(info)}),
            );
        }
        serde_json::json!(out)
    }

    fn lock_pods(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pod>> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn info_json(i: &pb::WorkloadInfo) -> serde_json::Value {
    serde_json::json!({"name": i.name, "namespace": i.namespace, "serviceAccount": i.service_account})
}

/// Listens on `port` on every address of the pod: `[::]` (both families), or `0.0.0.0` when
/// the pod has no IPv6.
async fn listen_any(sockets: &PodSockets, port: u16) -> Result<TcpListener, String> {
    match sockets
        .listen(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port))
        .await
    {
        Ok(l) => Ok(l),
        Err(e6) => sockets
            .listen(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))
            .await
            .map_err(|e| {
                format!(
                    "cannot listen on port {port} in the pod's network namespace: {e} (IPv6: {e6})"
                )
            }),
    }
}

/// `10.0.0.1,fd00::1`: addresses for a log field.
fn ips(addrs: &[IpAddr]) -> String {
    let all: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    all.join(",")
}
