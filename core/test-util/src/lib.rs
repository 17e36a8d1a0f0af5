//! Fixtures shared by ambit's tests, benches and the demo, so that none of them keeps its own
//! copy: a test PKI with one CA ([`TestPki`]), HBONE servers that echo ([`EchoServer`]), the
//! loopback mesh vocabulary ([`mesh`]: addresses, workloads, services), node A and node B
//! ([`nodes`]), small applications ([`apps`]: a TCP echo, an HTTP hello), a JWT signer
//! ([`jwt`]), a SOCKS5 client ([`socks5`]), the shared case tables ([`cases`]), deterministic
//! payloads. Real parts only: real certificates, real sockets on loopback. Not published;
//! failures here are test failures, so helpers panic with a message.
//!
//! ```
//! use ambit_test_util::{TestPki, mesh};
//!
//! let pki = TestPki::new();
//! let web = pki.id("shop", "web");
//! assert_eq!(web.to_string(), "spiffe://cluster.local/ns/shop/sa/web");
//! let _server_tls = pki.server_config(&web);
//! assert_eq!(mesh::ip(31, [2, 5]).to_string(), "127.31.2.5");
//! ```
#![forbid(unsafe_code)]

pub mod apps;
pub mod cases;
pub mod conformance;
pub mod jwt;
pub mod mesh;
pub mod nodes;
pub mod socks5;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ambit_hbone::{
    Client, ClientSettings, ConnectRequest, Dial, Responder, Server, ServerSettings,
};
use ambit_identity::{CertificateAuthority, Credentials, SpiffeId, TrustDomain};
use ambit_tls::{CredentialCell, Provider, ServerOptions, TlsContext};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Lifetime of test certificates.
pub const TTL: Duration = Duration::from_secs(24 * 3600);

/// A CA for `cluster.local` and a TLS context, handing out workload credentials.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA.
    pub ca: Arc<CertificateAuthority>,
    /// The TLS context (aws-lc-rs, system clock).
    pub tls: TlsContext,
}

impl TestPki {
    /// A fresh CA for `cluster.local`.
    pub fn new() -> Self {
        Self::for_domain("cluster.local")
    }

    /// A fresh CA for `domain`.
    pub fn for_domain(domain: &str) -> Self {
        let td = TrustDomain::new(domain).expect("test trust domain");
        Self {
            ca: Arc::new(CertificateAuthority::new(td).expect("test CA")),
            tls: TlsContext::new(Provider::default()),
        }
    }

    /// The id `spiffe://<td>/ns/<ns>/sa/<sa>`.
    pub fn id(&self, ns: &str, sa: &str) -> SpiffeId {
        self.ca
            .trust_domain()
            .workload_id(ns, sa)
            .expect("test workload id")
    }

    /// Credentials for `id`.
    pub fn credentials(&self, id: &SpiffeId) -> Credentials {
        self.ca.credentials(id, TTL).expect("test credentials")
    }

    /// A credential cell for `id`.
    pub fn cell(&self, id: &SpiffeId) -> Arc<CredentialCell> {
        self.tls
            .credential_cell(&self.credentials(id))
            .expect("test cell")
    }

    /// A server TLS config presenting `id`.
    pub fn server_config(&self, id: &SpiffeId) -> Arc<rustls::ServerConfig> {
        self.tls
            .server_config(&self.cell(id), &ServerOptions::default())
            .expect("test server config")
    }

    /// A credential source issuing from this CA (certificates valid for [`TTL`]), as node
    /// proxies and waypoints take it.
    pub fn source(&self) -> Arc<ambit_identity::CaSource> {
        Arc::new(ambit_identity::CaSource::new(
            self.ca.clone(),
            TTL,
            Arc::new(ambit_identity::SystemClock),
        ))
    }

    /// An HBONE client with default settings.
    pub fn client(&self) -> Client {
        self.client_with(ClientSettings::default())
    }

    /// An HBONE client with `settings`.
    pub fn client_with(&self, settings: ClientSettings) -> Client {
        Client::new(self.tls.clone(), settings)
    }

