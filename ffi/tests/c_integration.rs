//! The C programs, compiled with -Wall -Wextra -Wpedantic -Werror against the committed header
//! and the static library, run as a C host would: once plain, once under ASan + UBSan. The
//! policy-check example decides every case of the shared table like the Rust engine does.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use facade::identity::{CertificateAuthority, SpiffeId, TrustDomain};
use facade::policy::{Connection, IstioPolicies, PolicySet, Target};
use serde::Deserialize;

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

fn run_api(sanitize: bool) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = tmp.path().join("api");
    compile("tests/c/api.c", &exe, sanitize);
    let pems = pem_files(tmp.path());
    let out = Command::new(&exe).args(&pems).output().expect("run api");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "api failed:\n{stdout}\n{stderr}");
    assert!(stdout.trim_end().ends_with(", 0 failed"), "{stdout}");
    let passed: u32 = stdout
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("count");
    assert!(passed >= 60, "only {passed} checks ran:\n{stdout}");
    assert!(
        !stderr.contains("ERROR: AddressSanitizer") && !stderr.contains("runtime error"),
        "{stderr}"
    );
}

#[test]
fn c_api_checks_pass() {
    run_api(false);
}

#[test]
fn c_api_checks_pass_under_asan_and_ubsan() {
    run_api(true);
}

#[derive(Deserialize)]
struct Table {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    policies: String,
    workload: CaseWorkload,
    connection: CaseConn,
}

#[derive(Deserialize)]
struct CaseWorkload {
    namespace: String,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CaseConn {
    source: Option<String>,
    source_ip: Option<IpAddr>,
    port: u16,
}

#[test]
fn policy_check_example_agrees_with_the_rust_engine_on_the_shared_table() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = tmp.path().join("ambit-policy-check");
    compile("examples/ambit-policy-check.c", &exe, false);
    let table: Table = serde_yaml_ng::from_str(
        &std::fs::read_to_string(manifest().join("../testdata/authz/l4-cases.yaml"))
            .expect("table"),
    )
    .expect("parse table");
    assert!(table.cases.len() >= 30);
    for (i, case) in table.cases.iter().enumerate() {
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
        IstioPolicies::parse(&case.policies, "istio-system")
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
fn committed_header_declares_every_exported_function() {
    let header = std::fs::read_to_string(manifest().join("include/ambit.h")).expect("header");
    let sources = [
        "src/lib.rs",
        "src/error.rs",
        "src/identity.rs",
        "src/policy.rs",
        "src/proxy_v2.rs",
    ];
    let mut count = 0;
    for s in sources {
        let text = std::fs::read_to_string(manifest().join(s)).expect("source");
        for line in text
            .lines()
            .filter(|l| l.trim_start().starts_with("pub extern \"C\" fn "))
        {
            let name = line
                .split("fn ")
                .nth(1)
                .and_then(|r| r.split('(').next())
                .expect("name");
            assert!(
                header.contains(&format!("{name}(")),
                "{name} missing from ambit.h: run scripts/header"
            );
            count += 1;
        }
    }
    assert!(count >= 14, "found only {count} exports");
    assert!(
        header.contains("#define AMBIT_VERSION_MINOR 1"),
        "version macros out of date"
    );
}

#[test]
fn c_api_checks_are_clean_under_valgrind() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = tmp.path().join("api");
    compile("tests/c/api.c", &exe, false);
    let pems = pem_files(tmp.path());
    let out = Command::new("valgrind")
        .args([
            "--quiet",
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect",
        ])
        .arg(&exe)
        .args(&pems)
        .output()
        .expect("valgrind (scripts/test installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "valgrind found problems (exit {:?}):\n{stderr}\n{stdout}",
        out.status.code()
    );
    assert!(stdout.trim_end().ends_with(", 0 failed"), "{stdout}");
}

fn run_hbone_echo(sanitize: bool) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = tmp.path().join("hbone_echo");
    compile("tests/c/hbone_echo.c", &exe, sanitize);
    let out = Command::new(&exe).output().expect("run hbone_echo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "hbone_echo failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.trim_end().ends_with(", 0 failed"), "{stdout}");
}

#[test]
fn c_host_runs_hbone_through_file_descriptors() {
    run_hbone_echo(false);
}

#[test]
fn c_host_runs_hbone_through_file_descriptors_under_asan_and_ubsan() {
    run_hbone_echo(true);
}

#[test]
fn c_host_starts_reloads_and_stops_node_proxies() {
    // The application behind node B: an echo server on its workload address.
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
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = tmp.path().join("node_proxy");
    compile("tests/c/node_proxy.c", &exe, false);
    let out = Command::new(&exe).output().expect("run node_proxy");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "node_proxy failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.trim_end().ends_with(", 0 failed"), "{stdout}");
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
