//! Remote JWKS (`jwksUri`, `http://` or `https://`): fetched when the config changes, refreshed
//! every 20 minutes (Istio's default), retried every 10 s while a fetch fails. Until a key set
//! arrives, tokens for that issuer are refused (401), never accepted. HTTPS is TLS 1.3 with the
//! system's trust anchors (rustls-native-certs) plus any the waypoint is configured with.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Uri;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tracing::{info, warn};

use ambit_authn::JwksUri;
use ambit_authn::jwks_uri_from_openid_configuration;

use super::Inner;

/// How often key sets are re-fetched.
const REFRESH: Duration = Duration::from_secs(20 * 60);
/// How soon a failed fetch is retried.
const RETRY: Duration = Duration::from_secs(10);
/// Largest JWKS document accepted.
const MAX_BYTES: usize = 1 << 20;

/// Fetches key sets; wakes the refresh loop when the config changes.
#[derive(Debug)]
pub(crate) struct Fetcher {
    changed: Notify,
    tls: Arc<rustls::ClientConfig>,
}

impl Fetcher {
    /// A fetcher trusting the system's roots and `extra_roots` (PEM), with `provider`'s crypto.
    pub(crate) fn new(
        provider: Arc<rustls::crypto::CryptoProvider>,
        extra_roots: Option<&str>,
    ) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        if let Some(pem) = extra_roots {
            let certs: Vec<CertificateDer<'static>> =
                rustls_pki_types::pem::PemObject::pem_slice_iter(pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("JWKS trust anchors are not PEM certificates: {e}"))?;
            if certs.is_empty() {
                return Err("JWKS trust anchors: no certificate in the PEM".into());
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("JWKS trust anchor refused: {e}"))?;
            }
        } else if added == 0 {
            warn!("no system trust anchors found: https jwksUri fetches will fail");
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            changed: Notify::new(),
            tls: Arc::new(tls),
        })
    }

    pub(crate) fn wake(&self) {
        self.changed.notify_one();
    }
}

pub(crate) async fn refresh_loop(inner: Arc<Inner>) {
    loop {
        let wait = match refresh_once(&inner).await {
            Ok(()) => REFRESH,
            Err(_) => RETRY,
        };
        tokio::select! {
            _ = inner.jwks.changed.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Fetches every `jwksUri` of the current config once; the first error is returned (the
/// others are still tried).
pub(crate) async fn refresh_once(inner: &Inner) -> Result<(), String> {
    let l7 = inner.l7.load_full();
    let mut first = Ok(());
    for j in l7.authentication.jwks_uris() {
        let uri = &j.uri;
        let r = match fetch_jwks(&inner.jwks, &j).await {
            Ok(text) => l7
                .authentication
                .set_jwks(uri, &text)
                .map_err(|e| format!("JWKS from {uri} is not usable: {e}")),
            Err(e) => Err(format!("cannot fetch JWKS from {uri}: {e}")),
        };
        match r {
            Ok(keys) => info!(%uri, keys, "JWKS loaded"),
            Err(e) => {
                warn!(error = %e, "JWKS fetch failed; tokens of this issuer are refused until it succeeds");
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
    }
    first
}

/// The key set for `j`: fetched directly, or through the issuer's OpenID discovery document.
async fn fetch_jwks(f: &Fetcher, j: &JwksUri) -> Result<String, String> {
    if !j.openid_discovery {
        return fetch(f, &j.uri, j.timeout).await;
    }
    let doc = fetch(f, &j.uri, j.timeout).await?;
    let jwks_uri = jwks_uri_from_openid_configuration(&doc).map_err(|e| e.to_string())?;
    fetch(f, &jwks_uri, j.timeout).await
}

async fn fetch(f: &Fetcher, uri: &str, timeout: Duration) -> Result<String, String> {
    let parsed: Uri = uri.parse().map_err(|e| format!("bad URI: {e}"))?;
    let host = parsed.host().ok_or("the URI has no host")?.to_owned();
    let https = match parsed.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("only http:// and https:// JWKS URIs are supported".into()),
    };
    let port = parsed.port_u16().unwrap_or(if https { 443 } else { 80 });
    let authority = parsed
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_else(|| host.clone());
    let path = parsed
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let get = async {
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tcp = TcpStream::connect((bare.as_str(), port))
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        if https {
            let name = ServerName::try_from(bare.clone())
                .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
            let tls = tokio_rustls::TlsConnector::from(f.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            get_over(tls, &authority, &path).await
        } else {
            get_over(tcp, &authority, &path).await
        }
    };
    tokio::time::timeout(timeout, get)
        .await
        .map_err(|_| format!("timed out after {timeout:?}"))?
}

/// One HTTP/1.1 GET over an established stream; the body, up to [`MAX_BYTES`].
async fn get_over<S>(io: S, authority: &str, path: &str) -> Result<String, String>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let body = Limited::new(resp.into_body(), MAX_BYTES)
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    String::from_utf8(body.to_bytes().to_vec()).map_err(|_| "not UTF-8".into())
}
