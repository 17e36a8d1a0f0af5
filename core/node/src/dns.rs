//! The DNS proxy (ztunnel's, on 15053): A and AAAA questions for the mesh's names are answered
//! from the state — service hostnames and their short forms in the asking pod's namespace, and
//! workloads with a hostname — and everything else goes to the node's resolvers unchanged
//! (other record types, other names, and other opcodes such as UPDATE, which ztunnel answers
//! with NOTIMP). UDP and TCP; each query is logged (target `dns`) and counted.
//!
//! Local answers are authoritative with a 30 s TTL. Forwarding relays the client's own bytes
//! and the resolver's own answer, so what the mesh does not know is exactly what the resolver
//! says.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ambit_state::{IpFamilies, Service, State, Visibility, Workload};
use ambit_telemetry::LabeledFamily;
use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tracing::debug;

use crate::Node;
use crate::inpod::netns::PodSockets;
use crate::socket::Scope;

/// TTL of every local answer.
pub const TTL: u32 = 30;
/// How long a resolver has to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a TCP client has to send its next query.
const TCP_IDLE: Duration = Duration::from_secs(5);
/// Largest UDP message read.
const MAX_UDP: usize = 4096;

/// Who asks: the namespace short names are completed with, the network whose VIPs are given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Asker {
    /// The asking workload's namespace (empty: unknown, only full names resolve).
    pub namespace: String,
    /// Its network.
    pub network: String,
}