    /// Writes `<dir>/<name>-cert.pem` (chain), `<name>-key.pem` and `root.pem` for `id`, for
    /// independent peers (openssl, Python, Envoy, curl).
    pub fn write_pem(&self, dir: &Path, name: &str, id: &SpiffeId) {
        let c = self.credentials(id);
        std::fs::write(dir.join(format!("{name}-cert.pem")), c.svid.chain_pem())
            .expect("write cert");
        std::fs::write(dir.join(format!("{name}-key.pem")), c.svid.key_pem()).expect("write key");
        std::fs::write(dir.join("root.pem"), c.bundle.to_pem()).expect("write root");
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

/// What an [`EchoServer`] saw of one tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The request as the handler got it.
    pub authority: String,
    /// The client's verified id.
    pub peer_id: SpiffeId,
    /// Bytes read from the client before its EOF, or the read error.
    pub read: Result<u64, String>,
}

/// An HBONE server on 127.0.0.1 that accepts every CONNECT and echoes (full duplex), except
/// for target ports 401, 403, 400 and 503, which it rejects with that status.
#[derive(Debug)]
pub struct EchoServer {
    /// The server (for stats and drain).
    pub server: Server<EchoHandler>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its identity.
    pub id: SpiffeId,
    /// One report per finished tunnel.
    pub seen: mpsc::UnboundedReceiver<Seen>,
}

/// The handler behind [`EchoServer`].
#[derive(Debug, Clone)]
pub struct EchoHandler {
    seen: mpsc::UnboundedSender<Seen>,
}

impl EchoHandler {
    /// A handler reporting each finished tunnel on `seen`.
    pub fn new(seen: mpsc::UnboundedSender<Seen>) -> Self {
        Self { seen }
    }
}

impl ambit_hbone::Handler for EchoHandler {
    fn handle(
        &self,
        req: ConnectRequest,
        responder: Responder,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.clone().echo(req, responder)
    }
}

impl EchoHandler {
    async fn echo(self, req: ConnectRequest, responder: Responder) {
        let status = match req.authority.port() {
            p @ (400 | 401 | 403 | 503) => Some(p),
            _ => None,
        };
        if let Some(code) = status {
            let status = ambit_hbone::http::StatusCode::from_u16(code).expect("valid status");
            return responder.reject(status);
        }
        if req.kind == ambit_hbone::ConnectKind::Udp {
            return self.echo_udp(req, responder).await;
        }
        let Ok(tunnel) = responder.accept(Default::default()) else {
            return;
        };
        let (mut r, mut w) = tokio::io::split(tunnel);
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        let read = loop {
            match r.read(&mut buf).await {
                Ok(0) => break Ok(total),
                Ok(n) => {
                    total += n as u64;
                    if w.write_all(&buf[..n]).await.is_err() {
                        break Err("write failed".to_owned());
                    }
                }
                Err(e) => break Err(e.to_string()),
            }
        };
        if read.is_ok() {
            let _ = w.shutdown().await;
        }
        let _ = self.seen.send(Seen {
            authority: req.authority.to_string(),
            peer_id: req.peer_id,
            read,
        });
    }
}

impl EchoHandler {
    /// Echoes each datagram of a UDP flow until the client ends it; `read` counts bytes.
    async fn echo_udp(self, req: ConnectRequest, responder: Responder) {
        let Ok(mut flow) = responder.accept_udp(Default::default()) else {
            return;
        };
        let mut total = 0u64;
        let read = loop {
            match flow.recv().await {
                Ok(Some(d)) => {
                    total += d.len() as u64;
                    if flow.send(&d).await.is_err() {
                        break Err("send failed".to_owned());
                    }
                }
                Ok(None) => break Ok(total),
                Err(e) => break Err(e.to_string()),
            }
        };
        let _ = self.seen.send(Seen {
            authority: req.authority.to_string(),
            peer_id: req.peer_id,
            read,
        });
    }
}

impl EchoServer {
    /// Starts an echo server presenting `sa` in namespace `test`.
    pub async fn start(pki: &TestPki, sa: &str) -> Self {
        Self::start_with(pki, sa, ServerSettings::default()).await
    }

    /// Starts an echo server with explicit settings.
    pub async fn start_with(pki: &TestPki, sa: &str, settings: ServerSettings) -> Self {
        let id = pki.id("test", sa);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, seen) = mpsc::unbounded_channel();
        let server = Server::new(pki.server_config(&id), EchoHandler { seen: tx }, settings);
        let serving = server.clone();
        tokio::spawn(async move { serving.serve(listener).await });
        Self {
            server,
            addr,
            id,
            seen,
        }
    }

    /// Starts an echo server that also serves HBONE over HTTP/3 on the same port over UDP.
    pub async fn start_h3(pki: &TestPki, sa: &str) -> Self {
        let me = Self::start(pki, sa).await;
        let udp = std::net::UdpSocket::bind(me.addr).expect("bind UDP beside TCP");
        let serving = me.server.clone();
        tokio::spawn(async move { serving.serve_udp(udp).await });
        me
    }

    /// A dial from `source` to this server, target `127.0.0.1:<port>`.
    pub fn dial(&self, source: Arc<CredentialCell>, port: u16) -> Dial {
        Dial::new(
            source,
            self.addr,
            vec![self.id.clone()],
            SocketAddr::from(([127, 0, 0, 1], port)).into(),
        )
    }
}

/// `len` deterministic pseudo-random bytes (xorshift), different per `seed`.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Resident set size of this process in KiB (Linux), for memory-bound assertions.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
