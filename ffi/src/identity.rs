//! Identity: SPIFFE ids (checks, parts, parsed handles), peer-chain verification, and the
//! credentials a host presents (from the built-in CA or from PEM).

use std::time::{Duration, UNIX_EPOCH};

use facade::identity::pki_types::CertificateDer;
use facade::identity::pki_types::pem::PemObject;
use std::sync::Arc;

use facade::identity::{
    CertificateAuthority, ChainVerifier, Credentials, SpiffeId, Svid, TrustBundle, TrustDomain,
    Usage,
};
use facade::tls::CredentialCell;

use crate::error::{Error, ambit_error, ambit_result, fail};
use crate::ffi::{
    Castable, OwnershipArc, ffi_panic_boundary, free_arc, to_arc_const_ptr, try_ambit_bytes,
    try_ambit_str, try_out, try_ref_from_ptr, write_out,
};
use crate::runtime::{Runtime, ambit_runtime};
use crate::strings::ambit_str;

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
    id: ambit_str,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let s = try_ambit_str!(id);
        match SpiffeId::parse(s) {
            Ok(_) => ambit_result::AMBIT_RESULT_OK,
            Err(e) => fail(facade::Error::from(e), err_out),
        }
    })
}

/// Copies one part of a valid SPIFFE id into `buf` (not NUL-terminated); `*out_n` gets the
/// length. Namespace and service account exist only for Istio-shaped ids; otherwise the
/// result is `AMBIT_RESULT_INVALID_SPIFFE_ID`. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_spiffe_id_part(
    id: ambit_str,
    part: u32,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> ambit_result {
    ffi_panic_boundary!({
        let s = try_ambit_str!(id);
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
    chain_pem: ambit_str,
    bundle_pem: ambit_str,
    trust_domain: ambit_str,
    usage: u32,
    unix_seconds: u64,
    id_buf: *mut u8,
    id_buf_len: usize,
    id_n: *mut usize,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let chain = try_ambit_bytes!(chain_pem);
        let bundle = try_ambit_bytes!(bundle_pem);
        let td = try_ambit_str!(trust_domain);
        let id_n = try_out!(id_n);
        let usage = match usage {
            u if u == ambit_cert_usage::AMBIT_CERT_USAGE_CLIENT as u32 => Usage::ClientAuth,
            u if u == ambit_cert_usage::AMBIT_CERT_USAGE_SERVER as u32 => Usage::ServerAuth,
            _ => return ambit_result::AMBIT_RESULT_INVALID_PARAMETER,
        };
        let td = match TrustDomain::new(td) {
            Ok(t) => t,
            Err(e) => {
                let e = Error::new(
                    ambit_result::AMBIT_RESULT_INVALID_PARAMETER,
                    format!("trust domain: {e}"),
                );
                return fail(e, err_out);
            }
        };
        let bundle = match TrustBundle::from_pem(td, bundle) {
            Ok(b) => b,
            Err(e) => {
                return fail(
                    Error::from(facade::Error::from(e)).context("bundle"),
                    err_out,
                );
            }
        };
        let certs: Result<Vec<CertificateDer<'static>>, _> =
            CertificateDer::pem_slice_iter(chain).collect();
        let certs = match certs {
            Ok(c) => c,
            Err(e) => {
                let e = Error::new(
                    ambit_result::AMBIT_RESULT_CERT_MALFORMED,
                    format!("chain: {e}"),
                );
                return fail(e, err_out);
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
            Err(e) => fail(facade::Error::from(e), err_out),
        }
    })
}

// === parsed ids ===

/// A parsed SPIFFE id, made once (per peer) and passed to `ambit_policy_set_decide`.
///
/// Immutable and thread-safe; corresponds to `Arc<SpiffeId>`.
#[derive(Debug)]
pub struct ambit_spiffe_id {
    _private: [u8; 0],
}

impl Castable for ambit_spiffe_id {
    type Ownership = OwnershipArc;
    type RustType = SpiffeId;
}

/// Parses a SPIFFE id (`spiffe://...` or the scheme-less principal form) into a handle.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_spiffe_id_new(
    id: ambit_str,
    out: *mut *const ambit_spiffe_id,
) -> ambit_result {
    ffi_panic_boundary!({
        let s = try_ambit_str!(id);
        let out = try_out!(out);
        match SpiffeId::from_principal(s) {
            Ok(id) => {
                // SAFETY: `out` checked non-NULL and writable per the contract.
                unsafe { *out = to_arc_const_ptr(Arc::new(id)) };
                ambit_result::AMBIT_RESULT_OK
            }
            Err(_) => ambit_result::AMBIT_RESULT_INVALID_SPIFFE_ID,
        }
    })
}

/// Releases a SPIFFE id handle. NULL is a no-op.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_spiffe_id_free(id: *const ambit_spiffe_id) {
    ffi_panic_boundary!((), {
        // SAFETY: NULL, or a handle from `ambit_spiffe_id_new` released once.
        unsafe { free_arc(id) }
    })
}

