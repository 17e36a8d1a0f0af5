//! Packaging: what the README and `ambit.pc.in` tell C users to link is what rustc says the
//! static library needs, the generated pkg-config file links a working program, and the cargo-c
//! metadata installs the committed header under the right names.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `cargo rustc --crate-type staticlib` may relink `target/<profile>/libambit.a`, which the
/// linking test reads: one at a time.
static LIBAMBIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `rustc --print native-static-libs` for this crate, e.g. `-lgcc_s -lutil ... -lc`.
fn native_static_libs() -> String {
    let _one = LIBAMBIT.lock().unwrap_or_else(|p| p.into_inner());
    let out = Command::new(env!("CARGO"))
        .args([
            "rustc",
            "--offline",
            "-p",
            "ambit-ffi",
            "--crate-type",
            "staticlib",
        ])
        .arg("--manifest-path")
        .arg(manifest().join("Cargo.toml"))
        .args(["--", "--print", "native-static-libs"])
        .output()
        .expect("cargo rustc");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cargo rustc failed:\n{stderr}");
    stderr
        .lines()
        .find_map(|l| l.split_once("native-static-libs: ").map(|(_, libs)| libs))
        .unwrap_or_else(|| panic!("no native-static-libs note in:\n{stderr}"))
        .trim()
        .to_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn readme_and_pkg_config_link_what_rustc_says_the_static_library_needs() {
    let libs = native_static_libs();
    assert!(libs.contains("-lc"), "{libs}");

    let pc = read(&manifest().join("ambit.pc.in"));
    let private = pc
        .lines()
        .find_map(|l| l.strip_prefix("Libs.private:"))
        .expect("Libs.private in ambit.pc.in")
        .trim();
    assert_eq!(
        private, libs,
        "ffi/ambit.pc.in Libs.private differs from rustc's native-static-libs"
    );

    let readme = read(&manifest().join("README.md"));
    let line = readme
        .lines()
        .find(|l| l.starts_with("cc ") && l.contains("libambit.a"))
        .expect("a static link line in ffi/README.md");
    assert!(
        line.ends_with(&format!("libambit.a {libs}")),
        "ffi/README.md link line {line:?} does not end with libambit.a {libs}"
    );
}

#[test]
fn generated_pkg_config_file_links_a_c_program_statically() {
    let _one = LIBAMBIT.lock().unwrap_or_else(|p| p.into_inner());
    let profile_dir = std::env::current_exe()
        .expect("test exe")
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_owned();
    assert!(
        profile_dir.join("libambit.a").exists(),
        "libambit.a not built: run `cargo build -p ambit-ffi` first (scripts/test does)"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let pc = tmp.path().join("ambit.pc");
    let status = Command::new("bash")
        .arg(manifest().join("../scripts/pkgconfig"))
        .arg("--libdir")
        .arg(&profile_dir)
        .arg("-o")
        .arg(&pc)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("scripts/pkgconfig");
    assert!(status.success());
    let text = read(&pc);
    assert!(
        text.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let flags = Command::new("pkg-config")
        .env("PKG_CONFIG_PATH", tmp.path())
        .args(["--static", "--cflags", "--libs", "ambit"])
        .output()
        .expect("pkg-config");
    assert!(
        flags.status.success(),
        "{}",
        String::from_utf8_lossy(&flags.stderr)
    );
    let flags = String::from_utf8(flags.stdout).expect("utf-8");

    let src = tmp.path().join("hello.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\n#include <string.h>\n#include \"ambit.h\"\n\
         int main(void) {\n\
           char buf[64]; size_t n = 0;\n\
           if (ambit_result_message(AMBIT_RESULT_OK, (uint8_t *)buf, sizeof buf, &n) != AMBIT_RESULT_OK) return 1;\n\
           printf(\"%s %.*s\\n\", ambit_version(), (int)n, buf);\n\
           return 0;\n\
         }\n",
    )
    .expect("write");
    let exe = tmp.path().join("hello");
    let cc = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror"])
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .args(flags.split_whitespace())
        .output()
        .expect("cc");
    assert!(
        cc.status.success(),
        "linking with `pkg-config --static` flags ({flags}) failed:\n{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let out = Command::new(&exe).output().expect("run");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{} success\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn cargo_c_metadata_installs_the_committed_header_as_ambit() {
    let toml = read(&manifest().join("Cargo.toml"));
    for want in [
        "[package.metadata.capi.header]\nname = \"ambit\"",
        "generation = false",
        "asset = [{ from = \"include/ambit.h\", to = \"\" }]",
        "[package.metadata.capi.library]\nname = \"ambit\"\nversion_suffix_components = 3",
        "[package.metadata.capi.pkg_config]\nname = \"ambit\"\nfilename = \"ambit\"",
        "description = \"Embeddable Istio-ambient-compatible service-mesh data plane (C ABI, unstable until 1.0)\"",
    ] {
        assert!(toml.contains(want), "ffi/Cargo.toml lacks {want:?}");
    }
    assert!(manifest().join("include/ambit.h").exists());
    let header = read(&manifest().join("include/ambit.h"));
    assert!(header.contains("unstable until 1.0"));
}
