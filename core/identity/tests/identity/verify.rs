//! Chain verification against bundles: every refusal is specific.

use std::time::{Duration, SystemTime};

use ambit_identity::{
    CaOptions, CertificateAuthority, ChainVerifier, LeafRequest, SpiffeId, TrustBundle,
    TrustDomain, Usage, VerifyError,
};

const HOUR: Duration = Duration::from_secs(3600);

fn td(s: &str) -> TrustDomain {
    TrustDomain::new(s).expect("trust domain")
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).expect("spiffe id")
}

fn ca(domain: &str) -> CertificateAuthority {
    CertificateAuthority::new(td(domain)).expect("ca")
}

#[test]
fn accepts_valid_chain_for_both_usages() {
    let ca = ca("cluster.local");
    let me = id("spiffe://cluster.local/ns/a/sa/b");
    let svid = ca.issue(&me, HOUR).expect("issue");
    for usage in [Usage::ClientAuth, Usage::ServerAuth] {
        let got = ChainVerifier::default()
            .verify(&ca.bundle(), svid.chain(), usage, SystemTime::now())
            .expect("valid");
        assert_eq!(got, me);
    }
}

#[test]
fn accepts_chain_through_intermediate() {
    let ca = CertificateAuthority::with_options(CaOptions::new(td("td")).with_intermediate())
        .expect("ca");
    let me = id("spiffe://td/ns/a/sa/b");
    let svid = ca.issue(&me, HOUR).expect("issue");
    assert_eq!(svid.chain().len(), 2, "leaf + intermediate");
    let got = ChainVerifier::default()
        .verify(
            &ca.bundle(),
            svid.chain(),
            Usage::ServerAuth,
            SystemTime::now(),
        )
        .expect("valid");
    assert_eq!(got, me);
    // Without the intermediate, there is no path to the root.
    let err = ChainVerifier::default()
        .verify(
            &ca.bundle(),
            &svid.chain()[..1],
            Usage::ServerAuth,
            SystemTime::now(),
        )
        .expect_err("leaf alone");
    assert!(matches!(err, VerifyError::UntrustedRoot { .. }), "{err}");
}

#[test]
fn refuses_untrusted_root_of_same_domain() {
    let trusted = ca("td");
    let rogue = ca("td");
    let svid = rogue
        .issue(&id("spiffe://td/ns/a/sa/b"), HOUR)
        .expect("issue");
    let err = ChainVerifier::default()
        .verify(
            &trusted.bundle(),
            svid.chain(),
            Usage::ClientAuth,
            SystemTime::now(),
        )
        .expect_err("rogue root");
    assert!(matches!(err, VerifyError::UntrustedRoot { .. }), "{err}");
    assert!(
        err.to_string().contains("not signed by a trusted root"),
        "{err}"
    );
}

#[test]
fn refuses_rogue_ca_that_copies_the_trusted_name() {
    let trusted = ca("td");
    let files = trusted.to_files().expect("files");
    // Same root certificate file (so the same issuer name), but a different signing key.
    let rogue_key = CertificateAuthority::new(td("td"))
        .expect("ca")
        .to_files()
        .expect("f")
        .ca_key;
    let mut rogue_files = files.clone();
    rogue_files.ca_key = rogue_key;
    let rogue = CertificateAuthority::from_files(&rogue_files, None).expect("load");
    let svid = rogue
        .issue(&id("spiffe://td/ns/a/sa/b"), HOUR)
        .expect("issue");
    let err = ChainVerifier::default()
        .verify(
            &trusted.bundle(),
            svid.chain(),
            Usage::ClientAuth,
            SystemTime::now(),
        )
        .expect_err("forged");
    assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");
}

#[test]
fn refuses_foreign_trust_domain() {
    let home = ca("home.local");
    let other = ca("other.local");
    let svid = other
        .issue(&id("spiffe://other.local/ns/a/sa/b"), HOUR)
        .expect("issue");
    let err = ChainVerifier::default()
        .verify(
            &home.bundle(),
            svid.chain(),
            Usage::ClientAuth,
            SystemTime::now(),
        )
        .expect_err("foreign");
    match &err {
        VerifyError::ForeignTrustDomain {
            trust_domain,
            trusted,
            ..
        } => {
            assert_eq!(trust_domain.as_str(), "other.local");
            assert_eq!(trusted, "home.local");
        }
        other => panic!("wrong error {other}"),
    }
}

