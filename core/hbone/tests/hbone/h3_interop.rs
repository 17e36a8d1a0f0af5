//! HBONE over HTTP/3 against an independent implementation: aioquic (Python) as client of our
//! server and as server for our client (`tests/interop/h3_peer.py`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ambit_hbone::{Dial, HboneError, Transport, http::StatusCode};
use ambit_test_util::{EchoServer, TestPki};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::interop::python;

const STEP: Duration = Duration::from_secs(120);

fn peer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/h3_peer.py")
}

fn pem_args(cmd: &mut Command, dir: &Path, name: &str) {
    cmd.arg("--ca")
        .arg(dir.join("root.pem"))
        .arg("--cert")
        .arg(dir.join(format!("{name}-cert.pem")))
        .arg("--key")
        .arg(dir.join(format!("{name}-key.pem")));
}

async fn run_client(args: &[&str], server: &EchoServer, dir: &Path, name: &str) -> (bool, String) {
    let mut cmd = Command::new(python());
    cmd.arg(peer_script())
        .args(args)
        .args(["--server", &server.addr.to_string()])
        .args(["--expect-id", server.id.as_str()]);
    pem_args(&mut cmd, dir, name);
    let out = cmd.stdin(Stdio::null()).kill_on_drop(true).output();
    let out = tokio::time::timeout(STEP, out)
        .await
        .expect("aioquic client in time")
        .expect("run python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("No module named 'aioquic'"),
        "Python lacks aioquic: run scripts/test or `pip install aioquic`"
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioquic_client_tunnels_through_our_server_byte_exact() {
    let pki = TestPki::new();
    let mut server = EchoServer::start_h3(&pki, "echo").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let client_id = pki.id("py", "client");
    pki.write_pem(dir.path(), "client", &client_id);
    let sizes = ["0", "1048576", "67108864"];
    let mut args = vec!["echo"];
    args.extend(sizes);
    let (ok, text) = run_client(&args, &server, dir.path(), "client").await;
    assert!(ok, "aioquic client failed:\n{text}");
    for size in sizes {
        assert!(text.contains(&format!("echo ok: {size} bytes")), "{text}");
        let seen = server.seen.recv().await.expect("report");
        assert_eq!(seen.peer_id, client_id);
        assert_eq!(seen.read, Ok(size.parse().expect("size")));
    }
    let stats = server.server.stats();
    assert_eq!(
        stats.connections_accepted, 1,
        "one QUIC connection, three streams"
    );
    assert_eq!(stats.streams_accepted, 3);
}

#[tokio::test]
async fn aioquic_malformed_requests_get_400_and_the_connection_survives() {
    let pki = TestPki::new();
    let mut server = EchoServer::start_h3(&pki, "echo").await;
    let dir = tempfile::tempdir().expect("tempdir");
    pki.write_pem(dir.path(), "client", &pki.id("py", "client"));
    let (ok, text) = run_client(&["malformed"], &server, dir.path(), "client").await;
    assert!(ok, "aioquic client failed:\n{text}");
    assert_eq!(text.matches("refused ok").count(), 3, "{text}");
    assert!(text.contains("echo ok: 1000 bytes"), "{text}");
    assert_eq!(server.seen.recv().await.expect("report").read, Ok(1000));
    assert_eq!(server.server.stats().streams_rejected, 3);
}

#[tokio::test]
async fn aioquic_client_from_another_trust_domain_is_refused() {
    let pki = TestPki::new();
    let server = EchoServer::start_h3(&pki, "echo").await;
    let stranger = TestPki::for_domain("elsewhere.example");
    let dir = tempfile::tempdir().expect("tempdir");
    stranger.write_pem(dir.path(), "client", &stranger.id("py", "client"));
    // The stranger's own root would not verify our server; the check under test is ours.
    pki.write_pem(dir.path(), "ours", &pki.id("py", "x"));
    let (ok, text) = run_client(&["untrusted"], &server, dir.path(), "client").await;
    assert!(ok, "aioquic client failed:\n{text}");
    assert!(text.contains("refused ok"), "{text}");
    let stats = server.server.stats();
    assert_eq!(stats.streams_accepted, 0, "no request got through");
    assert!(stats.handshake_failures >= 1, "{stats:?}");
}

/// aioquic serving HTTP/3 CONNECT with our certificates; lines it prints arrive on `lines`.
struct AioquicServer {
    addr: std::net::SocketAddr,
    id: ambit_identity::SpiffeId,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    _child: Child,
    _dir: tempfile::TempDir,
}

impl AioquicServer {
    async fn start(pki: &TestPki) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = pki.id("py", "server");
        pki.write_pem(dir.path(), "server", &id);
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("free port")
            .port();
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let mut cmd = Command::new(python());
        cmd.arg(peer_script())
            .arg("server")
            .args(["--listen", &addr.to_string()]);
        pem_args(&mut cmd, dir.path(), "server");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start aioquic server");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(STEP, lines.next_line())
            .await
            .expect("aioquic server starts in time")
            .expect("read")
            .expect("aioquic server printed nothing (is aioquic installed? run scripts/test)");
        assert!(first.starts_with("listening"), "{first}");
        Self {
            addr,
            id,
            lines,
            _child: child,
            _dir: dir,
        }
    }

    fn dial(&self, pki: &TestPki, port: u16, expect: ambit_identity::SpiffeId) -> Dial {
        let mut dial = Dial::new(
            pki.cell(&pki.id("test", "client")),
            self.addr,
            vec![expect],
            std::net::SocketAddr::from(([127, 0, 0, 1], port)).into(),
        );
        dial.transport = Transport::Http3;
        dial
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(STEP, self.lines.next_line())
            .await
            .expect("aioquic line in time")
            .expect("read")
            .expect("aioquic server exited")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_tunnels_through_aioquic_byte_exact_with_half_close() {
    let pki = TestPki::new();
    let mut server = AioquicServer::start(&pki).await;
    let client = pki.client();
    for (i, len) in [0usize, 1024 * 1024, 64 * 1024 * 1024]
        .into_iter()
        .enumerate()
    {
        let data = ambit_test_util::payload(len, i as u64 + 3);
        let tunnel = client
            .connect(&server.dial(&pki, 8080, server.id.clone()))
            .await
            .expect("tunnel through aioquic");
        assert_eq!(tunnel.info().transport, Transport::Http3);
        assert_eq!(tunnel.info().peer_id, server.id);
        let (mut r, mut w) = tokio::io::split(tunnel);
        let (written, back) = tokio::time::timeout(STEP, async {
            tokio::join!(
                async {
                    w.write_all(&data).await?;
                    w.shutdown().await
                },
                async {
                    let mut back = Vec::with_capacity(len);
                    r.read_to_end(&mut back).await.map(|_| back)
                }
            )
        })
        .await
        .unwrap_or_else(|_| panic!("{len} bytes: timed out"));
        written.expect("write and half-close");
        let back = back.expect("read to EOF");
        assert_eq!(back.len(), len, "{len} bytes: length");
        assert!(back == data, "{len} bytes: content differs");
        let line = server.line().await;
        assert!(line.contains(&format!("bytes={len}")), "{line}");
        assert!(
            line.contains("peer=spiffe://cluster.local/ns/test/sa/client"),
            "{line}"
        );
    }
    assert_eq!(
        client.stats().connections_opened,
        1,
        "one pooled QUIC connection"
    );
}

#[tokio::test]
async fn aioquic_refusals_and_a_wrong_identity_are_errors() {
    let pki = TestPki::new();
    let mut server = AioquicServer::start(&pki).await;
    let client = pki.client();
    for code in [401u16, 503] {
        let err = client
            .connect(&server.dial(&pki, code, server.id.clone()))
            .await
            .expect_err("refused");
        assert_eq!(err.status(), StatusCode::from_u16(code).ok(), "{err}");
        assert!(server.line().await.contains("refused"));
    }
    let err = client
        .connect(&server.dial(&pki, 8080, pki.id("py", "someone-else")))
        .await
        .expect_err("wrong SAN");
    assert!(matches!(err, HboneError::Tls { .. }), "{err}");
}

#[tokio::test]
async fn aioquic_connect_udp_datagrams_echo_through_our_server() {
    let pki = TestPki::new();
    let mut server = EchoServer::start_h3(&pki, "echo").await;
    let dir = tempfile::tempdir().expect("tempdir");
    pki.write_pem(dir.path(), "client", &pki.id("py", "client"));
    let (ok, text) = run_client(
        &["udp", "--authority", "127.0.0.1:5353"],
        &server,
        dir.path(),
        "client",
    )
    .await;
    assert!(ok, "aioquic client failed:\n{text}");
    assert!(text.contains("udp ok: 3 datagrams"), "{text}");
    let seen = server.seen.recv().await.expect("report");
    assert_eq!(seen.authority, "127.0.0.1:5353");
    assert_eq!(seen.read, Ok(1 + 100 + 1000));
}

#[tokio::test]
async fn our_udp_flow_through_aioquic_uses_datagrams_both_ways() {
    let pki = TestPki::new();
    let mut server = AioquicServer::start(&pki).await;
    let mut flow = pki
        .client()
        .connect_udp(&server.dial(&pki, 5353, server.id.clone()))
        .await
        .expect("flow through aioquic");
    assert!(flow.uses_datagrams(), "aioquic enables HTTP/3 datagrams");
    let sent: Vec<Vec<u8>> = (0..5)
        .map(|i| ambit_test_util::payload(200 * i + 1, i as u64))
        .collect();
    for d in &sent {
        flow.send(d).await.expect("send");
    }
    let mut back = Vec::new();
    while back.len() < sent.len() {
        let d = tokio::time::timeout(STEP, flow.recv())
            .await
            .expect("in time")
            .expect("recv")
            .expect("open");
        back.push(d.to_vec());
    }
    back.sort();
    let mut want = sent.clone();
    want.sort();
    assert_eq!(back, want);
    let (mut tx, _rx) = flow.into_split();
    tx.close().await.expect("close");
    let line = server.line().await;
    assert!(line.contains("datagrams=5"), "{line}");
    assert!(
        line.contains("/.well-known/masque/udp/127.0.0.1/5353/"),
        "{line}"
    );
}

/// A peer that resets (H3_NO_ERROR) inside a DATA frame has cut the tunnel short: the server
/// reads an error, never a clean end of the 10 bytes it got.
#[tokio::test]
async fn a_reset_inside_a_frame_is_not_a_clean_end() {
    let pki = TestPki::new();
    let mut server = EchoServer::start_h3(&pki, "echo").await;
    let dir = tempfile::tempdir().expect("tempdir");
    pki.write_pem(dir.path(), "client", &pki.id("py", "client"));
    let (ok, text) = run_client(&["truncated"], &server, dir.path(), "client").await;
    assert!(ok, "aioquic client failed:\n{text}");
    assert!(text.contains("sent truncated"), "{text}");
    let seen = tokio::time::timeout(STEP, server.seen.recv())
        .await
        .expect("report in time")
        .expect("report");
    assert!(
        seen.read.is_err(),
        "a truncated tunnel read as complete: {:?}",
        seen.read
    );
}
