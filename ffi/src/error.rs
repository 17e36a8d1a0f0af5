//! Result codes and rich errors.

use crate::ffi::{
    Castable, OwnershipArc, OwnershipBox, ffi_panic_boundary, free_box, to_arc_const_ptr,
    to_boxed_mut_ptr, try_out, try_ref_from_ptr, write_out,
};

/// What a call did. Numbers are stable: they are never reused or renumbered.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ambit_result {
    // --- 1000: glue ---
    /// Success.
    AMBIT_RESULT_OK = 1000,
    /// A required pointer was NULL.
    AMBIT_RESULT_NULL_PARAMETER = 1001,
    /// A bug inside ambit (a Rust panic was caught); please report it.
    AMBIT_RESULT_PANIC = 1002,
    /// A parameter is malformed (bad UTF-8, unknown enum value, bad address).
    AMBIT_RESULT_INVALID_PARAMETER = 1003,
    /// An output buffer is too small; the needed size was written to the length out-param.
    AMBIT_RESULT_INSUFFICIENT_SIZE = 1004,
    /// Nothing is ready yet; poll and try again.
    AMBIT_RESULT_WOULD_BLOCK = 1005,
    /// An operating-system error (sockets, threads).
    AMBIT_RESULT_IO = 1006,
    /// The item asked for does not exist (an index past the end, a claim the token lacks).
    AMBIT_RESULT_NOT_FOUND = 1007,
    // --- 1100: identity ---
    /// Not a valid SPIFFE id.
    AMBIT_RESULT_INVALID_SPIFFE_ID = 1100,
    /// Unreadable certificate or PEM.
    AMBIT_RESULT_CERT_MALFORMED = 1101,
    /// Certificate expired.
    AMBIT_RESULT_CERT_EXPIRED = 1102,
    /// Certificate not valid yet.
    AMBIT_RESULT_CERT_NOT_YET_VALID = 1103,
    /// No path to a trusted root of the peer's trust domain.
    AMBIT_RESULT_CERT_UNTRUSTED = 1104,
    /// The peer's trust domain is not trusted.
    AMBIT_RESULT_CERT_FOREIGN_TRUST_DOMAIN = 1105,
    /// No (or more than one) SPIFFE id in the certificate, or an invalid one.
    AMBIT_RESULT_CERT_NO_SPIFFE_ID = 1106,
    /// A signature in the chain does not verify.
    AMBIT_RESULT_CERT_BAD_SIGNATURE = 1107,
    /// The certificate lacks the required extended key usage.
    AMBIT_RESULT_CERT_WRONG_USAGE = 1108,
    /// Any other chain-validation failure.
    AMBIT_RESULT_CERT_INVALID = 1109,
    // --- 1300: HBONE and its codecs ---
    /// The tunnel could not be opened (unreachable peer, TLS failure, wrong identity).
    AMBIT_RESULT_TUNNEL_FAILED = 1302,
    /// The HBONE peer refused the tunnel (401 denied, 503 unreachable...); see the error.
    AMBIT_RESULT_TUNNEL_REFUSED = 1303,
    /// A PROXY v2 header needs more bytes.
    AMBIT_RESULT_PROXY_HEADER_INCOMPLETE = 1300,
    /// Bytes that are not a valid PROXY v2 header.
    AMBIT_RESULT_PROXY_HEADER_INVALID = 1301,
    // --- 1400: authentication and authorization (denials are values, not result codes) ---
    /// No RequestAuthentication rule uses this `jwksUri`.
    AMBIT_RESULT_JWKS_UNKNOWN_URI = 1400,
    /// Not a usable JSON Web Key Set (malformed, or no key that can verify signatures), or an
    /// OpenID discovery document without `jwks_uri`; the `ambit_error` says which.
    AMBIT_RESULT_JWKS_INVALID = 1401,
    // --- 1500: config ---
    /// Configuration (YAML, policy) was refused; the `ambit_error` says where and why.
    AMBIT_RESULT_CONFIG_INVALID = 1500,
}

