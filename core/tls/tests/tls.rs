//! HBONE mTLS over real loopback sockets, against ourselves and against openssl.
//! One test binary (submodules under `tls/`) to save link time.

#[path = "tls/handshake.rs"]
mod handshake;
#[path = "tls/openssl.rs"]
mod openssl;
#[path = "tls/rotation.rs"]
mod rotation;
#[path = "tls/support.rs"]
mod support;
