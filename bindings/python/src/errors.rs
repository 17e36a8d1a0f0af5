//! The Python exception hierarchy, and the one mapping from `ambit::Error` into it.
//!
//! The facade's error is opaque: its predicates pick the subclass, and the structured fields
//! it carries (the refusing HTTP status; the file, object and field of a configuration error)
//! become attributes of the exception.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    ambit,
    AmbitError,
    PyException,
    "Base class of every ambit error."
);
create_exception!(
    ambit,
    IdentityError,
    AmbitError,
    "A SPIFFE id, certificate or credential problem."
);
create_exception!(
    ambit,
    TlsError,
    AmbitError,
    "A TLS configuration or handshake problem."
);
create_exception!(
    ambit,
    TunnelError,
    AmbitError,
    "An HBONE tunnel could not be opened; `status` holds the HTTP status when the peer refused."
);
create_exception!(
    ambit,
    ConfigError,
    AmbitError,
    "Configuration (YAML, policy, routes, a key set) was refused; `file`, `object` and `field` \
     say where, when known."
);

/// Maps any ambit error to its Python exception, keeping the structured fields.
pub(crate) fn ambit_err(e: impl Into<facade::Error>) -> PyErr {
    let e: facade::Error = e.into();
    let msg = e.to_string();
    Python::attach(|py| {
        if e.is_config() {
            let (file, object, field) = config_location(&e);
            let err = ConfigError::new_err(msg);
            let v = err.value(py);
            let _ = v.setattr("file", file);
            let _ = v.setattr("object", object);
            let _ = v.setattr("field", field);
            err
        } else if e.is_tunnel() {
            let err = TunnelError::new_err(msg);
            let _ = err.value(py).setattr("status", e.status());
            err
        } else if e.is_identity() {
            IdentityError::new_err(msg)
        } else if e.is_tls() {
            TlsError::new_err(msg)
        } else {
            AmbitError::new_err(msg)
        }
    })
}

/// Where a configuration error is: (file, object, field), each when the error says.
fn config_location(e: &facade::Error) -> (Option<String>, Option<String>, Option<String>) {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    match e.location() {
        Some(at) => (some(at.file), some(at.object), some(at.field)),
        None => (None, None, None),
    }
}

/// A `ValueError` (an argument Python passed is malformed, not an ambit configuration).
pub(crate) fn value_err(msg: impl Into<String>) -> PyErr {
    pyo3::exceptions::PyValueError::new_err(msg.into())
}
