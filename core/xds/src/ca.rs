//! The Istio CA client: `IstioCertificateService/CreateCertificate` with a fresh ECDSA P-256
//! key and CSR per request. What comes back is checked before it is served: the leaf's SPIFFE
//! id must be the one asked for, and the chain must verify up to a root of the configured
//! bundle. It is a [`CredentialSource`], so renewal at half-life, backoff on failure and
//! keeping the old certificate meanwhile come from [`ambit_identity::CredentialManager`].

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use ambit_identity::pki_types::CertificateDer;
use ambit_identity::{
    ChainVerifier, CredentialError, CredentialSource, Credentials, SpiffeId, Svid, TrustBundle,
    TrustDomain, Usage,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::Mutex;
use tonic::transport::Channel;

use crate::control::{ControlPlane, RootCa};
use crate::pb::istio::v1::auth::{
    IstioCertificateRequest, istio_certificate_service_client::IstioCertificateServiceClient,
};

/// The metadata key istiod reads to issue for another identity than the caller's token.
const IMPERSONATED_IDENTITY: &str = "ImpersonatedIdentity";

/// Why a certificate could not be had from the CA.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CaClientError {
    /// The CA could not be reached, or refused.
    #[error("Istio CA: {0}")]
    Unavailable(String),
    /// The CA answered with something that must not be served.
    #[error("Istio CA answered for {requested}: {problem}")]
    BadResponse {
        /// The identity asked for.
        requested: SpiffeId,
        /// What is wrong.
        problem: String,
    },
}

/// A [`CredentialSource`] backed by the Istio CA.
pub struct IstioCaClient {
    control: ControlPlane,
    trust_domain: TrustDomain,
    ttl: Duration,
    impersonate: bool,
    channel: Mutex<Option<Channel>>,
}

impl std::fmt::Debug for IstioCaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IstioCaClient")
            .field("address", &self.control.address)
            .field("trust_domain", &self.trust_domain)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl IstioCaClient {
    /// A client of the CA at `control`, asking for `ttl` certificates (`SECRET_TTL`). The
    /// bundle peers are verified against is `control`'s root CA setting, for `trust_domain`.
    /// With `impersonate`, each request names the identity it is for
    /// (`ImpersonatedIdentity`), as a node proxy asking on behalf of its pods does.
    pub fn new(
        control: ControlPlane,
        trust_domain: TrustDomain,
        ttl: Duration,
        impersonate: bool,
    ) -> Self {
        Self {
            control,
            trust_domain,
            ttl,
            impersonate,
            channel: Mutex::new(None),
        }
    }

    /// The trust bundle: the CA root setting's certificates, for the node's trust domain.
    fn bundle(&self) -> Result<TrustBundle, CaClientError> {
        let pem = match &self.control.root_ca {
            RootCa::File(p) => std::fs::read(p).map_err(|e| {
                CaClientError::Unavailable(format!("{}: cannot read: {e}", p.display()))
            })?,
            RootCa::Pem(t) => t.as_bytes().to_vec(),
            RootCa::System => {
                return Err(CaClientError::Unavailable(
                    "the CA root setting is SYSTEM, which cannot be a mesh trust bundle; give \
                     the mesh root (root-cert.pem)"
                        .into(),
                ));
            }
        };
        TrustBundle::from_pem(self.trust_domain.clone(), &pem)
            .map_err(|e| CaClientError::Unavailable(format!("CA root: {e}")))
    }

    async fn channel(&self) -> Result<Channel, CaClientError> {
        let mut slot = self.channel.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = self
            .control
            .connect()
            .await
            .map_err(|e| CaClientError::Unavailable(e.to_string()))?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Asks the CA for a certificate for `id`, and checks it.
    pub async fn create(&self, id: &SpiffeId) -> Result<Credentials, CaClientError> {
        let bundle = self.bundle()?;
        let (csr, key) = csr_for(id).map_err(CaClientError::Unavailable)?;
        let metadata = self.impersonate.then(|| prost_types::Struct {
            fields: [(
                IMPERSONATED_IDENTITY.to_owned(),
                prost_types::Value {
                    kind: Some(prost_types::value::Kind::StringValue(id.to_string())),
                },
            )]
            .into_iter()
            .collect(),
        });
        let mut request = tonic::Request::new(IstioCertificateRequest {
            csr,
            validity_duration: i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX),
            metadata,
        });
        *request.metadata_mut() = self
            .control
            .metadata()
            .map_err(|e| CaClientError::Unavailable(e.to_string()))?;
        let channel = self.channel().await?;
        let response = match IstioCertificateServiceClient::new(channel)
            .create_certificate(request)
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) => {
                // A broken channel is rebuilt on the next call (the root may have rotated).
                if s.code() == tonic::Code::Unavailable || s.code() == tonic::Code::Unknown {
                    *self.channel.lock().await = None;
                }
                return Err(CaClientError::Unavailable(format!(
                    "{:?}: {}",
                    s.code(),
                    s.message()
                )));
            }
        };
        checked(id, &response.cert_chain, key, bundle, SystemTime::now())
    }
}