/// A detailed error: a result code plus a message naming what was wrong.
///
/// Owned by the caller once returned; release with `ambit_error_free`. Not thread-safe to
/// free concurrently with reading; reading from several threads is fine.
#[derive(Debug)]
pub struct ambit_error {
    _private: [u8; 0],
}

impl Castable for ambit_error {
    type Ownership = OwnershipBox;
    type RustType = Error;
}

pub(crate) struct Error {
    pub(crate) code: ambit_result,
    pub(crate) message: String,
    /// `(file, object, field)` of a configuration error.
    pub(crate) location: Option<[String; 3]>,
}

impl Error {
    /// An error the ABI itself raises (a malformed argument): `code` and `message`.
    pub(crate) fn new(code: ambit_result, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            location: None,
        }
    }

    /// The same error, its message prefixed with what it was about (`bundle: ...`).
    pub(crate) fn context(mut self, what: &str) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// Hands the error to C through `out` (if non-NULL) and returns its code.
    ///
    /// # Safety
    /// `out` must be NULL or valid for a pointer write.
    pub(crate) unsafe fn give(self, out: *mut *mut ambit_error) -> ambit_result {
        let code = self.code;
        if !out.is_null() {
            // SAFETY: `out` is non-NULL and the caller guarantees it is writable.
            unsafe { *out = to_boxed_mut_ptr(self) };
        }
        code
    }
}

/// THE mapping from ambit's errors to result codes: every error that crosses the C ABI goes
/// through here (tested exhaustively below), keeping its message and, for configuration
/// errors, where it is.
impl From<facade::Error> for Error {
    fn from(e: facade::Error) -> Self {
        let location = e.location().map(|at| {
            [
                at.file.to_owned(),
                at.object.to_owned(),
                at.field.to_owned(),
            ]
        });
        Self {
            code: result_of(&e),
            message: e.to_string(),
            location,
        }
    }
}

/// The result code for an ambit error.
pub(crate) fn result_of(e: &facade::Error) -> ambit_result {
    use ambit_result as R;
    use facade::identity::VerifyError as V;
    if let Some(v) = e.downcast_ref::<V>() {
        return match v {
            V::EmptyChain | V::Malformed { .. } => R::AMBIT_RESULT_CERT_MALFORMED,
            V::NoSpiffeId | V::MultipleSpiffeIds { .. } | V::InvalidSpiffeId { .. } => {
                R::AMBIT_RESULT_CERT_NO_SPIFFE_ID
            }
            V::ForeignTrustDomain { .. } => R::AMBIT_RESULT_CERT_FOREIGN_TRUST_DOMAIN,
            V::UntrustedRoot { .. } => R::AMBIT_RESULT_CERT_UNTRUSTED,
            V::Expired { .. } => R::AMBIT_RESULT_CERT_EXPIRED,
            V::NotYetValid { .. } => R::AMBIT_RESULT_CERT_NOT_YET_VALID,
            V::WrongUsage { .. } => R::AMBIT_RESULT_CERT_WRONG_USAGE,
            V::BadSignature { .. } => R::AMBIT_RESULT_CERT_BAD_SIGNATURE,
            _ => R::AMBIT_RESULT_CERT_INVALID,
        };
    }
    if e.downcast_ref::<facade::identity::SpiffeIdError>()
        .is_some()
    {
        return R::AMBIT_RESULT_INVALID_SPIFFE_ID;
    }
    if let Some(j) = e.downcast_ref::<facade::authn::JwksError>() {
        return match j {
            facade::authn::JwksError::UnknownUri(_) => R::AMBIT_RESULT_JWKS_UNKNOWN_URI,
            _ => R::AMBIT_RESULT_JWKS_INVALID,
        };
    }
    if e.is_config() {
        R::AMBIT_RESULT_CONFIG_INVALID
    } else if e.is_tunnel() {
        if e.status().is_some() {
            R::AMBIT_RESULT_TUNNEL_REFUSED
        } else {
            R::AMBIT_RESULT_TUNNEL_FAILED
        }
    } else if e.is_identity() {
        if e.downcast_ref::<facade::identity::SvidError>().is_some()
            || e.downcast_ref::<facade::identity::CredentialError>()
                .is_some()
        {
            R::AMBIT_RESULT_CERT_MALFORMED
        } else {
            R::AMBIT_RESULT_CERT_INVALID
        }
    } else if e.is_tls() {
        R::AMBIT_RESULT_CERT_INVALID
    } else {
        // A proxy that could not start: a listener, credentials, a setting.
        R::AMBIT_RESULT_IO
    }
}

