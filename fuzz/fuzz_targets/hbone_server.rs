//! The HBONE server's HTTP/2 layer (everything after TLS) on arbitrary client bytes, over an
//! in-memory duplex: no panic, the connection ends once the client has sent its bytes and
//! closed, and every stream task finishes, each within a deadline.
#![no_main]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ambit_hbone::{ConnectRequest, Handler, Responder, Server, ServerSettings, fuzz_logic, http};
use ambit_identity::SpiffeId;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Accepts and echoes, except target ports 400/401/403/503, rejected with that status.
struct Echo;

impl Handler for Echo {
    fn handle(
        &self,
        req: ConnectRequest,
        responder: Responder,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        echo(req, responder)
    }
}

async fn echo(req: ConnectRequest, responder: Responder) {
    if let p @ (400 | 401 | 403 | 503) = req.authority.port() {
        return responder.reject(http::StatusCode::from_u16(p).expect("status"));
    }
    let Ok(mut tunnel) = responder.accept(Default::default()) else {
        return;
    };
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = tunnel.read(&mut buf).await {
        if tunnel.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    server: Server<Echo>,
    peer: SpiffeId,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let mut settings = ServerSettings::default();
    settings.ping_interval = None;
    settings.handshake_timeout = Duration::from_secs(2);
    // No TLS in front: the certificate selector is never asked.
    let tls: HashMap<IpAddr, Arc<rustls::ServerConfig>> = HashMap::new();
    Fixture {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("rt"),
        server: Server::new(tls, Echo, settings),
        peer: SpiffeId::parse("spiffe://cluster.local/ns/fuzz/sa/client").expect("id"),
    }
});

const DEADLINE: Duration = Duration::from_secs(5);
const SETTLE_YIELDS: usize = 16;

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    f.rt.block_on(async {
        let (client, server_io) = tokio::io::duplex(256 * 1024);
        let (peer, local): (SocketAddr, SocketAddr) =
            (([10, 0, 0, 1], 40000).into(), ([10, 0, 0, 2], 15008).into());
        let serve =
            fuzz_logic::serve_established(&f.server, server_io, f.peer.clone(), peer, local);
        let (mut rx, mut tx) = tokio::io::split(client);
        let send = async move {
            let _ = tx.write_all(data).await;
            // h2 drops streams not yet accepted when it sees EOF: let the server (and the
            // stream tasks it spawns) act on the bytes before closing.
            for _ in 0..SETTLE_YIELDS {
                tokio::task::yield_now().await;
            }
            let _ = tx.shutdown().await;
        };
        let drain = async move {
            let mut sink = Vec::new();
            let _ = rx.read_to_end(&mut sink).await;
        };
        // A failed HTTP/2 handshake is a normal outcome for garbage input.
        let (_served, (), ()) =
            tokio::time::timeout(DEADLINE, async { tokio::join!(serve, send, drain) })
                .await
                .expect("connection did not end after the client closed");
        tokio::time::timeout(DEADLINE, async {
            // Stream tasks (spawned per CONNECT) must all end once their connection has.
            let metrics = tokio::runtime::Handle::current().metrics();
            while metrics.num_alive_tasks() > 0 || f.server.stats().streams_active > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("stream tasks still running after the connection ended");
    });
});
