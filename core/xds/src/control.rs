//! The connection to a control plane (istiod's xDS or CA port, 15012): gRPC over HTTP/2 over
//! TLS 1.3, with the server verified against the configured roots (by the URI's host, or the
//! alternative hostname), a bearer token re-read from its file for every call, the
//! `clusterid` header, and extra headers. Shared by the xDS and the CA client.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};

/// How long a TCP connect to the control plane may take (ztunnel's figure).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 keep-alive: a PING this often, the connection given up when unanswered for 10 s.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// Where the control plane's trust anchors come from (`XDS_ROOT_CA`, `CA_ROOT_CA`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCa {
    /// A PEM file, read again at every connect (so a rotated root is picked up).
    File(PathBuf),
    /// The operating system's roots.
    System,
    /// PEM text given inline.
    Pem(String),
}

impl RootCa {
    /// ztunnel's reading of the variable: an existing path is a file, `SYSTEM` the system
    /// roots, anything else PEM text (refused at connect when it holds no certificate, rather
    /// than silently trusting nothing).
    pub fn from_setting(value: &str) -> Self {
        if std::path::Path::new(value).exists() {
            Self::File(PathBuf::from(value))
        } else if value == "SYSTEM" {
            Self::System
        } else {
            Self::Pem(value.to_owned())
        }
    }

    fn store(&self) -> Result<RootCertStore, ControlError> {
        let mut store = RootCertStore::empty();
        let (what, pem) = match self {
            Self::System => {
                let found = rustls_native_certs::load_native_certs();
                for c in found.certs {
                    let _ = store.add(c);
                }
                if store.is_empty() {
                    return Err(ControlError::Roots("no system root certificates".into()));
                }
                return Ok(store);
            }
            Self::File(p) => (
                p.display().to_string(),
                std::fs::read(p).map_err(|e| {
                    ControlError::Roots(format!("{}: cannot read: {e}", p.display()))
                })?,
            ),
            Self::Pem(text) => ("inline PEM".to_owned(), text.as_bytes().to_vec()),
        };
        for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
            let cert: CertificateDer<'static> =
                cert.map_err(|e| ControlError::Roots(format!("{what}: {e}")))?;
            store
                .add(cert)
                .map_err(|e| ControlError::Roots(format!("{what}: {e}")))?;
        }
        if store.is_empty() {
            return Err(ControlError::Roots(format!(
                "{what}: no certificate (a root CA setting is a PEM file, SYSTEM, or PEM text)"
            )));
        }
        Ok(store)
    }
}

/// Where the bearer token comes from (`AUTH_TOKEN`, or the projected token's default path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// No token: neither `authorization` nor `clusterid` is sent (as ztunnel does).
    None,
    /// A file, read for every call (projected tokens are rotated in place).
    File(PathBuf),
    /// A fixed token.
    Static(String),
}

impl Token {
    /// The token now, or why it cannot be had.
    pub fn read(&self) -> Result<Option<String>, ControlError> {
        match self {
            Self::None => Ok(None),
            Self::Static(t) => Ok(Some(t.clone())),
            Self::File(p) => {
                let t = std::fs::read_to_string(p).map_err(|e| {
                    ControlError::Token(format!("{}: cannot read: {e}", p.display()))
                })?;
                // A trailing newline (an editor's) is not part of a JWT.
                let t = t.trim_end_matches(['\n', '\r']).to_owned();
                if t.is_empty() {
                    return Err(ControlError::Token(format!("{}: empty", p.display())));
                }
                Ok(Some(t))
            }
        }
    }
}

/// A control-plane endpoint and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    /// `https://host:port`.
    pub address: Uri,
    /// Trust anchors for its certificate.
    pub root_ca: RootCa,
    /// A second name its certificate may be issued for (`ALT_XDS_HOSTNAME`, `ALT_CA_HOSTNAME`):
    /// tried when the URI's host does not match. The SNI is still the URI's host.
    pub alt_hostname: Option<String>,
    /// The bearer token.
    pub token: Token,
    /// `clusterid` (sent with the token).
    pub cluster_id: String,
    /// Extra headers on every call (`XDS_HEADER_*`, `CA_HEADER_*`).
    pub headers: Vec<(String, String)>,
}