/// Hands `err` to C through `err_out` and returns its code: how an export fails.
pub(crate) fn fail(err: impl Into<Error>, err_out: *mut *mut ambit_error) -> ambit_result {
    // SAFETY: `err_out` is NULL or writable per every export's contract.
    unsafe { err.into().give(err_out) }
}

/// Hands a freshly loaded object to C as a shared handle through `out`, or the load error
/// through `err_out`: what every `_from_yaml` returns.
///
/// # Safety
/// `out` must be non-NULL and valid for a pointer write; `err_out` NULL or valid for one.
pub(crate) unsafe fn give_loaded<C, E>(
    loaded: Result<C::RustType, E>,
    out: *mut *const C,
    err_out: *mut *mut ambit_error,
) -> ambit_result
where
    C: Castable<Ownership = OwnershipArc>,
    facade::Error: From<E>,
{
    match loaded {
        Ok(v) => {
            // SAFETY: `out` is non-NULL and writable per this function's contract.
            unsafe { *out = to_arc_const_ptr(std::sync::Arc::new(v)) };
            ambit_result::AMBIT_RESULT_OK
        }
        Err(e) => fail(facade::Error::from(e), err_out),
    }
}

impl From<facade::config::ConfigError> for Error {
    fn from(e: facade::config::ConfigError) -> Self {
        facade::Error::from(e).into()
    }
}

/// Load warnings as C reads them: one per line, empty when none.
pub(crate) fn warning_lines<T: std::fmt::Display>(warnings: &[T]) -> String {
    warnings
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The code of an error. Returns `AMBIT_RESULT_NULL_PARAMETER` for NULL.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_error_code(err: *const ambit_error) -> ambit_result {
    ffi_panic_boundary!({
        let e: &Error = try_ref_from_ptr!(err);
        e.code
    })
}

/// Copies an error's message (UTF-8, not NUL-terminated) into `buf`; `*out_n` gets its length
/// (or the size needed, with `AMBIT_RESULT_INSUFFICIENT_SIZE`).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_error_message(
    err: *const ambit_error,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> ambit_result {
    ffi_panic_boundary!({
        let e: &Error = try_ref_from_ptr!(err);
        let out_n = try_out!(out_n);
        // SAFETY: `out_n` checked non-NULL; `buf`/`len` per this function's contract.
        unsafe { write_out(e.message.as_bytes(), buf, len, out_n) }
    })
}

/// Where a configuration error is (`AMBIT_RESULT_CONFIG_INVALID`): `*file_out` the file name
/// given (empty when none), `*object_out` the object (`HTTPRoute shop/reviews`,
/// `workloads[2] (shop/web)`, `document 3`), `*field_out` the field path in it
/// (`spec.rules[0].matches[0].path.type`; empty for the object as a whole). The strings point
/// into the error and are valid until it is freed. Returns `AMBIT_RESULT_NOT_FOUND` for an
/// error that has no place in a configuration.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_error_location(
    err: *const ambit_error,
    file_out: *mut crate::strings::ambit_str,
    object_out: *mut crate::strings::ambit_str,
    field_out: *mut crate::strings::ambit_str,
) -> ambit_result {
    ffi_panic_boundary!({
        let e: &Error = try_ref_from_ptr!(err);
        let file_out = try_out!(file_out);
        let object_out = try_out!(object_out);
        let field_out = try_out!(field_out);
        let Some([file, object, field]) = &e.location else {
            return ambit_result::AMBIT_RESULT_NOT_FOUND;
        };
        use crate::strings::ambit_str;
        // SAFETY: the three outputs are checked non-NULL and writable per the contract.
        unsafe {
            *file_out = ambit_str::borrow(file.as_bytes());
            *object_out = ambit_str::borrow(object.as_bytes());
            *field_out = ambit_str::borrow(field.as_bytes());
        }
        ambit_result::AMBIT_RESULT_OK
    })
}

