//! The C programs, compiled with -Wall -Wextra -Wpedantic -Werror against the committed header
//! and the static library, run as a C host would: plain, under ASan + UBSan (with the leak
//! checker), and under valgrind (invalid accesses and definite or indirect leaks fail). The
//! policy-check example decides every case of the shared table like the Rust engine does.

use std::ffi::OsStr;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use facade::authz::{Connection, IstioPolicies, PolicySet, PolicyTarget as Target};
use facade::identity::{CertificateAuthority, SpiffeId, TrustDomain};

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `libambit.a` from the build this test belongs to (target/<profile>/).
fn static_lib() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let lib = profile_dir.join("libambit.a");
    assert!(
        lib.exists(),
        "{} not built: `cargo test` does not build static libraries; run `cargo build -p ambit-ffi` \
         first (scripts/test does)",
        lib.display()
    );
    lib
}

fn compile(src: &str, out: &Path, sanitize: bool) {
    let mut cmd = Command::new("cc");
    cmd.args([
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-Wpedantic",
        "-Werror",
        "-g",
    ]);
    if sanitize {
        cmd.args([
            "-fsanitize=address,undefined",
            "-fno-omit-frame-pointer",
            "-fno-sanitize-recover=all",
        ]);
    }
    cmd.arg("-I").arg(manifest().join("include"));
    cmd.arg(manifest().join(src));
    cmd.arg(static_lib());
    cmd.args(["-lpthread", "-ldl", "-lm", "-o"]).arg(out);
    let o = cmd.output().expect("cc (scripts/test installs gcc)");
    assert!(
        o.status.success(),
        "compiling {src} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    if sanitize {
        // The sanitizers really are in: an ignored flag would quietly make the run plain.
        let nm = Command::new("nm").arg(out).output().expect("nm (binutils)");
        assert!(
            String::from_utf8_lossy(&nm.stdout).contains("__asan_init"),
            "{src}: no __asan_init in the sanitized build"
        );
    }
}

/// How a C test program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    /// ASan (with LeakSanitizer) + UBSan; any report is fatal.
    Sanitized,
    /// The plain build under valgrind: invalid accesses and definite or indirect leaks fail.
    Valgrind,
}

/// Compiles `src`, runs it with `args` in `mode`, and checks that it ended with "N passed, 0
/// failed" for at least `min_checks` checks and that no sanitizer or valgrind complained.
fn run_c(src: &str, args: &[&OsStr], mode: Mode, min_checks: u32) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = tmp.path().join("prog");
    compile(src, &exe, mode == Mode::Sanitized);
    let mut cmd = if mode == Mode::Valgrind {
        let mut c = Command::new("valgrind");
        c.args([
            "--quiet",
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect",
        ])
        .arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    let out = cmd
        .args(args)
        .output()
        .expect("run the C program (scripts/test installs valgrind)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{src} ({mode:?}) failed (exit {:?}):\n{stdout}\n{stderr}",
        out.status.code()
    );
    assert!(stdout.trim_end().ends_with(", 0 failed"), "{stdout}");
    let passed: u32 = stdout
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("count");
    assert!(
        passed >= min_checks,
        "{src}: only {passed} checks ran:\n{stdout}"
    );
    eprintln!("{src} ({mode:?}): {}", stdout.trim_end());
    assert!(
        !stderr.contains("AddressSanitizer")
            && !stderr.contains("LeakSanitizer")
            && !stderr.contains("runtime error"),
        "{src} ({mode:?}):\n{stderr}"
    );
}

fn pem_files(dir: &Path) -> [PathBuf; 4] {
    let td = TrustDomain::new("cluster.local").expect("td");
    let ca = CertificateAuthority::new(td.clone()).expect("ca");
    let other = CertificateAuthority::new(td).expect("ca");
    let id = SpiffeId::parse("spiffe://cluster.local/ns/c/sa/client").expect("id");
    let good = ca.issue(&id, Duration::from_secs(3600)).expect("issue");
    let old = ca
        .issue_at(
            &id,
            SystemTime::now() - Duration::from_secs(7200),
            Duration::from_secs(3600),
        )
        .expect("issue");
    let files = [
        (dir.join("chain.pem"), good.chain_pem()),
        (dir.join("root.pem"), ca.bundle().to_pem()),
        (dir.join("expired.pem"), old.chain_pem()),
        (dir.join("other-root.pem"), other.bundle().to_pem()),
    ];
    for (p, c) in &files {
        std::fs::write(p, c).expect("write pem");
    }
    files.map(|(p, _)| p)
}

