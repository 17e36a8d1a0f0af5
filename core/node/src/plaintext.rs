//! Inbound plaintext (15006): connections redirected to a local workload that did not come
//! over HBONE. There is no peer identity, so policies that require one (STRICT) deny them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use ambit_authz::Connection;
use ambit_proxy::labels_for;
use ambit_telemetry::{Reporter, ResponseFlag};
use tokio::net::{TcpListener, TcpStream};

use crate::Node;
use crate::record::ConnLog;
use crate::socket::{Scope, accept_loop, original_dst, reset};

/// Size band (bytes, debug build) of one captured inbound connection's future (only the netns
/// test runs it, so the band is wider than the measured ones).
const PLAINTEXT_BAND: (usize, usize) = (1_500, 6_000);

/// Accepts redirected plaintext inbound connections (15006): no identity, so STRICT policies
/// deny them.
pub(crate) async fn serve(node: Arc<Node>, listener: TcpListener, scope: Scope) {
    accept_loop(
        node,
        listener,
        "captured inbound",
        PLAINTEXT_BAND,
        scope,
        |n, s, peer| async move {
            let dst = original_dst(&s)?;
            inbound_plaintext(&n, s, peer, dst).await;
            Ok(())
        },
    )
    .await;
}

async fn inbound_plaintext(node: &Arc<Node>, app: TcpStream, peer: SocketAddr, dst: SocketAddr) {
    let state = node.state.load_full();
    let mut log = ConnLog::new("inbound", peer);
    log.dst_addr = Some(dst);
    let Some(w) = state
        .workload_by_addr(&node.config.network, dst.ip())
        .filter(|w| w.node == node.config.node)
        .cloned()
    else {
        log.error = Some(format!("no local workload has address {}", dst.ip()));
        return node.access_log(&log);
    };
    log.dst = Some(w.clone());
    let mut labels = labels_for(Reporter::Destination, None, Some(&w), None);
    let conn = Connection {
        source_id: None,
        source_ip: peer.ip(),
        destination_ip: dst.ip(),
        destination_port: dst.port(),
    };
    let d = state.applicable_policies(&w).evaluate(&conn);
    node.report_dry_run(&d, &w, &peer.to_string());
    if !d.allowed {
        node.count_failure(&mut labels, ResponseFlag::Deny);
        log.error = Some(d.to_string());
        return node.access_log(&log);
    }
    let connecting = node.connect_local(peer.ip(), dst, false);
    let Ok(Ok(up)) = tokio::time::timeout(node.config.connect_timeout, connecting).await else {
        node.count_failure(&mut labels, ResponseFlag::Connect);
        log.error = Some(format!("cannot connect to {dst}"));
        return node.access_log(&log);
    };
    let (registration, mut revoked) = node.connections.register(&conn, &w.uid);
    // a = the source's connection: what comes from it is received.
    log.count(node.metrics.tcp(&labels), false);
    let start = Instant::now();
    let (mut app, mut up) = (app, up);
    let result = tokio::select! {
        r = ambit_hbone::copy_bidirectional_metered(&mut app, &mut up, &log) => r.map_err(|e| e.to_string()),
        reason = &mut revoked => Err(reason.unwrap_or_else(|_| "closed".into())),
    };
    if result.is_err() {
        reset(&app);
        reset(&up);
    }
    drop(registration);
    let err = result.err();
    log.close(err.is_some());
    log.duration = start.elapsed();
    log.error = err;
    node.access_log(&log);
}
