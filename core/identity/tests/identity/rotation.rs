//! Renewal at half-life, driven by a manual clock: no sleeps.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ambit_identity::{
    CaSource, CertificateAuthority, Clock, CredentialError, CredentialManager, INITIAL_BACKOFF,
    ManualClock, PemFileSource, SpiffeId, TrustDomain,
};

const HOUR: Duration = Duration::from_secs(3600);

fn setup() -> (Arc<CertificateAuthority>, Arc<ManualClock>, SpiffeId) {
    let ca = CertificateAuthority::new(TrustDomain::new("td").expect("td")).expect("ca");
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let id = SpiffeId::parse("spiffe://td/ns/a/sa/b").expect("id");
    (Arc::new(ca), clock, id)
}

#[tokio::test]
async fn renews_at_half_life_not_before() {
    let (ca, clock, id) = setup();
    let mgr = CredentialManager::new(
        Arc::new(CaSource::new(ca, HOUR, clock.clone())),
        clock.clone(),
    );
    let rx = mgr.subscribe(&id).await.expect("first fetch");
    let first = rx.borrow().clone();
    assert_eq!(mgr.next_refresh(), Some(first.svid.refresh_at()));

    clock.advance(29 * 60 * Duration::from_secs(1));
    let report = mgr.refresh_due().await;
    assert!(report.renewed.is_empty(), "renewed too early: {report:?}");
    assert!(!rx.has_changed().expect("open"));

    clock.advance(Duration::from_secs(61));
    let report = mgr.refresh_due().await;
    assert_eq!(report.renewed, vec![id.clone()]);
    assert!(rx.has_changed().expect("open"));
    let second = rx.borrow().clone();
    assert_ne!(second.svid.leaf(), first.svid.leaf());
    // Issued at the (manual) renewal time; certificates carry whole seconds.
    let age = clock
        .now()
        .duration_since(second.svid.not_before())
        .expect("order");
    assert!(
        age < Duration::from_secs(1),
        "issued {age:?} before renewal"
    );
    assert!(second.svid.not_before() > first.svid.not_before());
}

#[tokio::test]
async fn background_runner_renews_when_clock_passes_half_life() {
    let (ca, clock, id) = setup();
    let mgr = CredentialManager::new(
        Arc::new(CaSource::new(ca, HOUR, clock.clone())),
        clock.clone(),
    );
    let mut rx = mgr.subscribe(&id).await.expect("first fetch");
    let first_leaf = rx.borrow_and_update().svid.leaf().clone();
    let runner = tokio::spawn(mgr.clone().run());

    clock.advance(31 * 60 * Duration::from_secs(1));
    rx.changed().await.expect("renewed");
    assert_ne!(*rx.borrow_and_update().svid.leaf(), first_leaf);

    // And again at the next half-life.
    let second_leaf = rx.borrow().svid.leaf().clone();
    clock.advance(31 * 60 * Duration::from_secs(1));
    rx.changed().await.expect("renewed again");
    assert_ne!(*rx.borrow().svid.leaf(), second_leaf);
    runner.abort();
}

#[tokio::test]
async fn pem_files_are_watched_and_failures_back_off_keeping_old_credentials() {
    let (ca, clock, id) = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let (chain, key, bundle) = (
        dir.path().join("cert-chain.pem"),
        dir.path().join("key.pem"),
        dir.path().join("root-cert.pem"),
    );
    let write = |svid: &ambit_identity::Svid| {
        std::fs::write(&chain, svid.chain_pem()).expect("write");
        std::fs::write(&key, svid.key_pem()).expect("write");
    };
    write(&ca.issue(&id, HOUR).expect("issue"));
    std::fs::write(&bundle, ca.bundle().to_pem()).expect("write");

    let source =
        PemFileSource::new(&chain, &key, &bundle).with_poll_interval(Duration::from_secs(5));
    let mgr = CredentialManager::new(Arc::new(source), clock.clone());
    let mut rx = mgr.subscribe(&id).await.expect("load");
    let first = rx.borrow_and_update().clone();

    // Unchanged files: polled, nothing published.
    clock.advance(Duration::from_secs(5));
    let report = mgr.refresh_due().await;
    assert_eq!(report.unchanged, vec![id.clone()]);
    assert!(!rx.has_changed().expect("open"));

    // Rotated by another process: picked up at the next poll.
    let rotated = ca.issue(&id, HOUR).expect("issue");
    write(&rotated);
    clock.advance(Duration::from_secs(5));
    assert_eq!(mgr.refresh_due().await.renewed, vec![id.clone()]);
    assert_eq!(rx.borrow_and_update().svid, rotated);

    // Broken file: the error names the file, the old credentials stay, retry backs off.
    std::fs::write(&chain, "garbage").expect("write");
    clock.advance(Duration::from_secs(5));
    let report = mgr.refresh_due().await;
    assert_eq!(report.failed.len(), 1);
    let err = &report.failed[0].1;
    assert!(
        matches!(err, CredentialError::File { path, .. } if *path == chain),
        "{err}"
    );
    assert!(err.to_string().contains("cert-chain.pem"), "{err}");
    assert_eq!(mgr.current(&id).expect("kept").svid, rotated);
    assert_eq!(mgr.next_refresh(), Some(clock.now() + INITIAL_BACKOFF));
    clock.advance(INITIAL_BACKOFF);
    let report = mgr.refresh_due().await;
    assert_eq!(report.failed.len(), 1);
    assert_eq!(mgr.next_refresh(), Some(clock.now() + 2 * INITIAL_BACKOFF));
    assert_ne!(first.svid, rotated);
}

#[tokio::test]
async fn pem_source_refuses_a_different_identity() {
    let (ca, clock, id) = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let other = SpiffeId::parse("spiffe://td/ns/other/sa/x").expect("id");
    let svid = ca.issue(&other, HOUR).expect("issue");
    std::fs::write(dir.path().join("c.pem"), svid.chain_pem()).expect("write");
    std::fs::write(dir.path().join("k.pem"), svid.key_pem()).expect("write");
    std::fs::write(dir.path().join("b.pem"), ca.bundle().to_pem()).expect("write");
    let source = PemFileSource::new(
        dir.path().join("c.pem"),
        dir.path().join("k.pem"),
        dir.path().join("b.pem"),
    );
    let mgr = CredentialManager::new(Arc::new(source), clock);
    let err = mgr.subscribe(&id).await.expect_err("mismatch");
    assert!(
        matches!(err, CredentialError::IdentityMismatch { .. }),
        "{err}"
    );
}