// === api.c: identity, L4 policy, PROXY v2, errors ===

fn run_api(mode: Mode) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pems = pem_files(tmp.path());
    let args: Vec<&OsStr> = pems.iter().map(|p| p.as_os_str()).collect();
    run_c("tests/c/api.c", &args, mode, 60);
}

#[test]
fn c_api_checks_pass() {
    run_api(Mode::Plain);
}

#[test]
fn c_api_checks_pass_under_asan_and_ubsan() {
    run_api(Mode::Sanitized);
}

#[test]
fn c_api_checks_are_clean_under_valgrind() {
    run_api(Mode::Valgrind);
}

// === config_errors.c: the shared broken fixtures, placed as Rust and Python place them ===

#[test]
fn c_config_errors_name_the_same_place_as_rust_and_python() {
    let dir = manifest().join("../testdata/config-errors");
    for mode in [Mode::Plain, Mode::Sanitized, Mode::Valgrind] {
        run_c("tests/c/config_errors.c", &[dir.as_os_str()], mode, 10);
    }
}

// === waypoint.c: routes, JWT, L7 authorization ===

/// The time the test tokens are made for.
const JWT_NOW: u64 = 1_700_000_000;

/// Writes an ES256 key set and tokens for the C program: `valid.jwt` (Alice, an admin, valid
/// for an hour from [`JWT_NOW`]), `expired.jwt`, `none.jwt` (`alg: none`, no signature) and
/// `badsig.jwt` (signed by another key under the same `kid`).
fn jwt_files(dir: &Path) {
    use ambit_test_util::jwt::{JwtSigner, jwks};
    use base64::Engine;

    let (signing, impostor) = (JwtSigner::es256("k1"), JwtSigner::es256("k1"));
    let jwks = jwks(&[&signing]);
    let claims = |exp: u64| {
        serde_json::json!({
            "iss": "https://issuer.example", "sub": "alice", "aud": "cart",
            "iat": JWT_NOW - 10, "exp": exp, "realm": {"role": "admin"}, "level": 3,
        })
    };
    let sign = |exp: u64, key: &JwtSigner| key.sign(&claims(exp));
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(serde_json::json!({"alg": "none", "typ": "JWT"})),
        b64(claims(JWT_NOW + 3600))
    );
    let files = [
        ("jwks.json", jwks),
        ("valid.jwt", sign(JWT_NOW + 3600, &signing)),
        ("expired.jwt", sign(JWT_NOW - 3600, &signing)),
        ("none.jwt", none),
        ("badsig.jwt", sign(JWT_NOW + 3600, &impostor)),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write");
    }
}

fn run_waypoint(mode: Mode) {
    let tmp = tempfile::tempdir().expect("tempdir");
    jwt_files(tmp.path());
    let now = JWT_NOW.to_string();
    run_c(
        "tests/c/waypoint.c",
        &[tmp.path().as_os_str(), OsStr::new(&now)],
        mode,
        250,
    );
}

#[test]
fn c_waypoint_decisions_pass() {
    run_waypoint(Mode::Plain);
}

#[test]
fn c_waypoint_decisions_pass_under_asan_and_ubsan() {
    run_waypoint(Mode::Sanitized);
}

#[test]
fn c_waypoint_decisions_are_clean_under_valgrind() {
    run_waypoint(Mode::Valgrind);
}

#[test]
fn policy_check_example_agrees_with_the_rust_engine_on_the_shared_table() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = tmp.path().join("ambit-policy-check");
    compile("examples/ambit-policy-check.c", &exe, false);
    for (i, case) in ambit_test_util::cases::l4().iter().enumerate() {
        let yaml = tmp.path().join(format!("case-{i}.yaml"));
        std::fs::write(&yaml, &case.policies).expect("write");
        let src_ip = case
            .connection
            .source_ip
            .unwrap_or(IpAddr::from([10, 0, 0, 1]));
        let mut cmd = Command::new(&exe);
        cmd.arg(&yaml)
            .arg(&case.workload.namespace)
            .arg(case.connection.source.as_deref().unwrap_or("-"))
            .arg(src_ip.to_string())
            .arg("10.0.0.2")
            .arg(case.connection.port.to_string());
        for (k, v) in &case.workload.labels {
            cmd.arg(format!("{k}={v}"));
        }
        let out = cmd.output().expect("run ambit-policy-check");
        assert!(
            out.status.success(),
            "{}: {}",
            case.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let c_says = String::from_utf8_lossy(&out.stdout).trim().to_owned();

        let mut set = PolicySet::new();
        IstioPolicies::parse(&case.policies, "", "istio-system")
            .expect("policies")
            .apply_to(&mut set);
        let id = case
            .connection
            .source
            .as_deref()
            .map(|p| SpiffeId::from_principal(p).expect("id"));
        let d = set.evaluate(
            Target {
                namespace: &case.workload.namespace,
                labels: &case.workload.labels,
                policy_keys: &[],
            },
            &Connection {
                source_id: id.as_ref(),
                source_ip: src_ip,
                destination_ip: IpAddr::from([10, 0, 0, 2]),
                destination_port: case.connection.port,
            },
        );
        let rust_says = format!(
            "{} {}",
            if d.allowed { "ALLOW" } else { "DENY" },
            d.policy.as_deref().unwrap_or("-")
        );
        assert_eq!(c_says, rust_says, "{}", case.name);
    }
}

