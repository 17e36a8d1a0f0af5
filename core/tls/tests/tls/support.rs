//! Shared fixtures: a CA, credentials, an echo server, a client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ambit_identity::{CertificateAuthority, Credentials, SpiffeId, TrustDomain};
use ambit_tls::{CredentialCell, Provider, ServerOptions, TlsContext};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub(crate) const HOUR: Duration = Duration::from_secs(3600);
/// Upper bound on any single network step; a test that hits it has hung.
pub(crate) const STEP: Duration = Duration::from_secs(10);

pub(crate) fn td(s: &str) -> TrustDomain {
    TrustDomain::new(s).expect("trust domain")
}

pub(crate) fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).expect("spiffe id")
}

pub(crate) fn ca(domain: &str) -> CertificateAuthority {
    CertificateAuthority::new(td(domain)).expect("ca")
}

pub(crate) fn creds(ca: &CertificateAuthority, who: &str) -> Credentials {
    ca.credentials(&id(who), HOUR).expect("credentials")
}

pub(crate) fn tls() -> TlsContext {
    TlsContext::new(Provider::default())
}

pub(crate) fn cell(ctx: &TlsContext, c: &Credentials) -> Arc<CredentialCell> {
    ctx.credential_cell(c).expect("cell")
}

/// What the server saw of one accepted connection.
pub(crate) type Accepted = Result<SpiffeId, std::io::Error>;

/// An mTLS server that answers each connection with `<peer id>\n` and then echoes bytes.
/// Returns its address and a receiver of one outcome per connection.
pub(crate) async fn echo_server(
    config: Arc<rustls::ServerConfig>,
    connections: usize,
) -> (SocketAddr, tokio::sync::mpsc::Receiver<Accepted>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::mpsc::channel(connections.max(1));
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        for _ in 0..connections {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                    }
                    Ok(mut tls) => {
                        let peer = ambit_tls::peer_identity(tls.get_ref().1)
                            .map_err(std::io::Error::other);
                        let _ = tx
                            .send(
                                peer.as_ref()
                                    .map(Clone::clone)
                                    .map_err(|e| std::io::Error::other(e.to_string())),
                            )
                            .await;
                        let Ok(peer) = peer else { return };
                        if tls.write_all(format!("{peer}\n").as_bytes()).await.is_err() {
                            return;
                        }
                        let (mut r, mut w) = tokio::io::split(tls);
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                        let _ = w.shutdown().await;
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// Dials `addr` with `config`; returns the stream after the handshake.
pub(crate) async fn dial(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio::time::timeout(
        STEP,
        tokio_rustls::TlsConnector::from(config).connect(ambit_tls::server_name(), tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("handshake timed out"))?
}

/// Reads one `\n`-terminated line.
pub(crate) async fn read_line<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
) -> std::io::Result<String> {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let n = tokio::time::timeout(STEP, s.read(&mut byte))
            .await
            .map_err(|_| std::io::Error::other("read timed out"))??;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if byte[0] == b'\n' {
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
        out.push(byte[0]);
    }
}

/// The next outcome the server reports.
pub(crate) async fn server_outcome(rx: &mut tokio::sync::mpsc::Receiver<Accepted>) -> Accepted {
    tokio::time::timeout(STEP, rx.recv())
        .await
        .expect("server reported in time")
        .expect("server alive")
}

/// The verification error behind a server-side accept failure.
pub(crate) fn server_verify_error(err: &std::io::Error) -> ambit_identity::VerifyError {
    let tls = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("not a TLS error: {err}"));
    ambit_tls::verify_error(tls)
        .unwrap_or_else(|| panic!("not a verification error: {tls}"))
        .clone()
}

pub(crate) fn server_config(
    ctx: &TlsContext,
    c: &Arc<CredentialCell>,
) -> Arc<rustls::ServerConfig> {
    ctx.server_config(c, &ServerOptions::default())
        .expect("server config")
}
