//! IP socket addresses as they cross the ABI: one binary form, `ambit_socket_addr`, for every
//! address in and out (decisions, listener options, bound addresses), with text conversions for
//! hosts that hold addresses as strings.

use std::net::{IpAddr, SocketAddr};

use crate::error::ambit_result;
use crate::ffi::{
    Castable, OwnershipRef, ffi_panic_boundary, try_ambit_str, try_out, try_ref_from_ptr, write_out,
};
use crate::strings::ambit_str;

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

    pub(crate) fn from_rust(a: SocketAddr) -> Self {
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

/// Parses `ip:port` (`[v6]:port` for IPv6) into `*out`. `AMBIT_RESULT_INVALID_PARAMETER` when
/// the text is not one.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_socket_addr_parse(
    text: ambit_str,
    out: *mut ambit_socket_addr,
) -> ambit_result {
    ffi_panic_boundary!({
        let text = try_ambit_str!(text);
        let out = try_out!(out);
        let Ok(a) = text.parse::<SocketAddr>() else {
            return ambit_result::AMBIT_RESULT_INVALID_PARAMETER;
        };
        // SAFETY: `out` checked non-NULL and writable per the contract.
        unsafe { *out = ambit_socket_addr::from_rust(a) };
        ambit_result::AMBIT_RESULT_OK
    })
}

/// Writes `addr` as `ip:port` text into `buf` (`*out_n` = length, or the size needed).
/// `AMBIT_RESULT_INVALID_PARAMETER` for a family that is not 4 or 6.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_socket_addr_format(
    addr: *const ambit_socket_addr,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> ambit_result {
    ffi_panic_boundary!({
        let a: &ambit_socket_addr = try_ref_from_ptr!(addr);
        let out_n = try_out!(out_n);
        let Some(a) = a.to_rust() else {
            return ambit_result::AMBIT_RESULT_INVALID_PARAMETER;
        };
        // SAFETY: `out_n` checked non-NULL; `buf`/`len` per the contract.
        unsafe { write_out(a.to_string().as_bytes(), buf, len, out_n) }
    })
}

/// An optional address option: NULL for "off".
///
/// # Safety
/// `p` is NULL or points to a readable `ambit_socket_addr`.
pub(crate) unsafe fn optional(
    p: *const ambit_socket_addr,
) -> Result<Option<SocketAddr>, ambit_result> {
    // SAFETY: forwarded from this function's contract.
    match unsafe { crate::ffi::try_from(p) } {
        None => Ok(None),
        Some(a) => a
            .to_rust()
            .map(Some)
            .ok_or(ambit_result::AMBIT_RESULT_INVALID_PARAMETER),
    }
}
