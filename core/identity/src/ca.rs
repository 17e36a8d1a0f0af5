//! A built-in certificate authority for development, demos, tests and standalone use.
//!
//! It issues Istio-shaped X.509-SVIDs: ECDSA P-256 keys, an empty subject, one critical
//! `spiffe://` URI SAN, EKU serverAuth + clientAuth. Files use Istio's plugged-CA names
//! (`ca-cert.pem`, `ca-key.pem`, `cert-chain.pem`, `root-cert.pem`).

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::bundle::TrustBundle;
use crate::spiffe::{SpiffeId, TrustDomain};
use crate::svid::{Credentials, Svid};
use crate::x509::CertificateInfo;

/// Lifetime of a root made by [`CertificateAuthority::new`]: ten years.
pub const DEFAULT_ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Lifetime of an intermediate made by [`CaOptions`]: one year.
pub const DEFAULT_INTERMEDIATE_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Lifetime of workload certificates, as Istio requests them: 24 hours.
pub const DEFAULT_WORKLOAD_TTL: Duration = Duration::from_secs(24 * 3600);

/// A CA that signs workload certificates for one trust domain.
pub struct CertificateAuthority {
    trust_domain: TrustDomain,
    root: CertificateDer<'static>,
    /// The signing certificate followed by any certificates up to (excluding) the root.
    signing_chain: Vec<CertificateDer<'static>>,
    signer: Issuer<'static, KeyPair>,
}

/// How to build a new CA.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CaOptions {
    /// The trust domain it issues for.
    pub trust_domain: TrustDomain,
    /// Lifetime of the self-signed root.
    pub root_ttl: Duration,
    /// If set, workload certificates are signed by an intermediate of this lifetime.
    pub intermediate_ttl: Option<Duration>,
    /// Start of validity of the CA certificates.
    pub not_before: SystemTime,
}

/// The PEM files that persist a CA, named as Istio names plugged-in CA files.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CaFiles {
    /// `ca-cert.pem`: the signing certificate.
    pub ca_cert: String,
    /// `ca-key.pem`: the signing key (PKCS#8).
    pub ca_key: String,
    /// `cert-chain.pem`: the signing certificate up to and including the root.
    pub cert_chain: String,
    /// `root-cert.pem`: the root.
    pub root_cert: String,
}

impl CaFiles {
    /// The file names, in the order of the fields: Istio's names for a plugged-in CA.
    pub const NAMES: [&'static str; 4] = [
        "ca-cert.pem",
        "ca-key.pem",
        "cert-chain.pem",
        "root-cert.pem",
    ];

    /// Reads the four files from `dir` (as [`CaFiles::write_dir`] or `ambitctl ca init`
    /// wrote them, or as Istio's `cacerts` secret holds them).
    pub fn read_dir(dir: &Path) -> Result<Self, CaError> {
        let read = |name: &'static str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|e| CaError::Io {
                path: path.clone(),
                action: "cannot read",
                detail: e.to_string(),
            })
        };
        Ok(Self {
            ca_cert: read(Self::NAMES[0])?,
            ca_key: read(Self::NAMES[1])?,
            cert_chain: read(Self::NAMES[2])?,
            root_cert: read(Self::NAMES[3])?,
        })
    }

    /// Writes the four files into `dir` (created if missing), the key readable by its owner
    /// only. Without `overwrite`, refuses to replace any existing file, writing none.
    pub fn write_dir(&self, dir: &Path, overwrite: bool) -> Result<(), CaError> {
        let io = |path: &Path, action, e: std::io::Error| CaError::Io {
            path: path.to_owned(),
            action,
            detail: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, "cannot create", e))?;
        let files = [
            (Self::NAMES[0], &self.ca_cert),
            (Self::NAMES[1], &self.ca_key),
            (Self::NAMES[2], &self.cert_chain),
            (Self::NAMES[3], &self.root_cert),
        ];
        if !overwrite {
            for (name, _) in files {
                let path = dir.join(name);
                if path.exists() {
                    return Err(CaError::Exists { path });
                }
            }
        }
        for (name, content) in files {
            let path = dir.join(name);
            write_private(&path, content, name.ends_with("key.pem"))
                .map_err(|e| io(&path, "cannot write", e))?;
        }
        Ok(())
    }
}

