//! SPIFFE ids and peer-chain verification, as pure decisions.

use std::time::{Duration, UNIX_EPOCH};

use facade::identity::pki_types::CertificateDer;
use facade::identity::pki_types::pem::PemObject;
use facade::identity::{ChainVerifier, SpiffeId, TrustBundle, TrustDomain, Usage, VerifyError};

use crate::error::{Error, ambit_error, ambit_result};
use crate::macros::{ffi_panic_boundary, try_out, try_slice, try_str, write_out};

/// Which part of a SPIFFE id to read.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ambit_spiffe_id_part_kind {
    /// The trust domain, e.g. `cluster.local`.
    AMBIT_SPIFFE_ID_PART_KIND_TRUST_DOMAIN = 0,
    /// The Istio namespace (`/ns/<ns>/sa/<sa>` paths only).
    AMBIT_SPIFFE_ID_PART_KIND_NAMESPACE = 1,
    /// The Istio service account (`/ns/<ns>/sa/<sa>` paths only).
    AMBIT_SPIFFE_ID_PART_KIND_SERVICE_ACCOUNT = 2,
    /// The id without `spiffe://`, as Istio policies write principals.
    AMBIT_SPIFFE_ID_PART_KIND_PRINCIPAL = 3,
}

/// What a verified certificate must be good for.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ambit_cert_usage {
    /// A client certificate (checked by servers).
    AMBIT_CERT_USAGE_CLIENT = 0,
    /// A server certificate (checked by clients).
    AMBIT_CERT_USAGE_SERVER = 1,
}

/// Checks that `(id, id_len)` is a valid SPIFFE id. Returns `AMBIT_RESULT_OK` or
/// `AMBIT_RESULT_INVALID_SPIFFE_ID` (with details in `*err_out` when `err_out` is non-NULL).
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_spiffe_id_check(
    id: *const u8,
    id_len: usize,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let s = try_str!(id, id_len);
        match SpiffeId::parse(s) {
            Ok(_) => ambit_result::AMBIT_RESULT_OK,
            Err(e) => {
                let err = Error {
                    code: ambit_result::AMBIT_RESULT_INVALID_SPIFFE_ID,
                    message: format!("{s:?}: {e}"),
                };
                // SAFETY: `err_out` is NULL or writable (caller contract).
                unsafe { err.give(err_out) }
            }
        }
    })
}

/// Copies one part of a valid SPIFFE id into `buf` (not NUL-terminated); `*out_n` gets the
/// length. Namespace and service account exist only for Istio-shaped ids; otherwise the
/// result is `AMBIT_RESULT_INVALID_SPIFFE_ID`. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_spiffe_id_part(
    id: *const u8,
    id_len: usize,
    part: u32,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> ambit_result {
    ffi_panic_boundary!({
        let s = try_str!(id, id_len);
        let out_n = try_out!(out_n);
        let Ok(id) = SpiffeId::parse(s) else {
            return ambit_result::AMBIT_RESULT_INVALID_SPIFFE_ID;
        };
        use ambit_spiffe_id_part_kind as K;
        let value = match part {
            p if p == K::AMBIT_SPIFFE_ID_PART_KIND_TRUST_DOMAIN as u32 => {
                Some(id.trust_domain_name())
            }
            p if p == K::AMBIT_SPIFFE_ID_PART_KIND_NAMESPACE as u32 => id.namespace(),
            p if p == K::AMBIT_SPIFFE_ID_PART_KIND_SERVICE_ACCOUNT as u32 => id.service_account(),
            p if p == K::AMBIT_SPIFFE_ID_PART_KIND_PRINCIPAL as u32 => Some(id.principal()),
            _ => return ambit_result::AMBIT_RESULT_INVALID_PARAMETER,
        };
        match value {
            // SAFETY: `out_n` checked non-NULL; `buf`/`len` per this function's contract.
            Some(v) => unsafe { write_out(v.as_bytes(), buf, len, out_n) },
            None => ambit_result::AMBIT_RESULT_INVALID_SPIFFE_ID,
        }
    })
}

