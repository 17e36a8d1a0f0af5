//! The built-in CA: persistence and the shape of what it issues.

use std::time::Duration;

use ambit_identity::{
    CaError, CaOptions, CertificateAuthority, CertificateInfo, ChainVerifier, SpiffeId, Svid,
    TrustDomain, Usage,
};

fn td(s: &str) -> TrustDomain {
    TrustDomain::new(s).expect("trust domain")
}

#[test]
fn files_round_trip_and_reloaded_ca_issues_trusted_certs() {
    for opts in [
        CaOptions::new(td("cluster.local")),
        CaOptions::new(td("cluster.local")).with_intermediate(),
    ] {
        let ca = CertificateAuthority::with_options(opts).expect("ca");
        let files = ca.to_files().expect("files");
        let loaded = CertificateAuthority::from_files(&files, None).expect("load");
        assert_eq!(loaded.trust_domain(), ca.trust_domain());
        assert_eq!(loaded.to_files().expect("files"), files);
        let id = SpiffeId::parse("spiffe://cluster.local/ns/x/sa/y").expect("id");
        let svid = loaded.issue(&id, Duration::from_secs(60)).expect("issue");
        // Trusted by the original CA's bundle: same root.
        ChainVerifier::default()
            .verify(
                &ca.bundle(),
                svid.chain(),
                Usage::ServerAuth,
                std::time::SystemTime::now(),
            )
            .expect("trusted");
    }
}

#[test]
fn load_errors_name_the_file() {
    let ca = CertificateAuthority::new(td("td")).expect("ca");
    let mut files = ca.to_files().expect("files");
    files.ca_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into();
    let err = CertificateAuthority::from_files(&files, None).expect_err("bad key");
    assert!(err.to_string().starts_with("ca-key.pem:"), "{err}");
    let mut files = ca.to_files().expect("files");
    files.root_cert = "nothing here".into();
    let err = CertificateAuthority::from_files(&files, None).expect_err("bad root");
    assert!(err.to_string().starts_with("root-cert.pem:"), "{err}");
}

#[test]
fn refuses_to_issue_for_another_trust_domain() {
    let ca = CertificateAuthority::new(td("td")).expect("ca");
    let other = SpiffeId::parse("spiffe://elsewhere/ns/x/sa/y").expect("id");
    assert!(matches!(
        ca.issue(&other, Duration::from_secs(60)),
        Err(CaError::WrongTrustDomain { .. })
    ));
}

#[test]
fn workload_certificates_are_istio_shaped_and_round_trip_pem() {
    let ca = CertificateAuthority::new(td("td")).expect("ca");
    let id = SpiffeId::parse("spiffe://td/ns/x/sa/y").expect("id");
    let svid = ca.issue(&id, Duration::from_secs(7200)).expect("issue");
    let info = CertificateInfo::from_der(svid.leaf()).expect("parse");
    assert_eq!(info.subject, "");
    assert_eq!(info.uri_sans, vec![id.to_string()]);
    assert!(!info.is_ca);
    assert_eq!(
        info.not_after
            .duration_since(info.not_before)
            .expect("order"),
        Duration::from_secs(7200)
    );
    assert_eq!(
        svid.refresh_at(),
        info.not_before + Duration::from_secs(3600)
    );
    let again = Svid::from_pem(svid.chain_pem().as_bytes(), svid.key_pem().as_bytes())
        .expect("pem round trip");
    assert_eq!(again, svid);
    assert_eq!(again.key().secret_der(), svid.key().secret_der());
}
