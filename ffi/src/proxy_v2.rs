//! PROXY protocol v2 with the Istio identity TLV (0xD0), as pure encode/decode.

use std::net::{IpAddr, SocketAddr};

use facade::hbone::proxy_protocol::{ProxyError, ProxyHeader};

use crate::error::ambit_result;
use crate::macros::{
    Castable, OwnershipRef, ffi_panic_boundary, try_out, try_ref_from_ptr, try_slice, try_str,
    write_out,
};

/// An IP socket address: `family` 4 (first 4 bytes of `ip` used) or 6; 0 means "none" (a LOCAL
/// PROXY header).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ambit_socket_addr {
    /// 4, 6, or 0 for none.
    pub family: u8,
    /// Address bytes in network order.
    pub ip: [u8; 16],
    /// Port.
    pub port: u16,
}

impl Castable for ambit_socket_addr {
    type Ownership = OwnershipRef;
    type RustType = ambit_socket_addr;
}

impl ambit_socket_addr {
    pub(crate) fn to_rust(self) -> Option<SocketAddr> {
        match self.family {
            4 => Some(SocketAddr::new(
                IpAddr::from([self.ip[0], self.ip[1], self.ip[2], self.ip[3]]),
                self.port,
            )),
            6 => Some(SocketAddr::new(IpAddr::from(self.ip), self.port)),
            _ => None,
        }
    }

    fn from_rust(a: SocketAddr) -> Self {
        let mut out = Self {
            family: 4,
            ip: [0; 16],
            port: a.port(),
        };
        match a.ip() {
            IpAddr::V4(v4) => out.ip[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => {
                out.family = 6;
                out.ip = v6.octets();
            }
        }
        out
    }
}

/// Encodes a PROXY v2 header (command PROXY, TCP) from `src` to `dst`, with TLV 0xD0 set to
/// `identity` (a SPIFFE id) unless `identity_len` is 0. Writes it into `buf`; `*out_n` gets the
/// length (or the size needed). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_proxy_v2_encode(
    src: *const ambit_socket_addr,
    dst: *const ambit_socket_addr,
    identity: *const u8,
    identity_len: usize,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> ambit_result {
    ffi_panic_boundary!({
        let src = try_ref_from_ptr!(src);
        let dst = try_ref_from_ptr!(dst);
        let id = try_str!(identity, identity_len);
        let out_n = try_out!(out_n);
        let (Some(s), Some(d)) = (src.to_rust(), dst.to_rust()) else {
            return ambit_result::AMBIT_RESULT_INVALID_PARAMETER;
        };
        let mut h = ProxyHeader::new(s, d);
        if !id.is_empty() {
            h = h.with_peer_identity(id);
        }
        match h.encode() {
            // SAFETY: `out_n` checked non-NULL; `buf`/`len` per the contract.
            Ok(bytes) => unsafe { write_out(&bytes, buf, len, out_n) },
            Err(_) => ambit_result::AMBIT_RESULT_INVALID_PARAMETER,
        }
    })
}

/// Decodes a PROXY v2 header at the start of `(buf, len)`. On success: `*consumed_out` = header
/// length, `*src_out`/`*dst_out` = addresses (family 0 for LOCAL), and the 0xD0 identity (empty
/// if absent) copied into `id_buf` with `*id_n` = its length. With too few bytes returns
/// `AMBIT_RESULT_PROXY_HEADER_INCOMPLETE` and sets only `*consumed_out` to the total length
/// needed (when known, else the minimum). Thread-safe.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ambit_proxy_v2_decode(
    buf: *const u8,
    len: usize,
    consumed_out: *mut usize,
    src_out: *mut ambit_socket_addr,
    dst_out: *mut ambit_socket_addr,
    id_buf: *mut u8,
    id_buf_len: usize,
    id_n: *mut usize,
) -> ambit_result {
    ffi_panic_boundary!({
        let bytes = try_slice!(buf, len);
        let consumed_out = try_out!(consumed_out);
        let src_out = try_out!(src_out);
        let dst_out = try_out!(dst_out);
        let id_n = try_out!(id_n);
        match ProxyHeader::decode(bytes) {
            Ok((h, used)) => {
                let id = h
                    .tlv(facade::hbone::proxy_protocol::TLV_PEER_IDENTITY)
                    .unwrap_or_default();
                // SAFETY: `id_n` checked non-NULL; `id_buf`/`id_buf_len` per the contract.
                let r = unsafe { write_out(id, id_buf, id_buf_len, id_n) };
                if r != ambit_result::AMBIT_RESULT_OK {
                    return r;
                }
                let (s, d) = match h.addresses {
                    Some((s, d)) => (
                        ambit_socket_addr::from_rust(s),
                        ambit_socket_addr::from_rust(d),
                    ),
                    None => (ambit_socket_addr::default(), ambit_socket_addr::default()),
                };
                // SAFETY: all three checked non-NULL and writable per the contract.
                unsafe {
                    *consumed_out = used;
                    *src_out = s;
                    *dst_out = d;
                }
                ambit_result::AMBIT_RESULT_OK
            }
            Err(ProxyError::Incomplete { needed }) => {
                // SAFETY: checked non-NULL and writable per the contract.
                unsafe { *consumed_out = needed };
                ambit_result::AMBIT_RESULT_PROXY_HEADER_INCOMPLETE
            }
            Err(_) => ambit_result::AMBIT_RESULT_PROXY_HEADER_INVALID,
        }
    })
}