/// What to do with one message.
#[derive(Debug)]
pub enum Answer {
    /// Answered here: the reply and the access log's result.
    Local(Box<Message>, &'static str),
    /// Not the mesh's to answer: send it to a resolver.
    Forward,
}

/// Decides one request from the state; `domain` is the cluster domain (`cluster.local`).
pub fn answer(state: &State, asker: &Asker, domain: &str, req: &Message) -> Answer {
    if req.metadata.message_type == MessageType::Response {
        return Answer::Local(Box::new(reply(req, ResponseCode::FormErr)), "not a query");
    }
    if req.metadata.op_code != OpCode::Query || req.queries.len() != 1 {
        return Answer::Forward;
    }
    let q = &req.queries[0];
    let v6 = match q.query_type() {
        RecordType::A => false,
        RecordType::AAAA => true,
        _ => return Answer::Forward,
    };
    let asked = q
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let Some((found, alias)) = find(state, asker, domain, &asked) else {
        return Answer::Forward;
    };
    let addresses = match &found {
        Found::Service(s) => match service_addresses(state, s, asker, domain, v6) {
            Some(a) => a,
            None => return Answer::Forward,
        },
        Found::Workload(w) => w
            .addresses
            .iter()
            .filter(|ip| ip.is_ipv6() == v6)
            .copied()
            .collect(),
    };
    let mut msg = reply(req, ResponseCode::NoError);
    msg.metadata.authoritative = true;
    let mut owner = q.name().clone();
    if let Some(target) = alias
        && let Ok(target) = Name::from_ascii(format!("{target}."))
    {
        msg.answers.push(Record::from_rdata(
            owner.clone(),
            TTL,
            RData::CNAME(CNAME(target.clone())),
        ));
        owner = target;
    }
    let result = if addresses.is_empty() {
        "no records"
    } else {
        "success"
    };
    // Rotated, so that clients taking the first address spread over all of them.
    let start = if addresses.is_empty() {
        0
    } else {
        (ambit_proxy::random_u64() % addresses.len() as u64) as usize
    };
    for ip in addresses.iter().cycle().skip(start).take(addresses.len()) {
        let data = match ip {
            IpAddr::V4(v4) => RData::A(A(*v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
        };
        msg.answers
            .push(Record::from_rdata(owner.clone(), TTL, data));
    }
    Answer::Local(Box::new(msg), result)
}

enum Found {
    Service(Arc<Service>),
    Workload(Arc<Workload>),
}

/// The service or workload a name means to `asker`, and the name it was found as when that
/// differs from the one asked by a search domain (answered with a CNAME).
fn find(
    state: &State,
    asker: &Asker,
    domain: &str,
    asked: &str,
) -> Option<(Found, Option<String>)> {
    for (name, stripped) in candidates(asked, &asker.namespace, domain) {
        let alias = stripped.then(|| name.clone());
        let visible = state
            .services_by_hostname(&name)
            .filter(|s| s.visibility == Visibility::Public || s.namespace == asker.namespace);
        // The asker's own namespace first, then the canonical one, then the first.
        let mut best: Option<&Arc<Service>> = None;
        for s in visible {
            let better = match best {
                None => true,
                Some(b) => {
                    (s.namespace == asker.namespace && b.namespace != asker.namespace)
                        || (s.canonical && !b.canonical && b.namespace != asker.namespace)
                }
            };
            if better {
                best = Some(s);
            }
        }
        if let Some(s) = best {
            return Some((Found::Service(s.clone()), alias));
        }
        if let Some(w) = state
            .workload_by_hostname(&name)
            .filter(|w| !w.addresses.is_empty())
        {
            return Some((Found::Workload(w.clone()), alias));
        }
    }
    None
}

/// The names `asked` may mean, in the order ztunnel tries them: the name itself and its
/// Kubernetes expansions in `namespace`, then for each search domain of a pod in `namespace`
/// that it ends with, the name without it (marked `true`: answered with a CNAME) and that
/// name's expansions.
pub fn candidates(asked: &str, namespace: &str, domain: &str) -> Vec<(String, bool)> {
    let mut out = vec![(asked.to_owned(), false)];
    out.extend(
        expansions(asked, namespace, domain)
            .into_iter()
            .map(|n| (n, false)),
    );
    if !namespace.is_empty() {
        for search in [
            format!("{namespace}.svc.{domain}"),
            format!("svc.{domain}"),
            domain.to_owned(),
        ] {
            if let Some(stripped) = asked.strip_suffix(&format!(".{search}")) {
                out.push((stripped.to_owned(), true));
                out.extend(
                    expansions(stripped, namespace, domain)
                        .into_iter()
                        .map(|n| (n, true)),
                );
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|(n, _)| seen.insert(n.clone()));
    out
}

/// Kubernetes' completions of a partial service name.
fn expansions(name: &str, namespace: &str, domain: &str) -> Vec<String> {
    let labels: Vec<&str> = name.split('.').collect();
    let mut out = Vec::new();
    match labels.as_slice() {
        [_] if !namespace.is_empty() => out.push(format!("{name}.{namespace}.svc.{domain}")),
        [_, _] => {
            out.push(format!("{name}.svc.{domain}"));
            if !namespace.is_empty() {
                out.push(format!("{name}.{namespace}.svc.{domain}"));
            }
        }
        [_, _, last] => {
            if *last == "svc" {
                out.push(format!("{name}.{domain}"));
            }
            out.push(format!("{name}.svc.{domain}"));
        }
        [_, _, _, "svc"] => out.push(format!("{name}.{domain}")),
        _ => {}
    }
    out
}

/// A service's addresses of one family on the asker's network; `None` when it has none to
/// give and is not headless (the name is then the resolver's).
fn service_addresses(
    state: &State,
    s: &Service,
    asker: &Asker,
    domain: &str,
    v6: bool,
) -> Option<Vec<IpAddr>> {
    match (s.ip_families, v6) {
        (IpFamilies::Ipv4Only, true) | (IpFamilies::Ipv6Only, false) => return Some(Vec::new()),
        _ => {}
    }
    if !s.vips.is_empty() {
        return Some(
            s.vips
                .iter()
                .filter(|(net, ip)| *net == asker.network && ip.is_ipv6() == v6)
                .map(|(_, ip)| *ip)
                .collect(),
        );
    }
    if !s.hostname.ends_with(&format!(".svc.{domain}")) {
        return None;
    }
    // Headless: each endpoint's first address of the family.
    Some(
        state
            .endpoint_workloads(s)
            .filter_map(|w| w.addresses.iter().find(|ip| ip.is_ipv6() == v6).copied())
            .collect(),
    )
}

/// An empty reply to `req` with `code`, as resolvers answer: recursion available, the
/// question echoed, EDNS echoed when it was asked with.
fn reply(req: &Message, code: ResponseCode) -> Message {
    let mut msg = Message::response(req.metadata.id, req.metadata.op_code);
    msg.metadata = Metadata::response_from_request(&req.metadata);
    msg.metadata.recursion_available = true;
    msg.metadata.response_code = code;
    msg.queries = req.queries.clone();
    if let Some(e) = &req.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(e.max_payload().max(512));
        edns.set_version(e.version());
        msg.edns = Some(edns);
    }
    msg
}

/// The nameservers of a `resolv.conf` text (port 53), in order.
pub fn nameservers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        .filter_map(|a| a.split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// The DNS proxy's settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DnsConfig {
    /// Where names the mesh does not know go (from `/etc/resolv.conf`).
    pub upstreams: Vec<SocketAddr>,
    /// The cluster domain.
    pub domain: String,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            upstreams: Vec::new(),
            domain: "cluster.local".into(),
        }
    }
}

/// One DNS listener's context: the node, and, in-pod, the pod that asks through it.
#[derive(Debug, Clone)]
pub(crate) struct DnsServer {
    node: Arc<Node>,
    /// In-pod: the pod's workload uid and its sockets (upstream queries leave from the pod).
    pod: Option<(String, Arc<PodSockets>)>,
    metrics: DnsMetrics,
}

#[derive(Debug, Clone)]
struct DnsMetrics {
    requests: LabeledFamily,
    upstream: LabeledFamily,
    failures: LabeledFamily,
}

const LABELS: &[&str] = &[
    "request_query_type",
    "request_protocol",
    "source_canonical_service",
    "source_canonical_revision",
];

impl DnsServer {
    pub(crate) fn new(node: Arc<Node>, pod: Option<(String, Arc<PodSockets>)>) -> Self {
        let m = &node.metrics;
        let metrics = DnsMetrics {
            requests: m.counter("istio_dns_requests_total", "DNS requests.", LABELS),
            upstream: m.counter(
                "istio_dns_upstream_requests_total",
                "DNS requests forwarded to a resolver.",
                LABELS,
            ),
            failures: m.counter(
                "istio_dns_upstream_failures_total",
                "DNS requests a resolver did not answer.",
                LABELS,
            ),
        };
        Self { node, pod, metrics }
    }

    /// Answers UDP queries on `socket` until the task is dropped.
    pub(crate) async fn serve_udp(self, socket: UdpSocket) {
        let socket = Arc::new(socket);
        let mut buf = vec![0u8; MAX_UDP];
        loop {
            let (n, peer) = match socket.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    debug!(error = %e, "DNS receive failed");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            };
            let bytes = buf[..n].to_vec();
            let (server, socket) = (self.clone(), socket.clone());
            tokio::spawn(async move {
                if let Some(out) = server
                    .handle(&bytes, ambit_hbone::canonical(peer), false)
                    .await
                {
                    let _ = socket.send_to(&out, peer).await;
                }
            });
        }
    }

    /// Answers TCP clients on `listener` until the task is dropped.
    pub(crate) async fn serve_tcp(self, listener: TcpListener, scope: Scope) {
        let errors = ambit_proxy::accept_errors(&self.node.metrics);
        let mut spawner = crate::socket::Spawner::new(scope);
        loop {
            let (s, peer) = ambit_proxy::accept(&listener, "DNS", &errors).await;
            let server = self.clone();
            spawner.spawn(async move { server.tcp_client(s, ambit_hbone::canonical(peer)).await });
        }
    }

    async fn tcp_client(&self, mut s: TcpStream, peer: SocketAddr) {
        loop {
            let mut len = [0u8; 2];
            match tokio::time::timeout(TCP_IDLE, s.read_exact(&mut len)).await {
                Ok(Ok(_)) => {}
                _ => return,
            }
            let mut bytes = vec![0u8; usize::from(u16::from_be_bytes(len))];
            match tokio::time::timeout(TCP_IDLE, s.read_exact(&mut bytes)).await {
                Ok(Ok(_)) => {}
                _ => return,
            }
            let Some(out) = self.handle(&bytes, peer, true).await else {
                return;
            };
            let Ok(n) = u16::try_from(out.len()) else {
                return;
            };
            if s.write_all(&n.to_be_bytes()).await.is_err() || s.write_all(&out).await.is_err() {
                return;
            }
        }
    }

    /// One message from `peer`: the bytes to send back, if any.
    async fn handle(&self, bytes: &[u8], peer: SocketAddr, tcp: bool) -> Option<Vec<u8>> {
        let protocol = if tcp { "tcp" } else { "udp" };
        let state = self.node.state.load_full();
        let asker_w = match &self.pod {
            Some((uid, _)) => state.workload(uid).cloned(),
            None => state
                .workload_by_addr(&self.node.config.network, peer.ip())
                .filter(|w| w.node == self.node.config.node)
                .cloned(),
        };
        let asker = Asker {
            namespace: asker_w
                .as_ref()
                .map(|w| w.namespace.clone())
                .unwrap_or_default(),
            network: asker_w
                .as_ref()
                .map(|w| w.network.clone())
                .unwrap_or_else(|| self.node.config.network.clone()),
        };
        let or_unknown =
            |s: Option<&str>| s.filter(|s| !s.is_empty()).unwrap_or("unknown").to_owned();
        let service = or_unknown(asker_w.as_deref().map(|w| w.canonical_name.as_str()));
        let revision = or_unknown(asker_w.as_deref().map(|w| w.canonical_revision.as_str()));
        let req = match Message::from_vec(bytes) {
            Ok(m) => m,
            Err(e) => {
                debug!(%peer, error = %e, "malformed DNS message");
                let labels = ["unknown", protocol, service.as_str(), revision.as_str()];
                self.metrics.requests.inc(&labels);
                return format_error(bytes);
            }
        };
        let qtype = req
            .queries
            .first()
            .map(|q| q.query_type().to_string().to_ascii_lowercase())
            .unwrap_or_else(|| "none".into());
        let domain = req
            .queries
            .first()
            .map(|q| q.name().to_ascii())
            .unwrap_or_default();
        let labels = [
            qtype.as_str(),
            protocol,
            service.as_str(),
            revision.as_str(),
        ];
        self.metrics.requests.inc(&labels);
        let log = |result: &str, endpoints: usize| {
            let workload = asker_w
                .as_deref()
                .map(|w| w.name.as_str())
                .unwrap_or("unknown");
            let namespace = if asker.namespace.is_empty() {
                "unknown"
            } else {
                asker.namespace.as_str()
            };
            tracing::event!(target: "dns", tracing::Level::INFO,
                src.addr = %peer,
                src.workload = workload,
                src.namespace = namespace,
                query = %qtype,
                opcode = %req.metadata.op_code,
                domain = %domain,
                result,
                endpoints,
                "dns request");
        };
        match answer(&state, &asker, &self.node.config.resolver.domain, &req) {
            Answer::Local(msg, result) => {
                log(result, msg.answers.len());
                msg.to_vec().ok()
            }
            Answer::Forward => {
                self.metrics.upstream.inc(&labels);
                match self.forward(bytes, tcp).await {
                    Ok(out) => {
                        log("forwarded", 0);
                        Some(out)
                    }
                    Err(e) => {
                        self.metrics.failures.inc(&labels);
                        log(&format!("forwarding failed ({e})"), 0);
                        reply(&req, ResponseCode::ServFail).to_vec().ok()
                    }
                }
            }
        }
    }

    /// Sends the client's own bytes to the first resolver that answers; its answer as it is.
    async fn forward(&self, bytes: &[u8], tcp: bool) -> std::io::Result<Vec<u8>> {
        let mut last = std::io::Error::other("no resolver in resolv.conf");
        for up in &self.node.config.resolver.upstreams {
            let r = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
                if tcp {
                    self.forward_tcp(*up, bytes).await
                } else {
                    self.forward_udp(*up, bytes).await
                }
            })
            .await;
            match r {
                Ok(Ok(out)) => return Ok(out),
                Ok(Err(e)) => last = e,
                Err(_) => {
                    last = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("{up} did not answer in {UPSTREAM_TIMEOUT:?}"),
                    );
                }
            }
        }
        Err(last)
    }

    async fn forward_udp(&self, up: SocketAddr, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        let any = if up.is_ipv6() {
            SocketAddr::from(([0u16; 8], 0))
        } else {
            SocketAddr::from(([0u8; 4], 0))
        };
        let socket = match &self.pod {
            Some((_, pod)) => pod.udp(any).await?,
            None => UdpSocket::bind(any).await?,
        };
        socket.connect(up).await?;
        socket.send(bytes).await?;
        let mut buf = vec![0u8; MAX_UDP];
        loop {
            let n = socket.recv(&mut buf).await?;
            // Only the answer to this query (same id) is taken.
            if n >= 2 && bytes.len() >= 2 && buf[..2] == bytes[..2] {
                buf.truncate(n);
                return Ok(buf);
            }
        }
    }

    async fn forward_tcp(&self, up: SocketAddr, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut s = match &self.pod {
            Some((_, pod)) => pod.tcp(up.is_ipv6()).await?.connect(up).await?,
            None => TcpStream::connect(up).await?,
        };
        let n = u16::try_from(bytes.len()).map_err(std::io::Error::other)?;
        s.write_all(&n.to_be_bytes()).await?;
        s.write_all(bytes).await?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await?;
        let mut out = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut out).await?;
        Ok(out)
    }
}

