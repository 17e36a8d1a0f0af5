//! Borrowed strings, HTTP headers, and the header edits a decision asks the host to make.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::error::ambit_result;
use crate::ffi::{Castable, OwnershipRef, ffi_panic_boundary, try_from, try_out, try_ref_from_ptr};

/// A string as pointer + length: UTF-8 unless a field's doc says bytes, need not be
/// NUL-terminated; `data` may be NULL when `len` is 0.
///
/// As an input it is borrowed for the duration of the call. As an output it points into the
/// object it was read from and is valid until that object is freed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ambit_str {
    /// The bytes.
    pub data: *const u8,
    /// Their number.
    pub len: usize,
}

/// One HTTP header, borrowed for the duration of a call. The name is case-insensitive; the
/// value is bytes (visible ASCII and tabs, as HTTP allows; not necessarily UTF-8).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ambit_header {
    /// The header name.
    pub name: ambit_str,
    /// The header value.
    pub value: ambit_str,
}

/// What one header edit does.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ambit_header_op {
    /// Remove every value of the header.
    AMBIT_HEADER_OP_REMOVE = 0,
    /// Remove every value of the header, then add this one.
    AMBIT_HEADER_OP_SET = 1,
    /// Add this value, keeping the header's other values (it follows a SET of the same name
    /// when a header ends up with several values).
    AMBIT_HEADER_OP_APPEND = 2,
}

/// An ordered list of header edits: applied in order to the headers that were passed in, they
/// give the headers to forward (or to return). Names are lower-case.
///
/// Always borrowed from the decision or result it was read from
/// (`ambit_route_decision_request_edits`, `ambit_route_decision_response_edits`,
/// `ambit_authn_result_edits`), valid until that object is freed (or, for response edits, until
/// the next call for the same decision); never freed by the caller. Immutable; read it from any
/// thread.
#[derive(Debug)]
pub struct ambit_header_edits {
    _private: [u8; 0],
}

/// One edit, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeaderEdit {
    pub(crate) op: ambit_header_op,
    pub(crate) name: HeaderName,
    pub(crate) value: Option<HeaderValue>,
}

/// The edit list behind `ambit_header_edits`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct HeaderEdits(pub(crate) Vec<HeaderEdit>);

impl Castable for ambit_header_edits {
    type Ownership = OwnershipRef;
    type RustType = HeaderEdits;
}

impl Castable for ambit_str {
    type Ownership = OwnershipRef;
    type RustType = ambit_str;
}

impl Castable for ambit_header {
    type Ownership = OwnershipRef;
    type RustType = ambit_header;
}

// === impl ambit_str ===

impl Default for ambit_str {
    fn default() -> Self {
        Self {
            data: std::ptr::null(),
            len: 0,
        }
    }
}

impl ambit_str {
    /// Points at `s`; valid while `s` is.
    pub(crate) fn borrow(s: &[u8]) -> Self {
        Self {
            data: s.as_ptr(),
            len: s.len(),
        }
    }

    /// The bytes, or `None` for NULL with a nonzero length.
    ///
    /// # Safety
    /// `data` points to `len` readable bytes that stay unchanged during `'a` (or `len` is 0).
    pub(crate) unsafe fn bytes<'a>(self) -> Option<&'a [u8]> {
        // SAFETY: forwarded from this function's contract.
        unsafe { crate::ffi::try_slice_from(self.data, self.len) }
    }

    /// The text, or the result code a C caller gets for it (NULL_PARAMETER, INVALID_PARAMETER).
    ///
    /// # Safety
    /// As [`ambit_str::bytes`].
    pub(crate) unsafe fn text<'a>(self) -> Result<&'a str, ambit_result> {
        // SAFETY: forwarded from this function's contract.
        let bytes = unsafe { self.bytes() }.ok_or(ambit_result::AMBIT_RESULT_NULL_PARAMETER)?;
        std::str::from_utf8(bytes).map_err(|_| ambit_result::AMBIT_RESULT_INVALID_PARAMETER)
    }

    /// Like [`ambit_str::text`], with an empty string meaning "not given".
    ///
    /// # Safety
    /// As [`ambit_str::bytes`].
    pub(crate) unsafe fn optional_text<'a>(self) -> Result<Option<&'a str>, ambit_result> {
        // SAFETY: forwarded from this function's contract.
        let s = unsafe { self.text() }?;
        Ok((!s.is_empty()).then_some(s))
    }
}

