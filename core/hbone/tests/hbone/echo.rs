//! Byte-exact echo through tunnels, with half-close.

use std::time::Duration;

use ambit_hbone::Transport;
use ambit_test_util::{EchoServer, TestPki, payload};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STEP: Duration = Duration::from_secs(60);

/// Sends `data` over `transport`, half-closes, reads everything back (the echo server writes
/// as it reads, so both directions run at once); also says which transport carried it.
async fn echo(
    pki: &TestPki,
    server: &EchoServer,
    data: &[u8],
    transport: Transport,
) -> (Vec<u8>, Transport) {
    let client = pki.client();
    let me = pki.cell(&pki.id("test", "client"));
    let mut dial = server.dial(me, 8080);
    dial.transport = transport;
    let tunnel = client.connect(&dial).await.expect("tunnel");
    let carried = tunnel.info().transport;
    let (mut r, mut w) = tokio::io::split(tunnel);
    let (written, back) = tokio::join!(
        async {
            w.write_all(data).await?;
            w.shutdown().await
        },
        async {
            let mut back = Vec::with_capacity(data.len());
            r.read_to_end(&mut back).await.map(|_| back)
        }
    );
    written.expect("write and half-close");
    (back.expect("read to EOF"), carried)
}

/// 0 B to 64 MiB through `server` over `transport`, each byte-exact, each seen whole by the
/// server before it wrote back the rest.
pub(crate) async fn echo_every_size(pki: &TestPki, server: &mut EchoServer, transport: Transport) {
    for (i, len) in [0usize, 1, 16 * 1024, 1024 * 1024, 64 * 1024 * 1024]
        .into_iter()
        .enumerate()
    {
        let data = payload(len, i as u64 + 1);
        let (back, carried) = tokio::time::timeout(STEP, echo(pki, server, &data, transport))
            .await
            .unwrap_or_else(|_| panic!("{len} bytes: timed out"));
        assert_eq!(carried, transport, "{len} bytes: transport");
        assert_eq!(back.len(), data.len(), "{len} bytes: length");
        assert!(back == data, "{len} bytes: content differs");
        let seen = server.seen.recv().await.expect("server report");
        // The server saw EOF right after the client's last byte, then still wrote back.
        assert_eq!(seen.read, Ok(len as u64), "{len} bytes: server side");
        assert_eq!(seen.peer_id, pki.id("test", "client"));
        assert_eq!(seen.authority, "127.0.0.1:8080");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_is_byte_exact_for_every_size() {
    let pki = TestPki::new();
    let mut server = EchoServer::start(&pki, "echo").await;
    echo_every_size(&pki, &mut server, Transport::Http2).await;
}

#[tokio::test]
async fn server_can_send_after_client_half_closes() {
    // A handler that reads to EOF first, and only then answers: proves END_STREAM from the
    // client is an EOF on the server's read side and not a close of the whole tunnel.
    use ambit_hbone::{Server, ServerSettings};
    let pki = TestPki::new();
    let id = pki.id("test", "late-writer");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = Server::new(
        pki.server_config(&id),
        |_req: ambit_hbone::ConnectRequest, responder: ambit_hbone::Responder| async move {
            let Ok(mut t) = responder.accept(Default::default()) else {
                return;
            };
            let mut got = Vec::new();
            if t.read_to_end(&mut got).await.is_ok() {
                let reply = format!("got {} bytes", got.len());
                let _ = t.write_all(reply.as_bytes()).await;
                let _ = t.shutdown().await;
            }
        },
        ServerSettings::default(),
    );
    let serving = server.clone();
    tokio::spawn(async move { serving.serve(listener).await });
    let dial = ambit_hbone::Dial::new(
        pki.cell(&pki.id("test", "client")),
        addr,
        vec![id],
        "127.0.0.1:9".parse().expect("authority"),
    );
    let mut t = pki.client().connect(&dial).await.expect("tunnel");
    t.write_all(b"twelve bytes").await.expect("write");
    t.shutdown().await.expect("half-close");
    let mut reply = String::new();
    tokio::time::timeout(STEP, t.read_to_string(&mut reply))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(reply, "got 12 bytes");
}
