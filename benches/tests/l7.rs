//! The waypoint bench (ambit and, when installed, Envoy) runs its behaviour checks and a tiny
//! load (4 clients, half a second each): this checks that it works, not how fast anything is.

#[test]
fn waypoint_bench_smoke_run_writes_a_table_and_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("l7.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ambit-bench-l7"))
        .arg("--smoke")
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run ambit-bench-l7");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ambit-bench-l7 failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("| ambit | 4 |"), "{stdout}");
    let json = std::fs::read_to_string(&json).expect("json written");
    assert!(json.contains("\"waypoint\": \"ambit\""), "{json}");
    assert!(!json.contains("NaN") && !json.contains("inf"), "{json}");
    if !stderr.contains("no Envoy found") {
        assert!(stdout.contains("| envoy | 4 |"), "{stdout}");
        assert!(stdout.contains("| ratio | 4 |"), "{stdout}");
    }
}
