//! Compiles the project's `.proto` files (`proto/` at the workspace root) with protox, a pure
//! Rust protobuf compiler, so that building needs no `protoc` on the machine; prost and tonic
//! generate the messages and the clients (no servers: the fake istiod in `tools/` is the
//! server, written separately in Python).

use std::path::PathBuf;

const FILES: [&str; 5] = [
    "istio/workload/workload.proto",
    "istio/security/authorization.proto",
    "envoy/service/discovery/v3/discovery.proto",
    "istio/ca/ca.proto",
    "istio/zds/zds.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let fds = protox::compile(FILES, [&root])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