// === credentials ===

/// A workload's certificate, key and trust bundle.
///
/// Immutable and thread-safe; corresponds to `Arc<CredentialCell>`.
#[derive(Debug)]
pub struct ambit_credentials {
    _private: [u8; 0],
}

/// A built-in certificate authority (for tests and demos).
///
/// Immutable and thread-safe; corresponds to `Arc<CertificateAuthority>`.
#[derive(Debug)]
pub struct ambit_ca {
    _private: [u8; 0],
}

impl Castable for ambit_credentials {
    type Ownership = OwnershipArc;
    type RustType = CredentialCell;
}

impl Castable for ambit_ca {
    type Ownership = OwnershipArc;
    type RustType = CertificateAuthority;
}

/// Creates a built-in CA for `trust_domain`.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_ca_new(
    trust_domain: ambit_str,
    out: *mut *const ambit_ca,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let td = try_ambit_str!(trust_domain);
        let out = try_out!(out);
        let td = match TrustDomain::new(td) {
            Ok(t) => t,
            Err(e) => {
                return fail(
                    Error::new(
                        ambit_result::AMBIT_RESULT_INVALID_PARAMETER,
                        format!("trust domain: {e}"),
                    ),
                    err_out,
                );
            }
        };
        match CertificateAuthority::new(td) {
            Ok(ca) => {
                // SAFETY: `out` checked non-NULL and writable per the contract.
                unsafe { *out = to_arc_const_ptr(Arc::new(ca)) };
                ambit_result::AMBIT_RESULT_OK
            }
            Err(e) => fail(facade::Error::from(e), err_out),
        }
    })
}

/// Releases a CA. NULL is a no-op.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_ca_free(ca: *const ambit_ca) {
    ffi_panic_boundary!((), {
        // SAFETY: NULL, or a CA from `ambit_ca_new` released once.
        unsafe { free_arc(ca) }
    })
}

/// Issues credentials for SPIFFE id `id` valid for `ttl_seconds`, trusting the CA's root.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_ca_issue(
    rt: *const ambit_runtime,
    ca: *const ambit_ca,
    id: ambit_str,
    ttl_seconds: u64,
    out: *mut *const ambit_credentials,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let rt: &Runtime = try_ref_from_ptr!(rt);
        let ca: &CertificateAuthority = try_ref_from_ptr!(ca);
        let id = try_ambit_str!(id);
        let out = try_out!(out);
        let Ok(id) = SpiffeId::parse(id) else {
            return fail(
                Error::new(
                    ambit_result::AMBIT_RESULT_INVALID_SPIFFE_ID,
                    format!("{id:?} is not a SPIFFE id"),
                ),
                err_out,
            );
        };
        let creds = match ca.credentials(&id, Duration::from_secs(ttl_seconds.max(1))) {
            Ok(c) => c,
            Err(e) => {
                return fail(facade::Error::from(e), err_out);
            }
        };
        give_cell(rt, &creds, out, err_out)
    })
}

/// Loads credentials from PEM: chain (leaf first), PKCS#8/SEC1 key, and roots trusted for the
/// SVID's trust domain.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ambit_credentials_from_pem(
    rt: *const ambit_runtime,
    chain_pem: ambit_str,
    key_pem: ambit_str,
    bundle_pem: ambit_str,
    out: *mut *const ambit_credentials,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let rt: &Runtime = try_ref_from_ptr!(rt);
        let chain = try_ambit_bytes!(chain_pem);
        let key = try_ambit_bytes!(key_pem);
        let bundle = try_ambit_bytes!(bundle_pem);
        let out = try_out!(out);
        let svid = match Svid::from_pem(chain, key) {
            Ok(s) => s,
            Err(e) => {
                return fail(facade::Error::from(e), err_out);
            }
        };
        let bundle = match TrustBundle::from_pem(svid.id().trust_domain(), bundle) {
            Ok(b) => b,
            Err(e) => {
                return fail(
                    Error::from(facade::Error::from(e)).context("bundle"),
                    err_out,
                );
            }
        };
        give_cell(rt, &Credentials::new(svid, bundle), out, err_out)
    })
}

fn give_cell(
    rt: &Runtime,
    creds: &Credentials,
    out: *mut *const ambit_credentials,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    match rt.tls.credential_cell(creds) {
        Ok(cell) => {
            // SAFETY: `out` was checked non-NULL by the caller and is writable.
            unsafe { *out = to_arc_const_ptr(cell) };
            ambit_result::AMBIT_RESULT_OK
        }
        Err(e) => fail(
            Error::new(ambit_result::AMBIT_RESULT_CERT_INVALID, e.to_string()),
            err_out,
        ),
    }
}

/// Releases credentials. NULL is a no-op.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_credentials_free(creds: *const ambit_credentials) {
    ffi_panic_boundary!((), {
        // SAFETY: NULL, or credentials made in this module, released once.
        unsafe { free_arc(creds) }
    })
}
