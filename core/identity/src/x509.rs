//! Reading X.509 certificates: SPIFFE URI SANs, validity window, names.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::spiffe::{SCHEME_PREFIX, SpiffeId};
use crate::verify::VerifyError;

/// What a certificate says about itself, for tools and logs (`ambitctl cert inspect`).
///
/// Nothing here has been verified; use [`ChainVerifier`](crate::ChainVerifier) for trust.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateInfo {
    /// Subject distinguished name in RFC 4514 form (empty for Istio-style workload certs).
    pub subject: String,
    /// Issuer distinguished name in RFC 4514 form.
    pub issuer: String,
    /// Serial number as colon-separated hex.
    pub serial: String,
    /// Start of the validity window.
    pub not_before: SystemTime,
    /// End of the validity window.
    pub not_after: SystemTime,
    /// Whether basic constraints mark it as a CA.
    pub is_ca: bool,
    /// Every URI subject alternative name, SPIFFE or not.
    pub uri_sans: Vec<String>,
    /// Every DNS subject alternative name.
    pub dns_sans: Vec<String>,
}

impl CertificateInfo {
    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, VerifyError> {
        let cert = parse(der)?;
        let mut uri_sans = Vec::new();
        let mut dns_sans = Vec::new();
        if let Some(san) = cert
            .subject_alternative_name()
            .map_err(|e| VerifyError::Malformed {
                detail: format!("subjectAltName extension: {e}"),
            })?
        {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(u) => uri_sans.push((*u).to_owned()),
                    GeneralName::DNSName(d) => dns_sans.push((*d).to_owned()),
                    _ => {}
                }
            }
        }
        let validity = cert.validity();
        Ok(Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: cert.raw_serial_as_string(),
            not_before: system_time(validity.not_before.timestamp()),
            not_after: system_time(validity.not_after.timestamp()),
            is_ca: cert.is_ca(),
            uri_sans,
            dns_sans,
        })
    }

    /// The certificate's one SPIFFE id (see [`spiffe_id_of`]).
    pub fn spiffe_id(&self) -> Result<SpiffeId, VerifyError> {
        single_spiffe_id(self.uri_sans.iter().map(String::as_str))
    }
}

/// Extracts the SPIFFE id of a DER certificate without verifying it.
///
/// An X.509-SVID carries exactly one `spiffe://` URI SAN; other URI SANs are ignored, as ztunnel
/// does. Zero or several SPIFFE URIs, or an invalid one, are errors.
pub fn spiffe_id_of(der: &[u8]) -> Result<SpiffeId, VerifyError> {
    let cert = parse(der)?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| VerifyError::Malformed {
            detail: format!("subjectAltName extension: {e}"),
        })?
        .ok_or(VerifyError::NoSpiffeId)?;
    single_spiffe_id(san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(u) => Some(*u),
        _ => None,
    }))
}

/// The validity window `(not_before, not_after)` of a DER certificate.
pub fn validity_of(der: &[u8]) -> Result<(SystemTime, SystemTime), VerifyError> {
    let cert = parse(der)?;
    let v = cert.validity();
    Ok((
        system_time(v.not_before.timestamp()),
        system_time(v.not_after.timestamp()),
    ))
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, VerifyError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| VerifyError::Malformed {
        detail: format!("not a DER X.509 certificate: {e}"),
    })?;
    if !rest.is_empty() {
        return Err(VerifyError::Malformed {
            detail: format!("{} trailing bytes after the certificate", rest.len()),
        });
    }
    Ok(cert)
}

fn single_spiffe_id<'a>(uris: impl Iterator<Item = &'a str>) -> Result<SpiffeId, VerifyError> {
    let mut found: Option<&str> = None;
    let mut count = 0usize;
    for uri in uris {
        // The scheme is matched case-insensitively here so that a mis-cased SPIFFE URI is
        // reported as invalid rather than silently ignored.
        // Compared as bytes: a URI SAN may hold non-ASCII text, and slicing the `str` at
        // a byte offset inside a character would panic.
        if uri
            .as_bytes()
            .get(..SCHEME_PREFIX.len())
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case(SCHEME_PREFIX.as_bytes()))
        {
            count += 1;
            found.get_or_insert(uri);
        }
    }
    match (found, count) {
        (None, _) => Err(VerifyError::NoSpiffeId),
        (Some(uri), 1) => SpiffeId::parse(uri).map_err(|source| VerifyError::InvalidSpiffeId {
            uri: uri.to_owned(),
            source,
        }),
        (Some(_), count) => Err(VerifyError::MultipleSpiffeIds { count }),
    }
}

fn system_time(unix_seconds: i64) -> SystemTime {
    if unix_seconds >= 0 {
        UNIX_EPOCH + Duration::from_secs(unix_seconds.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(unix_seconds.unsigned_abs())
    }
}

/// Formats a time as RFC 3339 UTC (`2026-11-26T03:32:23Z`) for messages and tools.
pub fn format_time(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{t}"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ca::{CertificateAuthority, LeafRequest};
    use crate::spiffe::TrustDomain;

    /// A URI SAN with a multi-byte character across the scheme's length used to panic
    /// (`str` sliced inside a character) before the chain was even verified: any TLS peer
    /// could crash the verifier. Found by the `x509_chain` fuzz target.
    #[test]
    fn non_ascii_uri_san_is_not_a_spiffe_id_and_does_not_panic() {
        assert!(matches!(
            single_spiffe_id(["spiffe:/\u{3dc}luster.local/ns/a/sa/b"].into_iter()),
            Err(VerifyError::NoSpiffeId)
        ));
        assert!(matches!(
            single_spiffe_id(["SPIFFE://\u{3dc}"].into_iter()),
            Err(VerifyError::InvalidSpiffeId { .. })
        ));

        // The same through a certificate: ASCII placeholder patched to U+03DC (2 bytes).
        let ca =
            CertificateAuthority::new(TrustDomain::new("cluster.local").expect("td")).expect("ca");
        let mut req = LeafRequest::new(vec!["spiffe:/ZZluster.local/ns/a/sa/b".into()]);
        req.ttl = Duration::from_secs(3600);
        let mut der = ca.issue_leaf(&req).expect("leaf").chain[0].to_vec();
        let at = der
            .windows(10)
            .position(|w| w == b"spiffe:/ZZ")
            .expect("URI in DER");
        der[at + 8..at + 10].copy_from_slice("\u{3dc}".as_bytes());
        assert!(matches!(spiffe_id_of(&der), Err(VerifyError::NoSpiffeId)));
        let info = CertificateInfo::from_der(&der).expect("parses");
        assert_eq!(info.uri_sans, ["spiffe:/\u{3dc}luster.local/ns/a/sa/b"]);
        assert!(matches!(info.spiffe_id(), Err(VerifyError::NoSpiffeId)));
    }
}
