//! CONNECT-UDP: datagrams per second and loss at fixed offered rates, HTTP/3 datagrams
//! against HTTP/2 capsules, through the bench's server to a UDP echo and back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ambit_hbone::{ConnectRequest, Responder, Transport, UdpTunnel};
use anyhow::{Result, bail};
use tokio::net::UdpSocket;

use super::{Env, dial};

/// One offered rate's outcome on one transport.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UdpFigures {
    pub(crate) transport: Transport,
    pub(crate) offered_per_s: u64,
    /// What the sender managed (below the offer when the stream's flow control held it).
    pub(crate) sent_per_s: f64,
    pub(crate) echoed_per_s: f64,
    pub(crate) loss_pct: f64,
}

/// The datagram size: a typical media or tunnel payload that fits one QUIC packet.
pub(crate) const SIZE: usize = 1_000;

/// Offers `rate` datagrams/s for `secs` on a new flow and counts the echoes that came back
/// within half a second of the last send.
pub(crate) async fn offered(
    env: &Env,
    transport: Transport,
    rate: u64,
    secs: f64,
) -> Result<UdpFigures> {
    let flow: UdpTunnel = env.client().connect_udp(&dial(env, transport)).await?;
    if flow.info().transport != transport {
        bail!("asked for {transport}, got {}", flow.info().transport);
    }
    let (mut tx, mut rx) = flow.into_split();
    let echoed = Arc::new(AtomicU64::new(0));
    let counter = echoed.clone();
    let receiver = tokio::spawn(async move {
        while let Ok(Some(_)) = rx.recv().await {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    let total = (rate as f64 * secs) as u64;
    let payload = vec![0x5a; SIZE];
    let start = Instant::now();
    // Paced per millisecond: each tick sends what the offer owes by then.
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut sent = 0u64;
    while sent < total {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        while sent < due {
            tx.send(&payload).await?;
            sent += 1;
        }
    }
    let sending = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = echoed.load(Ordering::Relaxed);
    let _ = tx.close().await;
    receiver.abort();
    Ok(UdpFigures {
        transport,
        offered_per_s: rate,
        sent_per_s: sent as f64 / sending,
        echoed_per_s: got as f64 / sending,
        loss_pct: 100.0 * (1.0 - got as f64 / sent.max(1) as f64),
    })
}

/// What a node proxy's inbound does with a flow: relay it to the target from a connected
/// socket until either side ends it.
pub(crate) async fn relay(req: ConnectRequest, responder: Responder) {
    let Some(ip) = req.authority.ip() else {
        return responder.reject(ambit_hbone::http::StatusCode::BAD_REQUEST);
    };
    let target = SocketAddr::new(ip, req.authority.port());
    let any = SocketAddr::new(
        if ip.is_ipv4() {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        },
        0,
    );
    let Ok(socket) = UdpSocket::bind(any).await else {
        return responder.reject(ambit_hbone::http::StatusCode::SERVICE_UNAVAILABLE);
    };
    if socket.connect(target).await.is_err() {
        return responder.reject(ambit_hbone::http::StatusCode::SERVICE_UNAVAILABLE);
    }
    let Ok(flow) = responder.accept_udp(Default::default()) else {
        return;
    };
    let (mut tx, mut rx) = flow.into_split();
    let _ = tx.flush().await;
    let mut buf = vec![0u8; 65_536];
    loop {
        tokio::select! {
            d = rx.recv() => match d {
                Ok(Some(d)) => { let _ = socket.send(&d).await; }
                _ => break,
            },
            r = socket.recv(&mut buf) => {
                if let Ok(n) = r && tx.send(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = tx.close().await;
}

/// A UDP echo on `at`.
pub(crate) async fn spawn_echo(at: SocketAddr) -> Result<()> {
    let socket = UdpSocket::bind(at).await?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    Ok(())
}