#[test]
fn federation_checks_each_domain_against_its_own_roots() {
    let a = ca("a.local");
    let b = ca("b.local");
    let bundle = TrustBundle::builder()
        .merge(&a.bundle())
        .merge(&b.bundle())
        .build();
    let from_b = b
        .issue(&id("spiffe://b.local/ns/x/sa/y"), HOUR)
        .expect("issue");
    assert!(
        ChainVerifier::default()
            .verify(
                &bundle,
                from_b.chain(),
                Usage::ClientAuth,
                SystemTime::now()
            )
            .is_ok()
    );
    // A's root must not vouch for an id in b.local.
    let forged = a
        .issue_leaf(&LeafRequest::new(vec!["spiffe://b.local/ns/x/sa/y".into()]))
        .expect("issue");
    let err = ChainVerifier::default()
        .verify(&bundle, &forged.chain, Usage::ClientAuth, SystemTime::now())
        .expect_err("cross-domain");
    assert!(matches!(err, VerifyError::UntrustedRoot { .. }), "{err}");
}

#[test]
fn refuses_expired_and_not_yet_valid() {
    let ca = ca("td");
    let me = id("spiffe://td/ns/a/sa/b");
    let now = SystemTime::now();
    let old = ca.issue_at(&me, now - 3 * HOUR, HOUR).expect("issue");
    let err = ChainVerifier::default()
        .verify(&ca.bundle(), old.chain(), Usage::ClientAuth, now)
        .expect_err("expired");
    assert!(matches!(err, VerifyError::Expired { .. }), "{err}");
    assert!(err.to_string().contains("expired at"), "{err}");

    let future = ca.issue_at(&me, now + 2 * HOUR, HOUR).expect("issue");
    let err = ChainVerifier::default()
        .verify(&ca.bundle(), future.chain(), Usage::ServerAuth, now)
        .expect_err("not yet valid");
    assert!(matches!(err, VerifyError::NotYetValid { .. }), "{err}");
    assert!(err.to_string().contains("check the clocks"), "{err}");
}

#[test]
fn refuses_missing_multiple_and_invalid_spiffe_sans() {
    let ca = ca("td");
    let v = ChainVerifier::default();
    let now = SystemTime::now();
    let check = |uris: Vec<&str>| {
        let mut req = LeafRequest::new(uris.into_iter().map(String::from).collect());
        req.dns_names = vec!["example.com".into()];
        let cert = ca.issue_leaf(&req).expect("issue");
        v.verify(&ca.bundle(), &cert.chain, Usage::ClientAuth, now)
            .expect_err("must refuse")
    };
    assert_eq!(check(vec![]), VerifyError::NoSpiffeId);
    assert_eq!(
        check(vec!["https://example.com/x"]),
        VerifyError::NoSpiffeId
    );
    assert_eq!(
        check(vec!["spiffe://td/ns/a/sa/b", "spiffe://td/ns/c/sa/d"]),
        VerifyError::MultipleSpiffeIds { count: 2 }
    );
    assert!(matches!(
        check(vec!["spiffe://TD/ns/a"]),
        VerifyError::InvalidSpiffeId { .. }
    ));
    // A non-SPIFFE URI beside the SPIFFE one is ignored.
    let cert = ca
        .issue_leaf(&LeafRequest::new(vec![
            "https://example.com".into(),
            "spiffe://td/ns/a/sa/b".into(),
        ]))
        .expect("issue");
    assert_eq!(
        v.verify(&ca.bundle(), &cert.chain, Usage::ClientAuth, now)
            .expect("ok"),
        id("spiffe://td/ns/a/sa/b")
    );
}

#[test]
fn refuses_wrong_extended_key_usage() {
    let ca = ca("td");
    let mut req = LeafRequest::new(vec!["spiffe://td/ns/a/sa/b".into()]);
    req.server_auth = false;
    let client_only = ca.issue_leaf(&req).expect("issue");
    let v = ChainVerifier::default();
    assert!(
        v.verify(
            &ca.bundle(),
            &client_only.chain,
            Usage::ClientAuth,
            SystemTime::now()
        )
        .is_ok()
    );
    let err = v
        .verify(
            &ca.bundle(),
            &client_only.chain,
            Usage::ServerAuth,
            SystemTime::now(),
        )
        .expect_err("server auth missing");
    assert!(
        matches!(
            err,
            VerifyError::WrongUsage {
                usage: Usage::ServerAuth,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn refuses_empty_and_garbage_chains() {
    let ca = ca("td");
    let v = ChainVerifier::default();
    assert_eq!(
        v.verify(&ca.bundle(), &[], Usage::ClientAuth, SystemTime::now()),
        Err(VerifyError::EmptyChain)
    );
    let garbage = ambit_identity::pki_types::CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01]);
    let err = v
        .verify(
            &ca.bundle(),
            &[garbage],
            Usage::ClientAuth,
            SystemTime::now(),
        )
        .expect_err("garbage");
    assert!(matches!(err, VerifyError::Malformed { .. }), "{err}");
}
