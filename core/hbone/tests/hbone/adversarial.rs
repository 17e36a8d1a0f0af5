//! Abuse of the HBONE server's HTTP/2 and TLS layers with hand-made frames: each attack is
//! refused promptly (the connection closed or the stream refused), memory stays bounded, and a
//! well-behaved client is served meanwhile.

use std::sync::Arc;
use std::time::Duration;

use ambit_hbone::ServerSettings;
use ambit_test_util::{EchoServer, TestPki, payload, rss_kib};
use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::client::TlsStream;

const STEP: Duration = Duration::from_secs(30);
/// How long the server may take to refuse an attack.
const PROMPT: Duration = Duration::from_secs(10);

const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;
const END_HEADERS: u8 = 0x4;

/// One HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(9 + payload.len());
    b.put_uint(payload.len() as u64, 3);
    b.put_u8(kind);
    b.put_u8(flags);
    b.put_u32(stream & 0x7fff_ffff);
    b.put_slice(payload);
    b.freeze()
}

/// HPACK for `:method CONNECT`, `:authority 127.0.0.1:80` (literal values, indexed names).
fn connect_block() -> Vec<u8> {
    let mut b = vec![0x02, 7];
    b.extend_from_slice(b"CONNECT");
    b.extend_from_slice(&[0x01, 12]);
    b.extend_from_slice(b"127.0.0.1:80");
    b
}

/// What the reader saw from the server.
#[derive(Debug, Clone, Default)]
struct Seen {
    goaway: Option<u32>,
    rst: Vec<(u32, u32)>,
    statuses: Vec<(u32, String)>,
    closed: bool,
}

/// A TLS connection to `server` speaking raw HTTP/2 frames: the preface and an empty SETTINGS
/// are sent; a task reads and classifies everything the server sends.
struct Raw {
    w: WriteHalf<TlsStream<TcpStream>>,
    seen: watch::Receiver<Seen>,
}

impl Raw {
    async fn open(pki: &TestPki, server: &EchoServer, settings: &[(u16, u32)]) -> Self {
        let me = pki.cell(&pki.id("test", "attacker"));
        let config = pki
            .tls
            .client_config(&me, [server.id.clone()])
            .expect("config");
        let tcp = TcpStream::connect(server.addr).await.expect("connect");
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(ambit_tls::server_name(), tcp)
            .await
            .expect("tls");
        let (r, mut w) = tokio::io::split(tls);
        let mut s = Vec::new();
        for (id, v) in settings {
            s.extend_from_slice(&id.to_be_bytes());
            s.extend_from_slice(&v.to_be_bytes());
        }
        w.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .expect("preface");
        w.write_all(&frame(SETTINGS, 0, 0, &s))
            .await
            .expect("settings");
        let (tx, seen) = watch::channel(Seen::default());
        tokio::spawn(read_frames(r, tx));
        Self { w, seen }
    }

    /// Writes `f`; false once the server has closed the connection.
    async fn send(&mut self, f: &[u8]) -> bool {
        self.w.write_all(f).await.is_ok()
    }

    /// Waits until `cond` holds for what the server sent, up to [`PROMPT`].
    async fn expect(&mut self, what: &str, cond: impl Fn(&Seen) -> bool) -> Seen {
        let r = tokio::time::timeout(PROMPT, self.seen.wait_for(|s| cond(s)))
            .await
            .map(|r| r.map(|s| s.clone()));
        match r {
            Ok(Ok(s)) => s,
            _ => panic!(
                "server did not {what} in {PROMPT:?}: {:?}",
                *self.seen.borrow()
            ),
        }
    }
}

async fn read_frames(mut r: ReadHalf<TlsStream<TcpStream>>, tx: watch::Sender<Seen>) {
    let mut head = [0u8; 9];
    loop {
        if r.read_exact(&mut head).await.is_err() {
            break;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).await.is_err() {
            break;
        }
        match head[3] {
            GOAWAY if body.len() >= 8 => {
                let code = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
                tx.send_modify(|s| s.goaway = Some(code));
            }
            RST_STREAM if body.len() >= 4 => {
                let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                tx.send_modify(|s| s.rst.push((stream, code)));
            }
            HEADERS => {
                let status = status_of(&body);
                tx.send_modify(|s| s.statuses.push((stream, status)));
            }
            _ => {}
        }
    }
    tx.send_modify(|s| s.closed = true);
}