/// Writes `content` to `path`, mode 0600 when `secret` (0644 otherwise) on Unix.
pub(crate) fn write_private(path: &Path, content: &str, secret: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if secret { 0o600 } else { 0o644 });
    }
    let _ = secret;
    opts.open(path)?.write_all(content.as_bytes())
}

/// A certificate request with full control, for tools and negative tests: certificates
/// without SPIFFE ids, with several, or without the usual key usages.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LeafRequest {
    /// URI SANs, verbatim (not validated).
    pub uris: Vec<String>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// Lifetime.
    pub ttl: Duration,
    /// Include EKU serverAuth.
    pub server_auth: bool,
    /// Include EKU clientAuth.
    pub client_auth: bool,
}

/// A certificate chain and key issued from a [`LeafRequest`].
#[derive(Debug)]
#[non_exhaustive]
pub struct IssuedCertificate {
    /// The chain, leaf first (the root is not included).
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

/// Why the CA could not be built, loaded or could not issue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// Certificate generation or signing failed.
    #[error("certificate generation failed: {detail}")]
    Generate {
        /// What the generator said.
        detail: String,
    },
    /// A CA file could not be parsed.
    #[error("{file}: {detail}")]
    Load {
        /// Which file (by its Istio name).
        file: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A CA file could not be read or written.
    #[error("{}: {action}: {detail}", path.display())]
    Io {
        /// The file (or directory).
        path: std::path::PathBuf,
        /// What was tried: `cannot read`, `cannot write`, `cannot create`.
        action: &'static str,
        /// The operating system's reason.
        detail: String,
    },
    /// A CA file is already there, and replacing it was not asked for.
    #[error("{}: already exists", path.display())]
    Exists {
        /// The file.
        path: std::path::PathBuf,
    },
    /// The requested id belongs to another trust domain.
    #[error("this CA issues for trust domain \"{ca}\", not for {id}")]
    WrongTrustDomain {
        /// The CA's trust domain.
        ca: TrustDomain,
        /// The id that was requested.
        id: SpiffeId,
    },
}

// === impl CaOptions ===

impl CaOptions {
    /// A root-only CA for `trust_domain`, valid from now for [`DEFAULT_ROOT_TTL`].
    pub fn new(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            root_ttl: DEFAULT_ROOT_TTL,
            intermediate_ttl: None,
            not_before: SystemTime::now(),
        }
    }

    /// Sign workloads with an intermediate of [`DEFAULT_INTERMEDIATE_TTL`].
    pub fn with_intermediate(mut self) -> Self {
        self.intermediate_ttl = Some(DEFAULT_INTERMEDIATE_TTL);
        self
    }
}

// === impl LeafRequest ===

impl LeafRequest {
    /// A request with the given URI SANs, both EKUs, valid from now for 24 hours.
    pub fn new(uris: Vec<String>) -> Self {
        Self {
            uris,
            dns_names: Vec::new(),
            not_before: SystemTime::now(),
            ttl: DEFAULT_WORKLOAD_TTL,
            server_auth: true,
            client_auth: true,
        }
    }
}

// === impl CertificateAuthority ===

impl CertificateAuthority {
    /// A new root-only CA for `trust_domain`.
    pub fn new(trust_domain: TrustDomain) -> Result<Self, CaError> {
        Self::with_options(CaOptions::new(trust_domain))
    }