/// FORMERR for bytes that do not parse as a DNS message, when they hold at least a header.
pub fn format_error(bytes: &[u8]) -> Option<Vec<u8>> {
    let id = u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]);
    if bytes.len() < 12 {
        return None;
    }
    let mut msg = Message::response(id, OpCode::Query);
    msg.metadata.response_code = ResponseCode::FormErr;
    msg.metadata.recursion_available = true;
    msg.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_expand_in_the_askers_namespace() {
        let c = |n: &str| -> Vec<String> {
            candidates(n, "shop", "cluster.local")
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        assert_eq!(c("reviews"), ["reviews", "reviews.shop.svc.cluster.local"]);
        assert_eq!(
            c("reviews.shop"),
            [
                "reviews.shop",
                "reviews.shop.svc.cluster.local",
                "reviews.shop.shop.svc.cluster.local"
            ]
        );
        assert_eq!(
            c("reviews.shop.svc"),
            [
                "reviews.shop.svc",
                "reviews.shop.svc.cluster.local",
                "reviews.shop.svc.svc.cluster.local"
            ]
        );
        let stripped = candidates(
            "reviews.shop.svc.cluster.local.shop.svc.cluster.local",
            "shop",
            "cluster.local",
        );
        assert!(stripped.contains(&("reviews.shop.svc.cluster.local".to_owned(), true)));
    }

    #[test]
    fn resolv_conf_nameservers() {
        let text = "search x.y\nnameserver 10.96.0.10\n# nameserver 1.1.1.1\nnameserver fe80::1%eth0\noptions ndots:5\n";
        assert_eq!(
            nameservers(text),
            [
                "10.96.0.10:53".parse::<SocketAddr>().expect("v4"),
                "[fe80::1]:53".parse().expect("v6")
            ]
        );
    }
}
