//! `ambitctl` as a user runs it: real processes, real files, openssl as the independent judge.

use std::path::Path;
use std::process::{Command, Output};

fn ambitctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ambitctl"))
        .args(args)
        .output()
        .expect("run ambitctl")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

#[test]
fn ca_init_issue_inspect_and_openssl_verify() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca_dir = tmp.path().join("ca");
    let wl = tmp.path().join("web");
    let out = ambitctl(&[
        "ca",
        "init",
        "--dir",
        p(&ca_dir),
        "--trust-domain",
        "example.org",
        "--intermediate",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    for f in [
        "ca-cert.pem",
        "ca-key.pem",
        "cert-chain.pem",
        "root-cert.pem",
    ] {
        assert!(ca_dir.join(f).is_file(), "{f} missing");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(ca_dir.join("ca-key.pem"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "CA key readable by others: {mode:o}");
    }

    let out = ambitctl(&[
        "cert",
        "issue",
        "--id",
        "spiffe://example.org/ns/shop/sa/web",
        "--ttl",
        "2h",
        "--ca-dir",
        p(&ca_dir),
        "--out-dir",
        p(&wl),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("issued spiffe://example.org/ns/shop/sa/web"));

    let out = ambitctl(&[
        "cert",
        "inspect",
        p(&wl.join("cert-chain.pem")),
        "--bundle",
        p(&wl.join("root-cert.pem")),
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("spiffe id:   spiffe://example.org/ns/shop/sa/web"),
        "{t}"
    );
    assert!(t.contains("CA certificate #2"), "intermediate listed: {t}");
    assert!(t.contains("valid, 1h59m") || t.contains("valid, 2h"), "{t}");
    assert!(
        t.contains("verified for client authentication: spiffe://example.org/ns/shop/sa/web"),
        "{t}"
    );

    let verify = Command::new("openssl")
        .args([
            "verify",
            "-CAfile",
            p(&wl.join("root-cert.pem")),
            "-untrusted",
        ])
        .arg(wl.join("cert-chain.pem"))
        .arg(wl.join("cert-chain.pem"))
        .output()
        .expect("run openssl");
    assert!(verify.status.success(), "openssl: {}", text(&verify));

    // Refuses to clobber, and says how not to.
    let again = ambitctl(&["ca", "init", "--dir", p(&ca_dir)]);
    assert!(!again.status.success());
    assert!(
        text(&again).contains("already exists (use --force to overwrite)"),
        "{}",
        text(&again)
    );
}

#[test]
fn errors_name_the_file_or_flag_and_the_problem() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "cert".into(),
                "inspect".into(),
                p(&tmp.path().join("nope.pem")).into(),
            ],
            "nope.pem: cannot read",
        ),
        (
            vec![
                "cert".into(),
                "issue".into(),
                "--id".into(),
                "spiffe://td/ns/a/".into(),
                "--ca-dir".into(),
                p(tmp.path()).into(),
            ],
            "--id \"spiffe://td/ns/a/\": SPIFFE id path has an empty segment",
        ),
        (
            vec![
                "cert".into(),
                "issue".into(),
                "--id".into(),
                "spiffe://td/ns/a/sa/b".into(),
                "--ca-dir".into(),
                p(tmp.path()).into(),
            ],
            "ca-cert.pem: cannot read (create a CA with `ambitctl ca init`)",
        ),
        (
            vec![
                "ca".into(),
                "init".into(),
                "--trust-domain".into(),
                "Bad.Domain".into(),
                "--dir".into(),
                p(tmp.path()).into(),
            ],
            "trust domain has invalid character 'B'",
        ),
        (
            vec![
                "cert".into(),
                "issue".into(),
                "--id".into(),
                "spiffe://td/x".into(),
                "--ttl".into(),
                "5w".into(),
            ],
            "unknown unit 'w'",
        ),
    ];
    std::fs::write(tmp.path().join("garbage.pem"), "not pem at all").expect("write");
    let garbage = ambitctl(&["cert", "inspect", p(&tmp.path().join("garbage.pem"))]);
    assert!(!garbage.status.success());
    assert!(
        text(&garbage).contains("garbage.pem: no CERTIFICATE block found"),
        "{}",
        text(&garbage)
    );
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = ambitctl(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(text(&out).contains(want), "{args:?}: got {}", text(&out));
    }
}

#[test]
fn issuing_for_another_trust_domain_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = ambitctl(&[
        "ca",
        "init",
        "--dir",
        p(tmp.path()),
        "--trust-domain",
        "a.local",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = ambitctl(&[
        "cert",
        "issue",
        "--id",
        "spiffe://b.local/ns/x/sa/y",
        "--ca-dir",
        p(tmp.path()),
        "--out-dir",
        p(&tmp.path().join("w")),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("issues for trust domain \"a.local\""),
        "{}",
        text(&out)
    );
}