/// Why the control plane could not be reached or spoken to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The address is not `https://host[:port]`.
    #[error("control plane address {0}")]
    Address(String),
    /// The root CA setting is unusable.
    #[error("control plane root CA: {0}")]
    Roots(String),
    /// The token is unusable.
    #[error("control plane token: {0}")]
    Token(String),
    /// An extra header is not a valid gRPC metadata entry.
    #[error("header {0}")]
    Header(String),
    /// Connecting failed.
    #[error("connecting to {address}: {message}")]
    Connect {
        /// The address.
        address: String,
        /// Why.
        message: String,
    },
}

impl ControlPlane {
    /// The host and port to dial, checked: `https` only (the control plane is always TLS).
    fn host_port(&self) -> Result<(String, u16), ControlError> {
        let a = &self.address;
        if a.scheme_str() != Some("https") {
            return Err(ControlError::Address(format!(
                "{a}: only https:// is supported (istiod serves gRPC over TLS on 15012)"
            )));
        }
        let host = a
            .host()
            .ok_or_else(|| ControlError::Address(format!("{a}: no host")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok((host, a.port_u16().unwrap_or(443)))
    }

    /// A gRPC channel to it, connected now (so a wrong address or certificate is reported
    /// here, not on the first call).
    pub async fn connect(&self) -> Result<Channel, ControlError> {
        let (host, port) = self.host_port()?;
        let tls = Arc::new(self.tls_config()?);
        let server_name = ServerName::try_from(host.clone())
            .map_err(|e| ControlError::Address(format!("{}: {e}", self.address)))?;
        let address = self.address.to_string();
        // The channel's own URI only names the authority; TLS is done by the connector.
        let endpoint = Endpoint::from_shared(format!("http://{}", authority(&host, port)))
            .map_err(|e| ControlError::Address(format!("{address}: {e}")))?
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let connector = tower::service_fn(move |_: Uri| {
            let (tls, server_name, host) = (tls.clone(), server_name.clone(), host.clone());
            async move {
                let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
                    .await
                    .map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                    })??;
                let _ = tcp.set_nodelay(true);
                let tls = tokio_rustls::TlsConnector::from(tls)
                    .connect(server_name, tcp)
                    .await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        });
        endpoint
            .connect_with_connector(connector)
            .await
            .map_err(|e| ControlError::Connect {
                address,
                message: error_chain(&e),
            })
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig, ControlError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let roots = Arc::new(self.root_ca.store()?);
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| ControlError::Roots(e.to_string()))?;
        let alt = match &self.alt_hostname {
            Some(h) => Some(
                ServerName::try_from(h.clone())
                    .map_err(|e| ControlError::Address(format!("alternative hostname {h}: {e}")))?,
            ),
            None => None,
        };
        let verifier = Arc::new(AltNameVerifier { inner: webpki, alt });
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| ControlError::Roots(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }

    /// The metadata every call carries: token, cluster id, extra headers.
    pub fn metadata(&self) -> Result<MetadataMap, ControlError> {
        let mut m = MetadataMap::new();
        if let Some(token) = self.token.read()? {
            let v = AsciiMetadataValue::try_from(format!("Bearer {token}"))
                .map_err(|_| ControlError::Token("not valid in a header".into()))?;
            m.insert("authorization", v);
            let c = AsciiMetadataValue::try_from(self.cluster_id.as_str())
                .map_err(|_| ControlError::Header(format!("clusterid {:?}", self.cluster_id)))?;
            m.insert("clusterid", c);
        }
        for (k, v) in &self.headers {
            let key = AsciiMetadataKey::from_bytes(k.as_bytes())
                .map_err(|_| ControlError::Header(format!("{k:?}: not a header name")))?;
            let value = AsciiMetadataValue::try_from(v.as_str())
                .map_err(|_| ControlError::Header(format!("{k}: {v:?} is not a header value")))?;
            m.insert(key, value);
        }
        Ok(m)
    }
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// An error and its causes, `a: b: c`, for logs and status.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cause = c.source();
    }
    s
}

/// WebPKI verification by the URI's host, then by the alternative hostname when the
/// certificate is not valid for the first.
#[derive(Debug)]
struct AltNameVerifier {
    inner: Arc<WebPkiServerVerifier>,
    alt: Option<ServerName<'static>>,
}

impl ServerCertVerifier for AltNameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let first = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match (&first, &self.alt) {
            (
                Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)),
                Some(alt),
            )
            | (
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForNameContext { .. },
                )),
                Some(alt),
            ) => self
                .inner
                .verify_server_cert(end_entity, intermediates, alt, ocsp_response, now),
            _ => first,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