    /// A new CA as described by `opts`.
    pub fn with_options(opts: CaOptions) -> Result<Self, CaError> {
        let root_key = new_key()?;
        let root_params = ca_params(
            &opts.trust_domain,
            &format!("ambit root CA {}", key_tag(&root_key)),
            opts.not_before,
            opts.root_ttl,
            opts.intermediate_ttl.map(|_| 1),
        )?;
        let root = root_params.self_signed(&root_key).map_err(gen_err)?;
        let root_der = root.der().clone();
        let root_issuer = Issuer::new(root_params, root_key);
        match opts.intermediate_ttl {
            None => Ok(Self {
                trust_domain: opts.trust_domain,
                signing_chain: vec![root_der.clone()],
                root: root_der,
                signer: root_issuer,
            }),
            Some(ttl) => {
                let key = new_key()?;
                let params = ca_params(
                    &opts.trust_domain,
                    &format!("ambit intermediate CA {}", key_tag(&key)),
                    opts.not_before,
                    ttl,
                    Some(0),
                )?;
                let cert = params.signed_by(&key, &root_issuer).map_err(gen_err)?;
                Ok(Self {
                    trust_domain: opts.trust_domain,
                    signing_chain: vec![cert.der().clone()],
                    root: root_der,
                    signer: Issuer::new(params, key),
                })
            }
        }
    }

    /// Loads a CA from its PEM files. The trust domain is read from the signing certificate's
    /// `spiffe://<trust-domain>` URI SAN unless `trust_domain` is given.
    pub fn from_files(files: &CaFiles, trust_domain: Option<TrustDomain>) -> Result<Self, CaError> {
        let root = CertificateDer::from_pem_slice(files.root_cert.as_bytes()).map_err(|e| {
            CaError::Load {
                file: "root-cert.pem",
                detail: e.to_string(),
            }
        })?;
        let ca_cert = CertificateDer::from_pem_slice(files.ca_cert.as_bytes()).map_err(|e| {
            CaError::Load {
                file: "ca-cert.pem",
                detail: e.to_string(),
            }
        })?;
        let chain = CertificateDer::pem_slice_iter(files.cert_chain.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CaError::Load {
                file: "cert-chain.pem",
                detail: e.to_string(),
            })?;
        let key = KeyPair::from_pem(&files.ca_key).map_err(|e| CaError::Load {
            file: "ca-key.pem",
            detail: e.to_string(),
        })?;
        let trust_domain = match trust_domain {
            Some(td) => td,
            None => ca_trust_domain(&ca_cert)?,
        };
        let signer = Issuer::from_ca_cert_der(&ca_cert, key).map_err(|e| CaError::Load {
            file: "ca-cert.pem",
            detail: e.to_string(),
        })?;
        // The signing chain is cert-chain.pem without the root, or ca-cert.pem alone.
        let mut signing_chain: Vec<_> = chain.into_iter().filter(|c| *c != root).collect();
        if signing_chain.first() != Some(&ca_cert) {
            signing_chain.retain(|c| *c != ca_cert);
            signing_chain.insert(0, ca_cert);
        }
        Ok(Self {
            trust_domain,
            root,
            signing_chain,
            signer,
        })
    }

    /// The PEM files that persist this CA.
    pub fn to_files(&self) -> Result<CaFiles, CaError> {
        let pem_of =
            |c: &CertificateDer<'_>| pem::encode(&pem::Pem::new("CERTIFICATE", c.to_vec()));
        let mut chain: Vec<pem::Pem> = self
            .signing_chain
            .iter()
            .map(|c| pem::Pem::new("CERTIFICATE", c.to_vec()))
            .collect();
        if self.signing_chain.last() != Some(&self.root) {
            chain.push(pem::Pem::new("CERTIFICATE", self.root.to_vec()));
        }
        Ok(CaFiles {
            ca_cert: pem_of(&self.signing_chain[0]),
            ca_key: self.signer.key().serialize_pem(),
            cert_chain: pem::encode_many(&chain),
            root_cert: pem_of(&self.root),
        })
    }