/// The `:status` of a response header block as the h2 crate encodes it: a static-table index
/// (0x88 = 200, 0x8d..0x8e = 400/404...) or a literal value with the `:status` name (index 8).
fn status_of(block: &[u8]) -> String {
    match block {
        [0x88, ..] => "200".into(),
        [0x89, ..] => "204".into(),
        [0x8a, ..] => "206".into(),
        [0x8b, ..] => "304".into(),
        [0x8c, ..] => "400".into(),
        [0x8d, ..] => "404".into(),
        [0x8e, ..] => "500".into(),
        [0x48 | 0x08, len, rest @ ..] if ((len & 0x7f) as usize) <= rest.len() => {
            let v = &rest[..(len & 0x7f) as usize];
            if len & 0x80 == 0 {
                String::from_utf8_lossy(v).into_owned()
            } else {
                huffman_digits(v)
            }
        }
        _ => format!("undecoded {:02x?}", &block[..block.len().min(4)]),
    }
}

/// Decodes a Huffman-coded (RFC 7541 Appendix B) string of decimal digits.
fn huffman_digits(v: &[u8]) -> String {
    let bits: Vec<u8> = v
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let take = |at: usize, n: usize| bits[at..at + n].iter().fold(0u8, |a, b| a << 1 | b);
    let (mut out, mut at) = (String::new(), 0);
    while at + 5 <= bits.len() {
        let five = take(at, 5);
        if five <= 0b00010 {
            out.push((b'0' + five) as char);
            at += 5;
        } else if at + 6 <= bits.len() && (0b011001..=0b011111).contains(&take(at, 6)) {
            out.push((b'3' + take(at, 6) - 0b011001) as char);
            at += 6;
        } else {
            break;
        }
    }
    out
}