/// Builds a header map from the caller's array: NULL_PARAMETER for a NULL array or string with
/// a nonzero length, INVALID_PARAMETER for a name or value HTTP does not allow.
///
/// # Safety
/// `headers` points to `n` valid `ambit_header`s whose strings are readable for the call (or
/// `n` is 0).
pub(crate) unsafe fn header_map(
    headers: *const ambit_header,
    n: usize,
) -> Result<HeaderMap, ambit_result> {
    // SAFETY: forwarded from this function's contract.
    let raw = unsafe { crate::ffi::try_slice_from(headers, n) }
        .ok_or(ambit_result::AMBIT_RESULT_NULL_PARAMETER)?;
    let mut map = HeaderMap::with_capacity(raw.len());
    for h in raw {
        // SAFETY: the strings of each header are readable per the contract.
        let (name, value) = unsafe { (h.name.bytes(), h.value.bytes()) };
        let (Some(name), Some(value)) = (name, value) else {
            return Err(ambit_result::AMBIT_RESULT_NULL_PARAMETER);
        };
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        else {
            return Err(ambit_result::AMBIT_RESULT_INVALID_PARAMETER);
        };
        map.append(name, value);
    }
    Ok(map)
}

// === impl HeaderEdits ===

impl HeaderEdits {
    /// The edits that turn `before` into `after`: REMOVE for names that are gone; for names
    /// whose values changed, SET of the first value and APPEND of the others. Unchanged
    /// headers produce nothing. (The core crates hand back edited header maps; this only
    /// restates one as a list a C host can apply to its own header structure.)
    pub(crate) fn between(before: &HeaderMap, after: &HeaderMap) -> Self {
        let mut out = Vec::new();
        for name in before.keys() {
            if !after.contains_key(name) {
                out.push(HeaderEdit {
                    op: ambit_header_op::AMBIT_HEADER_OP_REMOVE,
                    name: name.clone(),
                    value: None,
                });
            }
        }
        for name in after.keys() {
            let new = after.get_all(name);
            if new.iter().eq(before.get_all(name).iter()) {
                continue;
            }
            for (i, v) in new.iter().enumerate() {
                out.push(HeaderEdit {
                    op: if i == 0 {
                        ambit_header_op::AMBIT_HEADER_OP_SET
                    } else {
                        ambit_header_op::AMBIT_HEADER_OP_APPEND
                    },
                    name: name.clone(),
                    value: Some(v.clone()),
                });
            }
        }
        Self(out)
    }

    /// Lends the list to C.
    pub(crate) fn as_ptr(&self) -> *const ambit_header_edits {
        crate::ffi::to_ref_const_ptr::<ambit_header_edits>(self)
    }
}

/// Number of edits in the list (0 for NULL).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_header_edits_len(edits: *const ambit_header_edits) -> usize {
    ffi_panic_boundary!(0, {
        // SAFETY: NULL, or a live list (owned or borrowed) per this function's contract.
        match unsafe { try_from(edits) } {
            Some(e) => e.0.len(),
            None => 0,
        }
    })
}

/// Reads edit `index`: `*op_out` gets what to do, `*name_out` the header name, `*value_out`
/// the value (empty for REMOVE). The strings point into the list and are valid as long as it
/// is. Returns `AMBIT_RESULT_NOT_FOUND` when `index` is not below `ambit_header_edits_len`.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_header_edits_get(
    edits: *const ambit_header_edits,
    index: usize,
    op_out: *mut ambit_header_op,
    name_out: *mut ambit_str,
    value_out: *mut ambit_str,
) -> ambit_result {
    ffi_panic_boundary!({
        let edits: &HeaderEdits = try_ref_from_ptr!(edits);
        let op_out = try_out!(op_out);
        let name_out = try_out!(name_out);
        let value_out = try_out!(value_out);
        let Some(e) = edits.0.get(index) else {
            return ambit_result::AMBIT_RESULT_NOT_FOUND;
        };
        // SAFETY: all three checked non-NULL and writable per the contract.
        unsafe {
            *op_out = e.op;
            *name_out = ambit_str::borrow(e.name.as_str().as_bytes());
            *value_out = e
                .value
                .as_ref()
                .map_or_else(ambit_str::default, |v| ambit_str::borrow(v.as_bytes()));
        }
        ambit_result::AMBIT_RESULT_OK
    })
}