#[test]
fn committed_header_declares_and_documents_every_exported_function() {
    let header = std::fs::read_to_string(manifest().join("include/ambit.h")).expect("header");
    let mut count = 0;
    let mut sources: Vec<PathBuf> = std::fs::read_dir(manifest().join("src"))
        .expect("src")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    sources.sort();
    for s in sources {
        let text = std::fs::read_to_string(&s).expect("source");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !line.trim_start().starts_with("pub extern \"C\" fn ") {
                continue;
            }
            let name = line
                .split("fn ")
                .nth(1)
                .and_then(|r| r.split('(').next())
                .expect("name");
            assert!(
                header.contains(&format!("{name}(")),
                "{name} missing from ambit.h: run scripts/header"
            );
            // The doc comment (which becomes the header's) sits above the attributes.
            let doc = lines[..i]
                .iter()
                .rev()
                .find(|l| !l.trim_start().starts_with("#["))
                .is_some_and(|l| l.trim_start().starts_with("///"));
            assert!(doc, "{name} ({}) has no doc comment", s.display());
            count += 1;
        }
    }
    assert!(count >= 80, "found only {count} exports");
    assert!(
        header.contains("#define AMBIT_VERSION_MINOR 1"),
        "version macros out of date"
    );
}

// === hbone_echo.c and node_proxy.c: the managed runtime ===

fn run_hbone_echo(mode: Mode) {
    run_c("tests/c/hbone_echo.c", &[], mode, 10);
}

#[test]
fn c_host_runs_hbone_through_file_descriptors() {
    run_hbone_echo(Mode::Plain);
}

#[test]
fn c_host_runs_hbone_through_file_descriptors_under_asan_and_ubsan() {
    run_hbone_echo(Mode::Sanitized);
}

#[test]
fn c_host_runs_hbone_through_file_descriptors_cleanly_under_valgrind() {
    run_hbone_echo(Mode::Valgrind);
}

#[test]
fn c_host_starts_reloads_and_stops_node_proxies() {
    // The application behind node B: an echo server on its workload address. One test runs
    // every mode in turn, since the address can be bound once.
    let app = std::net::TcpListener::bind("127.31.2.2:8080").expect("bind app");
    std::thread::spawn(move || {
        for s in app.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut r = s.try_clone().expect("clone");
                let _ = std::io::copy(&mut r, &mut s);
            });
        }
    });
    // And a UDP echo beside it, for the flows the C host opens with `ambit_hbone_dial_udp`.
    let udp = std::net::UdpSocket::bind("127.31.2.2:5353").expect("bind UDP app");
    std::thread::spawn(move || {
        let mut buf = [0u8; 65_536];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(&buf[..n], from);
        }
    });
    for mode in [Mode::Plain, Mode::Sanitized, Mode::Valgrind] {
        run_c("tests/c/node_proxy.c", &[], mode, 10);
    }
}

#[test]
fn c_host_starts_reloads_and_stops_a_waypoint() {
    // The application behind the waypoint: answers each HTTP/1.1 request with its request line
    // and the x-routed header it saw, then closes.
    let app = std::net::TcpListener::bind("127.32.2.2:8080").expect("bind app");
    std::thread::spawn(move || {
        for s in app.incoming() {
            let Ok(s) = s else { return };
            std::thread::spawn(move || answer_request_line(s));
        }
    });
    for mode in [Mode::Plain, Mode::Sanitized, Mode::Valgrind] {
        run_c("tests/c/waypoint_proxy.c", &[], mode, 40);
    }
}