/// A well-behaved client still gets an echo from `server`.
async fn still_serves(pki: &TestPki, server: &EchoServer) {
    let me = pki.cell(&pki.id("test", "good"));
    let mut t = tokio::time::timeout(STEP, pki.client().connect(&server.dial(me, 80)))
        .await
        .expect("good client in time")
        .expect("good client connects");
    t.write_all(b"still here").await.expect("write");
    t.shutdown().await.expect("shutdown");
    let mut back = Vec::new();
    tokio::time::timeout(STEP, t.read_to_end(&mut back))
        .await
        .expect("echo in time")
        .expect("echo");
    assert_eq!(back, b"still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_closes_the_connection() {
    let pki = TestPki::new();
    let server = EchoServer::start(&pki, "echo").await;
    let mut raw = Raw::open(&pki, &server, &[]).await;
    let block = connect_block();
    let mut sent = 0;
    for i in 0..20_000u32 {
        let id = 1 + 2 * i;
        let mut burst = BytesMut::new();
        burst.extend_from_slice(&frame(HEADERS, END_HEADERS, id, &block));
        burst.extend_from_slice(&frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
        if !raw.send(&burst).await {
            break;
        }
        sent += 1;
    }
    let seen = raw
        .expect("close a rapid-reset connection", |s| {
            s.goaway.is_some() || s.closed
        })
        .await;
    eprintln!("rapid reset: {sent} HEADERS+RST pairs sent; {seen:?}");
    assert!(sent < 20_000 || seen.goaway.is_some(), "{seen:?}");
    let stats = server.server.stats();
    assert!(
        stats.streams_accepted < 20_000,
        "every reset stream reached the handler: {stats:?}"
    );
    still_serves(&pki, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_settings_floods_are_bounded() {
    let pki = TestPki::new();
    let server = EchoServer::start(&pki, "echo").await;
    let before = rss_kib();
    for (name, f) in [
        ("PING", frame(PING, 0, 0, &[7u8; 8])),
        ("SETTINGS", frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100])),
    ] {
        let mut raw = Raw::open(&pki, &server, &[]).await;
        // 1,000,000 frames (17 MB) written by a client that reads slowly is either refused or
        // stalls on TCP backpressure: the server must not queue an answer per frame.
        let mut burst = BytesMut::new();
        for _ in 0..1000 {
            burst.extend_from_slice(&f);
        }
        let burst = burst.freeze();
        let flood = async {
            for _ in 0..1000 {
                if !raw.send(&burst).await {
                    return false;
                }
            }
            true
        };
        let finished = tokio::time::timeout(Duration::from_secs(5), flood).await;
        eprintln!("{name} flood: {finished:?}; {:?}", *raw.seen.borrow());
        still_serves(&pki, &server).await;
    }
    let grown = rss_kib().saturating_sub(before) / 1024;
    assert!(grown < 128, "RSS grew by {grown} MiB during the floods");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_is_cut_off() {
    let pki = TestPki::new();
    let server = EchoServer::start(&pki, "echo").await;
    let mut raw = Raw::open(&pki, &server, &[]).await;
    assert!(raw.send(&frame(HEADERS, 0, 1, &connect_block())).await);
    // Literal header `x: <16 KiB of a>` fragments, never ending the block: 160 MB if unchecked.
    let junk = frame(CONTINUATION, 0, 1, &[b'a'; 16 * 1024]);
    let mut sent = 0u64;
    for _ in 0..10_000 {
        if !raw.send(&junk).await {
            break;
        }
        sent += junk.len() as u64;
        if raw.seen.borrow().goaway.is_some() || raw.seen.borrow().closed {
            break;
        }
    }
    let seen = raw
        .expect("end a CONTINUATION flood", |s| {
            s.goaway.is_some() || s.closed
        })
        .await;
    eprintln!("continuation flood: {} KiB sent; {seen:?}", sent / 1024);
    assert!(
        sent < 100 << 20,
        "the server read {} MiB of one header block",
        sent >> 20
    );
    assert_eq!(server.server.stats().streams_accepted, 0);
    still_serves(&pki, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused() {
    let pki = TestPki::new();
    let server = EchoServer::start(&pki, "echo").await;
    let mut raw = Raw::open(&pki, &server, &[]).await;
    // A 100 KiB header value in a complete block (HEADERS + CONTINUATIONs): above the
    // server's 64 KiB limit.
    let mut block = connect_block();
    block.extend_from_slice(&[0x00, 0x01, b'x', 0x7f]);
    let len = 100 * 1024;
    // HPACK integer with a 7-bit prefix: 127, then (len - 127) in 7-bit groups.
    let mut rest = len - 127;
    while rest >= 128 {
        block.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    block.push(rest as u8);
    block.extend(std::iter::repeat_n(b'v', len));
    let chunks: Vec<&[u8]> = block.chunks(16 * 1024).collect();
    for (i, c) in chunks.iter().enumerate() {
        let last = if i + 1 == chunks.len() {
            END_HEADERS
        } else {
            0
        };
        let kind = if i == 0 { HEADERS } else { CONTINUATION };
        if !raw.send(&frame(kind, last, 1, c)).await {
            break;
        }
    }
    let seen = raw
        .expect("refuse oversized headers", |s| {
            s.goaway.is_some() || s.closed || !s.rst.is_empty() || !s.statuses.is_empty()
        })
        .await;
    eprintln!("oversized headers: {seen:?}");
    assert!(
        seen.goaway.is_some()
            || seen.rst.iter().any(|(id, _)| *id == 1)
            || seen.statuses == [(1, "431".to_owned())],
        "expected 431, a reset or GOAWAY: {seen:?}"
    );
    assert_eq!(server.server.stats().streams_accepted, 0);
    still_serves(&pki, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_update_overflow_is_a_flow_control_error() {
    let pki = TestPki::new();
    let server = EchoServer::start(&pki, "echo").await;
    let mut raw = Raw::open(&pki, &server, &[]).await;
    let max = 0x7fff_ffffu32.to_be_bytes();
    assert!(raw.send(&frame(WINDOW_UPDATE, 0, 0, &max)).await);
    let _ = raw.send(&frame(WINDOW_UPDATE, 0, 0, &max)).await;
    let seen = raw
        .expect("send GOAWAY for a window overflow", |s| s.goaway.is_some())
        .await;
    assert_eq!(seen.goaway, Some(3), "FLOW_CONTROL_ERROR: {seen:?}");
    still_serves(&pki, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_window_client_cannot_make_the_server_buffer() {
    // The client never opens its receive window: the echo server cannot write back, so it
    // must stop reading, and the client can send no more than the stream window (4 MiB).
    let pki = TestPki::new();
    let server = EchoServer::start(&pki, "echo").await;
    let me = pki.cell(&pki.id("test", "staller"));
    let config = pki
        .tls
        .client_config(&me, [server.id.clone()])
        .expect("config");
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ambit_tls::server_name(), tcp)
        .await
        .expect("tls");
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .initial_connection_window_size(65_535)
        .handshake::<_, Bytes>(tls)
        .await
        .expect("h2");
    tokio::spawn(conn);
    let req = ambit_hbone::http::Request::builder()
        .method("CONNECT")
        .uri("127.0.0.1:80")
        .body(())
        .expect("request");
    let mut send = send.ready().await.expect("ready");
    let (resp, mut body) = send.send_request(req, false).expect("send");
    let resp = tokio::time::timeout(STEP, resp)
        .await
        .expect("response in time")
        .expect("response");
    assert_eq!(resp.status(), 200);
    let chunk = Bytes::from(payload(64 * 1024, 9));
    let mut sent = 0usize;
    let pushing = async {
        loop {
            body.reserve_capacity(chunk.len());
            match std::future::poll_fn(|cx| body.poll_capacity(cx)).await {
                Some(Ok(n)) if n > 0 => {
                    if body.send_data(chunk.slice(..n), false).is_err() {
                        return;
                    }
                    sent += n;
                }
                Some(Ok(_)) => {}
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), pushing).await;
    eprintln!("zero window: client could send {} KiB", sent / 1024);
    assert!(sent >= 64 * 1024, "the server read nothing: {sent}");
    assert!(
        sent <= (4 << 20) + (64 << 10),
        "the server accepted {sent} bytes it cannot echo"
    );
    still_serves(&pki, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_handshakes_time_out_and_others_are_served() {
    let pki = TestPki::new();
    let mut settings = ServerSettings::default();
    settings.handshake_timeout = Duration::from_secs(1);
    let server = EchoServer::start_with(&pki, "echo", settings).await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(server.addr).await.expect("connect");
        // The first byte of a TLS record, then nothing.
        s.write_all(&[0x16]).await.expect("write");
        idle.push(s);
    }
    still_serves(&pki, &server).await;
    let closed = tokio::time::timeout(STEP, async {
        for s in &mut idle {
            let mut b = [0u8; 64];
            loop {
                match s.read(&mut b).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "slow handshakes were not closed");
    // The count is bumped as each handshake task ends, just after its socket closes.
    let counted = tokio::time::timeout(STEP, async {
        while server.server.stats().handshake_failures < 300 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(counted.is_ok(), "{:?}", server.server.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_and_wrong_alpn_are_refused() {
    let pki = TestPki::new();
    let server = EchoServer::start(&pki, "echo").await;
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(PROMPT, s.read_to_end(&mut out))
        .await
        .expect("closed in time")
        .ok();
    assert!(
        !String::from_utf8_lossy(&out).contains("HTTP/1.1"),
        "plaintext got an HTTP answer"
    );
    assert_eq!(out.first(), Some(&0x15), "a TLS alert record: {out:?}");

    let me = pki.cell(&pki.id("test", "http1"));
    let mut config = (*pki
        .tls
        .client_config(&me, [server.id.clone()])
        .expect("config"))
    .clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let r = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ambit_tls::server_name(), tcp)
        .await;
    let err = r.expect_err("http/1.1-only ALPN is refused");
    assert!(
        err.to_string().to_lowercase().contains("application"),
        "{err}"
    );
    still_serves(&pki, &server).await;
}