/// Frees an error. NULL is a no-op; freeing twice is undefined behaviour.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_error_free(err: *mut ambit_error) {
    ffi_panic_boundary!((), {
        // SAFETY: NULL, or an error made by `Error::give` (a leaked Box) that the caller frees
        // once.
        unsafe { free_box(err) }
    })
}

/// A short English description of a result code (not NUL-terminated) into `buf`; `*out_n`
/// gets its length, or the size needed with `AMBIT_RESULT_INSUFFICIENT_SIZE`.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_result_message(
    result: u32,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> ambit_result {
    ffi_panic_boundary!({
        let out_n = try_out!(out_n);
        let text = describe(result);
        // SAFETY: `out_n` checked non-NULL; `buf`/`len` per this function's contract.
        unsafe { write_out(text.as_bytes(), buf, len, out_n) }
    })
}

fn describe(code: u32) -> &'static str {
    use ambit_result as R;
    let known = [
        (R::AMBIT_RESULT_OK, "success"),
        (
            R::AMBIT_RESULT_NULL_PARAMETER,
            "a required pointer was NULL",
        ),
        (
            R::AMBIT_RESULT_PANIC,
            "internal error (a bug in ambit; please report it)",
        ),
        (R::AMBIT_RESULT_INVALID_PARAMETER, "invalid parameter"),
        (R::AMBIT_RESULT_INSUFFICIENT_SIZE, "output buffer too small"),
        (R::AMBIT_RESULT_WOULD_BLOCK, "nothing ready yet"),
        (R::AMBIT_RESULT_IO, "operating-system error"),
        (R::AMBIT_RESULT_NOT_FOUND, "no such item"),
        (
            R::AMBIT_RESULT_JWKS_UNKNOWN_URI,
            "no RequestAuthentication rule uses this jwksUri",
        ),
        (
            R::AMBIT_RESULT_JWKS_INVALID,
            "not a usable JSON Web Key Set",
        ),
        (
            R::AMBIT_RESULT_TUNNEL_FAILED,
            "HBONE tunnel could not be opened",
        ),
        (
            R::AMBIT_RESULT_TUNNEL_REFUSED,
            "HBONE peer refused the tunnel",
        ),
        (R::AMBIT_RESULT_INVALID_SPIFFE_ID, "invalid SPIFFE id"),
        (
            R::AMBIT_RESULT_CERT_MALFORMED,
            "malformed certificate or PEM",
        ),
        (R::AMBIT_RESULT_CERT_EXPIRED, "certificate expired"),
        (
            R::AMBIT_RESULT_CERT_NOT_YET_VALID,
            "certificate not valid yet",
        ),
        (
            R::AMBIT_RESULT_CERT_UNTRUSTED,
            "certificate not signed by a trusted root",
        ),
        (
            R::AMBIT_RESULT_CERT_FOREIGN_TRUST_DOMAIN,
            "peer's trust domain is not trusted",
        ),
        (
            R::AMBIT_RESULT_CERT_NO_SPIFFE_ID,
            "certificate has no single valid SPIFFE id",
        ),
        (
            R::AMBIT_RESULT_CERT_BAD_SIGNATURE,
            "certificate signature does not verify",
        ),
        (
            R::AMBIT_RESULT_CERT_WRONG_USAGE,
            "certificate lacks the required key usage",
        ),
        (R::AMBIT_RESULT_CERT_INVALID, "certificate chain is invalid"),
        (
            R::AMBIT_RESULT_PROXY_HEADER_INCOMPLETE,
            "PROXY v2 header needs more bytes",
        ),
        (
            R::AMBIT_RESULT_PROXY_HEADER_INVALID,
            "not a valid PROXY v2 header",
        ),
        (R::AMBIT_RESULT_CONFIG_INVALID, "invalid configuration"),
    ];
    known
        .iter()
        .find(|(r, _)| *r as u32 == code)
        .map_or("unknown result code", |(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code<E>(e: E) -> ambit_result
    where
        facade::Error: From<E>,
    {
        result_of(&facade::Error::from(e))
    }

    /// Every kind of ambit error maps to its code, and the location of a config error comes
    /// along: the one mapping, checked variant by variant.
    #[test]
    fn every_error_kind_has_its_code() {
        use ambit_result as R;
        use facade::identity::{SpiffeId, VerifyError as V};
        let id = || SpiffeId::parse("spiffe://a/ns/b/sa/c").expect("id");
        let td = || facade::identity::TrustDomain::new("a").expect("td");
        let cases: Vec<(facade::Error, R)> = vec![
            (V::EmptyChain.into(), R::AMBIT_RESULT_CERT_MALFORMED),
            (V::NoSpiffeId.into(), R::AMBIT_RESULT_CERT_NO_SPIFFE_ID),
            (
                V::ForeignTrustDomain {
                    id: id(),
                    trust_domain: td(),
                    trusted: String::new(),
                }
                .into(),
                R::AMBIT_RESULT_CERT_FOREIGN_TRUST_DOMAIN,
            ),
            (
                facade::identity::SpiffeId::parse("nope")
                    .expect_err("bad")
                    .into(),
                R::AMBIT_RESULT_INVALID_SPIFFE_ID,
            ),
            (
                facade::authn::JwksError::UnknownUri("u".into()).into(),
                R::AMBIT_RESULT_JWKS_UNKNOWN_URI,
            ),
            (
                facade::authn::JwksError::Malformed("m".into()).into(),
                R::AMBIT_RESULT_JWKS_INVALID,
            ),
            (
                facade::config::ConfigError::new("f", "o", "x", "m").into(),
                R::AMBIT_RESULT_CONFIG_INVALID,
            ),
            (
                facade::identity::CaError::WrongTrustDomain { ca: td(), id: id() }.into(),
                R::AMBIT_RESULT_CERT_INVALID,
            ),
            (
                facade::proxy::ProxyError::Config("x".into()).into(),
                R::AMBIT_RESULT_IO,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(result_of(&e), want, "{e:?}");
        }
        assert_eq!(
            code(facade::hbone::HboneError::ConnectTimeout {
                addr: "127.0.0.1:1".parse().expect("addr"),
                after: std::time::Duration::from_secs(1),
            }),
            R::AMBIT_RESULT_TUNNEL_FAILED
        );
        assert_eq!(
            code(facade::hbone::HboneError::Rejected {
                addr: "127.0.0.1:1".parse().expect("addr"),
                authority: "a:1".into(),
                status: facade::hbone::http::StatusCode::UNAUTHORIZED,
            }),
            R::AMBIT_RESULT_TUNNEL_REFUSED
        );
        let e = Error::from(facade::config::ConfigError::new(
            "f.yaml", "Obj a/b", "spec.x", "m",
        ));
        assert_eq!(
            e.location,
            Some(["f.yaml".into(), "Obj a/b".into(), "spec.x".into()])
        );
    }
}
