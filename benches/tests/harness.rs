//! The end-to-end bench harnesses run and report every path (tiny sizes: this checks that
//! they work, not how fast anything is).

#[test]
fn harness_smoke_run_writes_a_table_and_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("bench.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ambit-bench"))
        .arg("--smoke")
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run ambit-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ambit-bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for path in [
        "direct TCP",
        "TLS relay",
        "HBONE",
        "HBONE/HTTP3",
        "HBONE fd (C ABI)",
        "two nodes",
    ] {
        assert!(stdout.contains(path), "{path} missing:\n{stdout}");
    }
    assert!(stdout.contains("HBONE / TLS relay: throughput"), "{stdout}");
    assert!(
        stdout.contains("HBONE/HTTP3 / HBONE: throughput"),
        "{stdout}"
    );
    assert!(
        stdout.contains("HBONE fd (C ABI) / HBONE: throughput"),
        "{stdout}"
    );
    let json = std::fs::read_to_string(&json).expect("json written");
    assert_eq!(json.matches("\"throughput_gbps\"").count(), 6, "{json}");
    assert!(!json.contains("NaN") && !json.contains("inf"), "{json}");
}

#[test]
fn h3_harness_smoke_run_measures_both_transports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("h3.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ambit-bench-h3"))
        .arg("--smoke")
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run ambit-bench-h3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ambit-bench-h3 failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("h3 / h2: cold open"), "{stdout}");
    let json = std::fs::read_to_string(&json).expect("json written");
    for t in ["\"h2\"", "\"h3\""] {
        assert!(json.contains(t), "{t} missing: {json}");
    }
    // The CONNECT-UDP rows: one per transport at the smoke's one offered rate.
    assert_eq!(json.matches("\"loss_pct\"").count(), 2, "{json}");
    assert!(!json.contains("NaN") && !json.contains("inf"), "{json}");
}
