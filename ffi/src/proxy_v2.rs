//! PROXY protocol v2 with the Istio identity TLV (0xD0), as pure encode/decode.

use facade::hbone::proxy_protocol::{ProxyHeader, ProxyHeaderError};

use crate::addr::ambit_socket_addr;
use crate::error::ambit_result;
use crate::ffi::{
    ffi_panic_boundary, try_ambit_bytes, try_ambit_str, try_out, try_ref_from_ptr, write_out,
};
use crate::strings::ambit_str;

/// Encodes a PROXY v2 header (command PROXY, TCP) from `src` to `dst`, with TLV 0xD0 set to
/// `identity` (a SPIFFE id) unless `identity_len` is 0. Writes it into `buf`; `*out_n` gets the
/// length (or the size needed). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_proxy_v2_encode(
    src: *const ambit_socket_addr,
    dst: *const ambit_socket_addr,
    identity: ambit_str,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> ambit_result {
    ffi_panic_boundary!({
        let src = try_ref_from_ptr!(src);
        let dst = try_ref_from_ptr!(dst);
        let id = try_ambit_str!(identity);
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

/// Decodes a PROXY v2 header at the start of `bytes`. On success: `*consumed_out` = header
/// length, `*src_out`/`*dst_out` = addresses (family 0 for LOCAL), and the 0xD0 identity (empty
/// if absent) copied into `id_buf` with `*id_n` = its length. With too few bytes returns
/// `AMBIT_RESULT_PROXY_HEADER_INCOMPLETE` and sets only `*consumed_out` to the total length
/// needed (when known, else the minimum). Thread-safe.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ambit_proxy_v2_decode(
    bytes: ambit_str,
    consumed_out: *mut usize,
    src_out: *mut ambit_socket_addr,
    dst_out: *mut ambit_socket_addr,
    id_buf: *mut u8,
    id_buf_len: usize,
    id_n: *mut usize,
) -> ambit_result {
    ffi_panic_boundary!({
        let bytes = try_ambit_bytes!(bytes);
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
            Err(ProxyHeaderError::Incomplete { needed }) => {
                // SAFETY: checked non-NULL and writable per the contract.
                unsafe { *consumed_out = needed };
                ambit_result::AMBIT_RESULT_PROXY_HEADER_INCOMPLETE
            }
            Err(_) => ambit_result::AMBIT_RESULT_PROXY_HEADER_INVALID,
        }
    })
}