impl CredentialSource for IstioCaClient {
    fn fetch(
        &self,
        id: &SpiffeId,
    ) -> Pin<Box<dyn Future<Output = Result<Credentials, CredentialError>> + Send + '_>> {
        let id = id.clone();
        Box::pin(async move {
            self.create(&id)
                .await
                .map_err(|e| CredentialError::Unavailable {
                    detail: e.to_string(),
                })
        })
    }
}

/// A new P-256 key and a CSR for `id`: empty subject, one URI SAN (the SPIFFE id).
pub fn csr_for(id: &SpiffeId) -> Result<(String, PrivateKeyDer<'static>), String> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("generating a key: {e}"))?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let uri =
        rcgen::string::Ia5String::try_from(id.to_string()).map_err(|e| format!("{id}: {e}"))?;
    params.subject_alt_names = vec![rcgen::SanType::URI(uri)];
    let csr = params
        .serialize_request(&key)
        .map_err(|e| format!("making the CSR: {e}"))?
        .pem()
        .map_err(|e| format!("making the CSR: {e}"))?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((csr, der))
}

/// The CA's answer made into credentials, if it is what was asked for: `cert_chain` is the
/// leaf, any intermediates, and the root last (each element PEM). The leaf must carry `id`
/// and verify to a root of `bundle`; the root the CA sent must be one of the bundle's.
pub fn checked(
    id: &SpiffeId,
    cert_chain: &[String],
    key: PrivateKeyDer<'static>,
    bundle: TrustBundle,
    now: SystemTime,
) -> Result<Credentials, CaClientError> {
    let bad = |problem: String| CaClientError::BadResponse {
        requested: id.clone(),
        problem,
    };
    if cert_chain.len() < 2 {
        return Err(bad(format!(
            "{} certificate(s); want the leaf and at least the root",
            cert_chain.len()
        )));
    }
    let mut chain = Vec::with_capacity(cert_chain.len());
    for (i, pem) in cert_chain.iter().enumerate() {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| bad(format!("cert_chain[{i}]: {e}")))?;
        if certs.is_empty() {
            return Err(bad(format!("cert_chain[{i}]: no certificate")));
        }
        chain.extend(certs);
    }
    let root = chain
        .last()
        .cloned()
        .ok_or_else(|| bad("empty chain".into()))?;
    let roots = bundle.roots(id.trust_domain_name());
    if !roots.contains(&root) {
        return Err(bad(
            "its root is not in the trust bundle (CA root setting)".into()
        ));
    }
    // The leaf and intermediates; the root is the bundle's.
    chain.pop();
    let got = ambit_identity::spiffe_id_of(&chain[0]).map_err(|e| bad(format!("leaf: {e}")))?;
    if &got != id {
        return Err(bad(format!("the certificate is for {got}")));
    }
    ChainVerifier::default()
        .verify(&bundle, &chain, Usage::ClientAuth, now)
        .map_err(|e| bad(format!("does not verify: {e}")))?;
    let svid = Svid::new(chain, key).map_err(|e| bad(e.to_string()))?;
    Ok(Credentials::new(svid, bundle))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use ambit_identity::{CertificateAuthority, SpiffeId, TrustDomain};

    use super::{CaClientError, checked};

    fn issue(ca: &CertificateAuthority, id: &SpiffeId) -> (Vec<String>, ambit_identity::Svid) {
        let svid = ca.issue(id, Duration::from_secs(3600)).expect("issue");
        (vec![svid.chain_pem(), ca.bundle().to_pem()], svid)
    }

    fn problem(r: Result<ambit_identity::Credentials, CaClientError>) -> String {
        match r {
            Err(CaClientError::BadResponse { problem, .. }) => problem,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn an_answer_is_served_only_for_the_identity_asked_under_a_trusted_root() {
        let td = TrustDomain::new("cluster.local").expect("td");
        let ca = CertificateAuthority::new(td.clone()).expect("ca");
        let web = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/web").expect("id");
        let now = SystemTime::now();
        let (chain, svid) = issue(&ca, &web);
        let ok = checked(&web, &chain, svid.key().clone_key(), ca.bundle(), now).expect("good");
        assert_eq!(ok.svid.id(), &web);

        // What `checked` says about `chain` (with `svid`'s key) for identity `id`.
        let refused = |id: &SpiffeId, chain: &[String], svid: &ambit_identity::Svid| {
            problem(checked(id, chain, svid.key().clone_key(), ca.bundle(), now))
        };

        // Another identity than asked for.
        let db = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/db").expect("id");
        let (chain, svid) = issue(&ca, &db);
        let p = refused(&web, &chain, &svid);
        assert!(
            p.contains("the certificate is for spiffe://cluster.local/ns/shop/sa/db"),
            "{p}"
        );

        // A root that is not the configured one (a rogue CA of the same name).
        let rogue = CertificateAuthority::new(td.clone()).expect("rogue");
        let (chain, svid) = issue(&rogue, &web);
        let p = refused(&web, &chain, &svid);
        assert!(p.contains("root is not in the trust bundle"), "{p}");

        // The configured root sent, but the leaf signed by another key.
        let (mut chain, svid) = issue(&rogue, &web);
        chain[1] = ca.bundle().to_pem();
        let p = refused(&web, &chain, &svid);
        assert!(p.contains("does not verify"), "{p}");

        // No root at all, or nothing.
        let (chain, svid) = issue(&ca, &web);
        let p = refused(&web, &chain[..1], &svid);
        assert!(p.contains("want the leaf and at least the root"), "{p}");
        let p = refused(&web, &["junk".into(), "junk".into()], &svid);
        assert!(p.contains("no certificate"), "{p}");

        // Another trust domain's identity, even from the trusted root's CA, is not ours.
        let other_td =
            CertificateAuthority::new(TrustDomain::new("corp.example").expect("td")).expect("ca");
        let foreign = SpiffeId::parse("spiffe://corp.example/ns/shop/sa/web").expect("id");
        let (chain, svid) = issue(&other_td, &foreign);
        let p = refused(&foreign, &chain, &svid);
        assert!(p.contains("root is not in the trust bundle"), "{p}");
    }

    #[test]
    fn a_csr_names_the_identity_in_one_uri_san_and_nothing_else() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/web").expect("id");
        let (csr, _) = super::csr_for(&id).expect("csr");
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(csr.as_bytes())
            .map(|d: rustls_pki_types::CertificateSigningRequestDer<'static>| d)
            .expect("PEM");
        let text = String::from_utf8_lossy(der.as_ref());
        assert!(text.contains("spiffe://cluster.local/ns/shop/sa/web"));
        assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    }
}
