//! HBONE end to end over loopback: ambit client ↔ ambit server, and independent peers.
//! One test binary (submodules under `hbone/`) to save link time.

#[path = "hbone/adversarial.rs"]
mod adversarial;
#[path = "hbone/drain.rs"]
mod drain;
#[path = "hbone/echo.rs"]
mod echo;
#[path = "hbone/envoy.rs"]
mod envoy;
#[path = "hbone/envoy_h3.rs"]
mod envoy_h3;
#[path = "hbone/failures.rs"]
mod failures;
#[path = "hbone/h3.rs"]
mod h3;
#[path = "hbone/h3_interop.rs"]
mod h3_interop;
#[path = "hbone/interop.rs"]
mod interop;
#[path = "hbone/load.rs"]
mod load;
#[path = "hbone/pool.rs"]
mod pool;
#[path = "hbone/udp.rs"]
mod udp;