    /// The trust domain this CA issues for.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The root certificate.
    pub fn root(&self) -> &CertificateDer<'static> {
        &self.root
    }

    /// A bundle trusting this CA's root for its trust domain.
    pub fn bundle(&self) -> TrustBundle {
        let mut b = TrustBundle::builder();
        // The root was produced or loaded by us; a failure here means it is not a certificate.
        if b.add_root(self.trust_domain.clone(), self.root.clone())
            .is_err()
        {
            return TrustBundle::default();
        }
        b.build()
    }

    /// Issues a workload SVID for `id`, valid from now for `ttl`.
    pub fn issue(&self, id: &SpiffeId, ttl: Duration) -> Result<Svid, CaError> {
        self.issue_at(id, SystemTime::now(), ttl)
    }

    /// Issues a workload SVID for `id`, valid from `not_before` for `ttl`.
    pub fn issue_at(
        &self,
        id: &SpiffeId,
        not_before: SystemTime,
        ttl: Duration,
    ) -> Result<Svid, CaError> {
        if id.trust_domain_name() != self.trust_domain.as_str() {
            return Err(CaError::WrongTrustDomain {
                ca: self.trust_domain.clone(),
                id: id.clone(),
            });
        }
        let mut req = LeafRequest::new(vec![id.to_string()]);
        req.not_before = not_before;
        req.ttl = ttl;
        let issued = self.issue_leaf(&req)?;
        Svid::new(issued.chain, issued.key).map_err(|e| CaError::Generate {
            detail: e.to_string(),
        })
    }

    /// Issues SVID and bundle for `id`, valid from now for `ttl`.
    pub fn credentials(&self, id: &SpiffeId, ttl: Duration) -> Result<Credentials, CaError> {
        Ok(Credentials::new(self.issue(id, ttl)?, self.bundle()))
    }

    /// Issues a certificate exactly as `req` says, without checking it is a valid SVID.
    pub fn issue_leaf(&self, req: &LeafRequest) -> Result<IssuedCertificate, CaError> {
        let key = new_key()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.not_before = req.not_before.into();
        params.not_after = (req.not_before + req.ttl).into();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        if req.server_auth {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if req.client_auth {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        for uri in &req.uris {
            params
                .subject_alt_names
                .push(SanType::URI(uri.clone().try_into().map_err(gen_err)?));
        }
        for dns in &req.dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName(dns.clone().try_into().map_err(gen_err)?));
        }
        if params.subject_alt_names.is_empty() {
            // An empty subject with no SAN would be an anonymous certificate; name it.
            params
                .distinguished_name
                .push(DnType::CommonName, "ambit test certificate without SAN");
        }
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.signer).map_err(gen_err)?;
        let mut chain = Vec::with_capacity(1 + self.signing_chain.len());
        chain.push(cert.der().clone());
        chain.extend(
            self.signing_chain
                .iter()
                .filter(|c| **c != self.root)
                .cloned(),
        );
        Ok(IssuedCertificate {
            chain,
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("trust_domain", &self.trust_domain)
            .field(
                "intermediates",
                &(self.signing_chain.len().saturating_sub(1)),
            )
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for CaFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaFiles").finish_non_exhaustive()
    }
}

// === helpers ===

fn new_key() -> Result<KeyPair, CaError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)
}

/// A short tag from the public key, so that two CAs of one trust domain have distinct names.
fn key_tag(key: &KeyPair) -> String {
    key.public_key_raw()
        .iter()
        .rev()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn gen_err(e: impl fmt::Display) -> CaError {
    CaError::Generate {
        detail: e.to_string(),
    }
}

fn ca_params(
    td: &TrustDomain,
    common_name: &str,
    not_before: SystemTime,
    ttl: Duration,
    path_len: Option<u8>,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, td.as_str());
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.not_before = not_before.into();
    params.not_after = (not_before + ttl).into();
    params.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.subject_alt_names = vec![SanType::URI(
        td.id().to_string().try_into().map_err(gen_err)?,
    )];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn ca_trust_domain(ca_cert: &CertificateDer<'_>) -> Result<TrustDomain, CaError> {
    let info = CertificateInfo::from_der(ca_cert).map_err(|e| CaError::Load {
        file: "ca-cert.pem",
        detail: e.to_string(),
    })?;
    info.spiffe_id()
        .map(|id| id.trust_domain())
        .map_err(|_| CaError::Load {
            file: "ca-cert.pem",
            detail: "no spiffe://<trust-domain> URI SAN; pass the trust domain explicitly".into(),
        })
}
