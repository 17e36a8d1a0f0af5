//! Arbitrary DER as a peer's leaf certificate: SAN and validity extraction, then chain
//! verification against a fixed trust bundle (fixtures/, see fixtures/make_certs.py), with and
//! without the fixed intermediate, at a fixed time. No panic; a verified peer's id is the one
//! `spiffe_id_of` extracts, and `CertificateInfo` agrees with it.
#![no_main]

use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

use ambit_identity::pki_types::CertificateDer;
use ambit_identity::{
    CertificateInfo, ChainVerifier, TrustBundle, TrustDomain, Usage, spiffe_id_of, validity_of,
};
use libfuzzer_sys::fuzz_target;

/// 2030-01-01T00:00:00Z, inside the fixtures' validity (2025..2045).
const NOW: Duration = Duration::from_secs(1_893_456_000);

static BUNDLE: LazyLock<TrustBundle> = LazyLock::new(|| {
    let root = CertificateDer::from(&include_bytes!("../fixtures/root.der")[..]).into_owned();
    let td = TrustDomain::new("cluster.local").expect("td");
    TrustBundle::builder()
        .add_root(td, root)
        .expect("root")
        .build()
});
const INTERMEDIATE: &[u8] = include_bytes!("../fixtures/intermediate.der");

fuzz_target!(|der: &[u8]| {
    let id = spiffe_id_of(der);
    let _ = validity_of(der);
    if let Ok(info) = CertificateInfo::from_der(der) {
        assert_eq!(info.spiffe_id(), id);
    }
    let (leaf, intermediate) = (
        CertificateDer::from(der),
        CertificateDer::from(INTERMEDIATE),
    );
    let now = UNIX_EPOCH + NOW;
    let verifier = ChainVerifier::default();
    for (chain, usage) in [
        (vec![leaf.clone(), intermediate], Usage::ClientAuth),
        (vec![leaf], Usage::ServerAuth),
    ] {
        if let Ok(peer) = verifier.verify(&BUNDLE, &chain, usage, now) {
            assert_eq!(Ok(&peer), id.as_ref());
        }
    }
});