/// Verifies a peer's certificate chain (PEM, leaf first) against the roots in `bundle_pem`,
/// trusted for `trust_domain`, for `usage` at `unix_seconds` (0 = now). On success copies the
/// peer's SPIFFE id into `id_buf` (`*id_n` = length). On failure returns the specific
/// `AMBIT_RESULT_CERT_*` code and, if `err_out` is non-NULL, an error with the details.
/// Thread-safe; no I/O.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ambit_verify_peer_chain(
    chain_pem: *const u8,
    chain_len: usize,
    bundle_pem: *const u8,
    bundle_len: usize,
    trust_domain: *const u8,
    trust_domain_len: usize,
    usage: u32,
    unix_seconds: u64,
    id_buf: *mut u8,
    id_buf_len: usize,
    id_n: *mut usize,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let chain = try_slice!(chain_pem, chain_len);
        let bundle = try_slice!(bundle_pem, bundle_len);
        let td = try_str!(trust_domain, trust_domain_len);
        let id_n = try_out!(id_n);
        let usage = match usage {
            u if u == ambit_cert_usage::AMBIT_CERT_USAGE_CLIENT as u32 => Usage::ClientAuth,
            u if u == ambit_cert_usage::AMBIT_CERT_USAGE_SERVER as u32 => Usage::ServerAuth,
            _ => return ambit_result::AMBIT_RESULT_INVALID_PARAMETER,
        };
        let fail = |code, message: String| {
            let e = Error { code, message };
            // SAFETY: `err_out` is NULL or writable (caller contract).
            unsafe { e.give(err_out) }
        };
        let td = match TrustDomain::new(td) {
            Ok(t) => t,
            Err(e) => {
                return fail(
                    ambit_result::AMBIT_RESULT_INVALID_PARAMETER,
                    format!("trust domain: {e}"),
                );
            }
        };
        let bundle = match TrustBundle::from_pem(td, bundle) {
            Ok(b) => b,
            Err(e) => {
                return fail(
                    ambit_result::AMBIT_RESULT_CERT_MALFORMED,
                    format!("bundle: {e}"),
                );
            }
        };
        let certs: Result<Vec<CertificateDer<'static>>, _> =
            CertificateDer::pem_slice_iter(chain).collect();
        let certs = match certs {
            Ok(c) => c,
            Err(e) => {
                return fail(
                    ambit_result::AMBIT_RESULT_CERT_MALFORMED,
                    format!("chain: {e}"),
                );
            }
        };
        let now = if unix_seconds == 0 {
            std::time::SystemTime::now()
        } else {
            UNIX_EPOCH + Duration::from_secs(unix_seconds)
        };
        match ChainVerifier::default().verify(&bundle, &certs, usage, now) {
            // SAFETY: `id_n` checked non-NULL; `id_buf`/`id_buf_len` per the contract.
            Ok(id) => unsafe { write_out(id.as_str().as_bytes(), id_buf, id_buf_len, id_n) },
            Err(e) => fail(code_of(&e), e.to_string()),
        }
    })
}

fn code_of(e: &VerifyError) -> ambit_result {
    use ambit_result as R;
    match e {
        VerifyError::EmptyChain | VerifyError::Malformed { .. } => R::AMBIT_RESULT_CERT_MALFORMED,
        VerifyError::NoSpiffeId
        | VerifyError::MultipleSpiffeIds { .. }
        | VerifyError::InvalidSpiffeId { .. } => R::AMBIT_RESULT_CERT_NO_SPIFFE_ID,
        VerifyError::ForeignTrustDomain { .. } => R::AMBIT_RESULT_CERT_FOREIGN_TRUST_DOMAIN,
        VerifyError::UntrustedRoot { .. } => R::AMBIT_RESULT_CERT_UNTRUSTED,
        VerifyError::Expired { .. } => R::AMBIT_RESULT_CERT_EXPIRED,
        VerifyError::NotYetValid { .. } => R::AMBIT_RESULT_CERT_NOT_YET_VALID,
        VerifyError::WrongUsage { .. } => R::AMBIT_RESULT_CERT_WRONG_USAGE,
        VerifyError::BadSignature { .. } => R::AMBIT_RESULT_CERT_BAD_SIGNATURE,
        _ => R::AMBIT_RESULT_CERT_INVALID,
    }
}
