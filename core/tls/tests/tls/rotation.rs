//! Rotation: new handshakes get the new certificate, live connections keep working.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ambit_identity::{CaSource, Clock, CredentialManager, ManualClock};
use ambit_tls::{Provider, TlsContext};
use tokio::io::AsyncWriteExt;

use crate::support::*;

const SERVER: &str = "spiffe://cluster.local/ns/default/sa/server";
const CLIENT: &str = "spiffe://cluster.local/ns/default/sa/client";

#[tokio::test]
async fn rotation_swaps_certificates_for_new_handshakes_only() {
    let ca = Arc::new(ca("cluster.local"));
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    // Validity is judged by the same manual clock on both sides.
    let ctx = TlsContext::new(Provider::default()).with_clock(clock.clone());
    let source = Arc::new(CaSource::new(ca.clone(), HOUR, clock.clone()));
    let manager = CredentialManager::new(source, clock.clone());
    let server_updates = manager.subscribe(&id(SERVER)).await.expect("server creds");
    let server_cell = ctx.credential_cell(&server_updates.borrow()).expect("cell");
    let follower = tokio::spawn(server_cell.clone().follow(server_updates.clone(), |e| {
        panic!("rotated credentials failed to load: {e}")
    }));
    let runner = tokio::spawn(manager.clone().run());

    let (addr, mut outcomes) = echo_server(server_config(&ctx, &server_cell), 3).await;
    let client_cell = cell(
        &ctx,
        &ca.credentials(&id(CLIENT), 24 * HOUR).expect("creds"),
    );
    let client_cfg = ctx
        .client_config(&client_cell, [id(SERVER)])
        .expect("config");

    let mut first = dial(client_cfg.clone(), addr)
        .await
        .expect("first handshake");
    let first_cert = first.get_ref().1.peer_certificates().expect("certs")[0].clone();
    server_outcome(&mut outcomes).await.expect("accepted");
    assert_eq!(read_line(&mut first).await.expect("greeting"), CLIENT);

    // Past half-life: the manager renews, the follower swaps the cell.
    let mut watch = server_updates.clone();
    watch.mark_unchanged();
    clock.advance(Duration::from_secs(31 * 60));
    tokio::time::timeout(STEP, watch.changed())
        .await
        .expect("renewed in time")
        .expect("open");
    let renewed_leaf = watch.borrow().svid.leaf().clone();
    tokio::time::timeout(STEP, async {
        while server_cell.certified_key().cert[0] != renewed_leaf {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("cell swapped in time");

    // The established connection is untouched and still carries data.
    first.write_all(b"still here\n").await.expect("write");
    assert_eq!(read_line(&mut first).await.expect("echo"), "still here");

    // A new handshake presents the renewed certificate.
    let mut second = dial(client_cfg.clone(), addr)
        .await
        .expect("second handshake");
    let second_cert = second.get_ref().1.peer_certificates().expect("certs")[0].clone();
    assert_ne!(first_cert, second_cert);
    assert_eq!(second_cert, renewed_leaf);
    server_outcome(&mut outcomes).await.expect("accepted");
    assert_eq!(read_line(&mut second).await.expect("greeting"), CLIENT);

    // Past the first certificate's expiry (by the manual clock, which the client's verifier
    // also uses) a new handshake still succeeds: it is served the current certificate.
    clock.advance(Duration::from_secs(40 * 60));
    tokio::time::timeout(STEP, watch.changed())
        .await
        .expect("renewed again")
        .expect("open");
    let third_leaf = watch.borrow().svid.leaf().clone();
    tokio::time::timeout(STEP, async {
        while server_cell.certified_key().cert[0] != third_leaf {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("cell swapped in time");
    assert!(
        expiry(&first_cert) < clock.now(),
        "the first certificate should have expired"
    );
    let mut third = dial(client_cfg, addr)
        .await
        .expect("handshake after expiry");
    assert_eq!(
        third.get_ref().1.peer_certificates().expect("certs")[0],
        third_leaf
    );
    server_outcome(&mut outcomes).await.expect("accepted");
    assert_eq!(read_line(&mut third).await.expect("greeting"), CLIENT);
    runner.abort();
    follower.abort();
}

fn expiry(der: &rustls_pki_types::CertificateDer<'_>) -> SystemTime {
    ambit_identity::validity_of(der).expect("validity").1
}