fn answer_request_line(s: std::net::TcpStream) {
    use std::io::{BufRead, BufReader, Write};
    let mut r = BufReader::new(&s);
    let mut first = String::new();
    if r.read_line(&mut first).is_err() {
        return;
    }
    let mut routed = String::from("-");
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("x-routed")
                {
                    routed = v.trim().to_owned();
                }
            }
        }
    }
    let mut parts = first.split_whitespace();
    let body = format!(
        "{} {} x-routed={routed}",
        parts.next().unwrap_or("?"),
        parts.next().unwrap_or("?")
    );
    let _ = write!(
        &s,
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

#[test]
fn hbone_cat_example_tunnels_stdin_to_an_hbone_server() {
    use facade::hbone::{Server, ServerSettings};
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = tmp.path().join("ambit-hbone-cat");
    compile("examples/ambit-hbone-cat.c", &exe, false);
    // An HBONE server (ours) that echoes, in a runtime of this test.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let td = TrustDomain::new("cluster.local").expect("td");
    let ca = CertificateAuthority::new(td).expect("ca");
    let server_id = SpiffeId::parse("spiffe://cluster.local/ns/t/sa/echo").expect("id");
    let client_id = SpiffeId::parse("spiffe://cluster.local/ns/t/sa/cat").expect("id");
    let tls = facade::tls::TlsContext::new(facade::tls::Provider::default());
    let cell = tls
        .credential_cell(
            &ca.credentials(&server_id, Duration::from_secs(3600))
                .expect("creds"),
        )
        .expect("cell");
    let config = tls
        .server_config(&cell, &facade::tls::ServerOptions::default())
        .expect("config");
    let addr = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let server = Server::new(
            config,
            |_req: facade::hbone::ConnectRequest, r: facade::hbone::Responder| async move {
                if let Ok(t) = r.accept(Default::default()) {
                    let (mut rd, mut wr) = tokio::io::split(t);
                    let _ = tokio::io::copy(&mut rd, &mut wr).await;
                    let _ = tokio::io::AsyncWriteExt::shutdown(&mut wr).await;
                }
            },
            ServerSettings::default(),
        );
        tokio::spawn(async move { server.serve(l).await });
        addr
    });
    let creds = ca
        .credentials(&client_id, Duration::from_secs(3600))
        .expect("creds");
    std::fs::write(tmp.path().join("chain.pem"), creds.svid.chain_pem()).expect("write");
    std::fs::write(tmp.path().join("key.pem"), creds.svid.key_pem()).expect("write");
    std::fs::write(tmp.path().join("root.pem"), creds.bundle.to_pem()).expect("write");
    let mut child = Command::new(&exe)
        .arg(tmp.path().join("chain.pem"))
        .arg(tmp.path().join("key.pem"))
        .arg(tmp.path().join("root.pem"))
        .arg(addr.to_string())
        .arg(server_id.as_str())
        .arg("127.0.0.1:7")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ambit-hbone-cat");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"hello over hbone\n").expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello over hbone\n");
    drop(rt);
}

#[test]
fn every_result_code_in_the_header_is_unique_and_described() {
    let header = std::fs::read_to_string(manifest().join("include/ambit.h")).expect("header");
    let mut seen = std::collections::BTreeMap::new();
    for line in header.lines() {
        let Some((name, rest)) = line.trim().split_once(" = ") else {
            continue;
        };
        if !name.starts_with("AMBIT_RESULT_") {
            continue;
        }
        let n: u32 = rest.trim_end_matches(',').parse().expect("number");
        assert!(
            seen.insert(n, name.to_owned()).is_none(),
            "{name} reuses {n}"
        );
        let mut buf = [0u8; 128];
        let mut len = 0;
        assert_eq!(
            ambit::ambit_result_message(n, buf.as_mut_ptr(), buf.len(), &mut len),
            ambit::ambit_result::AMBIT_RESULT_OK
        );
        let text = std::str::from_utf8(&buf[..len]).expect("utf-8");
        assert_ne!(text, "unknown result code", "{name} has no description");
    }
    assert!(seen.len() >= 25, "{seen:?}");
    // The ranges (STYLE.md §2.3): glue 1000, identity 1100, HBONE 1300, authn/authz 1400,
    // config 1500.
    for (n, name) in &seen {
        assert!(
            [10, 11, 13, 14, 15].contains(&(n / 100)),
            "{name} = {n} is outside every range"
        );
    }
}
