//! The pointer helpers every export goes through.
//!
//! Every C-visible type says what its pointer stands for by implementing [`Castable`]
//! (rustls-ffi's pattern): `Ownership` is [`OwnershipBox`] (a mutable object the caller owns and
//! frees), [`OwnershipArc`] (an immutable, shared object handed out as `const*`) or
//! [`OwnershipRef`] (memory owned by someone else: a `repr(C)` struct of the caller's, or an
//! object borrowed from another handle). `RustType` is what the pointer really points to. The
//! helpers below are the only places that turn handles into Rust values and back, so the
//! `unsafe` is in one file and miri checks it (`scripts/miri`).

use std::sync::Arc;

use crate::error::ambit_result;
pub(crate) use crate::panic::ffi_panic_boundary;

/// What a C handle type stands for.
pub(crate) trait Castable {
    /// [`OwnershipBox`], [`OwnershipArc`] or [`OwnershipRef`].
    type Ownership;
    /// The Rust value behind the pointer.
    type RustType;
}

/// Made by `Box::into_raw`; the caller frees it once with the type's `_free`.
pub(crate) struct OwnershipBox;
/// Made by `Arc::into_raw`; the caller releases it once with the type's `_free`.
pub(crate) struct OwnershipArc;
/// Borrowed: never freed through this pointer.
pub(crate) struct OwnershipRef;

/// Borrows a handle; `None` for NULL.
///
/// # Safety
/// `p` is NULL, or points to a live `C::RustType` (a handle this crate made, not yet freed, or
/// a `repr(C)` value of the caller's) that nobody mutates during `'a`.
pub(crate) unsafe fn try_from<'a, C: Castable>(p: *const C) -> Option<&'a C::RustType> {
    // SAFETY: the caller guarantees NULL or a live, aligned `C::RustType`.
    unsafe { p.cast::<C::RustType>().as_ref() }
}

/// Borrows a boxed handle mutably; `None` for NULL.
///
/// # Safety
/// `p` is NULL, or a live handle made by [`to_boxed_mut_ptr`] that nobody else uses during
/// `'a`.
pub(crate) unsafe fn try_from_mut<'a, C: Castable<Ownership = OwnershipBox>>(
    p: *mut C,
) -> Option<&'a mut C::RustType> {
    // SAFETY: the caller guarantees NULL or a live, exclusively used `Box<C::RustType>`.
    unsafe { p.cast::<C::RustType>().as_mut() }
}

/// Takes our own reference to a shared handle (the caller's stays valid); `None` for NULL.
///
/// # Safety
/// `p` is NULL, or a handle made by [`to_arc_const_ptr`] whose count the caller still holds.
pub(crate) unsafe fn clone_arc<C: Castable<Ownership = OwnershipArc>>(
    p: *const C,
) -> Option<Arc<C::RustType>> {
    let p = p.cast::<C::RustType>();
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` came from `Arc::into_raw` and its count is held by the caller for the call;
    // adding one first makes `from_raw` hand us a reference of our own.
    unsafe {
        Arc::increment_strong_count(p);
        Some(Arc::from_raw(p))
    }
}

/// Hands a shared value to C.
pub(crate) fn to_arc_const_ptr<C: Castable<Ownership = OwnershipArc>>(
    v: Arc<C::RustType>,
) -> *const C {
    Arc::into_raw(v).cast()
}

/// Hands an owned value to C.
pub(crate) fn to_boxed_mut_ptr<C: Castable<Ownership = OwnershipBox>>(v: C::RustType) -> *mut C {
    Box::into_raw(Box::new(v)).cast()
}

/// Lends a value to C as a borrowed handle (valid while `r` is).
pub(crate) fn to_ref_const_ptr<C: Castable<Ownership = OwnershipRef>>(r: &C::RustType) -> *const C {
    std::ptr::from_ref(r).cast()
}

/// Releases a shared handle; NULL is a no-op.
///
/// # Safety
/// `p` is NULL or a handle made by [`to_arc_const_ptr`], released once.
pub(crate) unsafe fn free_arc<C: Castable<Ownership = OwnershipArc>>(p: *const C) {
    if !p.is_null() {
        // SAFETY: per the contract, this gives back the count `to_arc_const_ptr` leaked.
        drop(unsafe { Arc::from_raw(p.cast::<C::RustType>()) });
    }
}

/// Frees an owned handle; NULL is a no-op.
///
/// # Safety
/// `p` is NULL or a handle made by [`to_boxed_mut_ptr`], freed once and not in use elsewhere.
pub(crate) unsafe fn free_box<C: Castable<Ownership = OwnershipBox>>(p: *mut C) {
    // SAFETY: the caller's contract is `take_box`'s.
    drop(unsafe { take_box(p) });
}

/// Takes back an owned handle; `None` for NULL.
///
/// # Safety
/// As [`free_box`].
pub(crate) unsafe fn take_box<C: Castable<Ownership = OwnershipBox>>(
    p: *mut C,
) -> Option<Box<C::RustType>> {
    if p.is_null() {
        return None;
    }
    // SAFETY: per the contract, `p` came from `Box::into_raw` and is given back once.
    Some(unsafe { Box::from_raw(p.cast::<C::RustType>()) })
}

/// Borrows `(p, n)` as a slice; NULL is allowed only with `n == 0`.
///
/// # Safety
/// Unless `n` is 0, `p` is NULL or points to `n` initialised, aligned `T`s that stay unchanged
/// during `'a`.
pub(crate) unsafe fn try_slice_from<'a, T>(p: *const T, n: usize) -> Option<&'a [T]> {
    if n == 0 {
        Some(&[])
    } else if p.is_null() {
        None
    } else {
        // SAFETY: non-NULL, `n > 0` elements readable per the contract.
        Some(unsafe { std::slice::from_raw_parts(p, n) })
    }
}

/// Borrows a `Castable` pointer as `&RustType`, returning NULL_PARAMETER for NULL.
macro_rules! try_ref_from_ptr {
    ($ptr:expr) => {{
        // SAFETY: every export's contract: a non-NULL pointer is a live handle of its type (or
        // the caller's own `repr(C)` value) for the duration of the call.
        match unsafe { $crate::ffi::try_from($ptr) } {
            Some(r) => r,
            None => return $crate::error::ambit_result::AMBIT_RESULT_NULL_PARAMETER,
        }
    }};
}

/// Borrows a boxed `Castable` pointer as `&mut RustType`, returning NULL_PARAMETER for NULL.
macro_rules! try_mut_from_ptr {
    ($ptr:expr) => {{
        // SAFETY: every export's contract: a non-NULL pointer is a live handle of its type that
        // no other thread uses during the call (the type is documented as not thread-safe).
        match unsafe { $crate::ffi::try_from_mut($ptr) } {
            Some(r) => r,
            None => return $crate::error::ambit_result::AMBIT_RESULT_NULL_PARAMETER,
        }
    }};
}

/// Takes our own `Arc` of a shared handle, returning NULL_PARAMETER for NULL; the caller's
/// handle stays valid.
macro_rules! try_clone_arc {
    ($ptr:expr) => {{
        // SAFETY: every export's contract: a non-NULL shared handle is live for the call.
        match unsafe { $crate::ffi::clone_arc($ptr) } {
            Some(a) => a,
            None => return $crate::error::ambit_result::AMBIT_RESULT_NULL_PARAMETER,
        }
    }};
}

/// Borrows `(ptr, len)` as a slice; NULL is allowed only with `len == 0`.
macro_rules! try_slice {
    ($ptr:expr, $len:expr) => {{
        // SAFETY: every export's contract: `len` readable elements at a non-NULL `ptr`,
        // unchanged during the call.
        match unsafe { $crate::ffi::try_slice_from($ptr, $len) } {
            Some(s) => s,
            None => return $crate::error::ambit_result::AMBIT_RESULT_NULL_PARAMETER,
        }
    }};
}

/// Borrows `(ptr, len)` as `&str`, returning INVALID_PARAMETER for bad UTF-8.
macro_rules! try_str {
    ($ptr:expr, $len:expr) => {{
        let bytes: &[u8] = $crate::ffi::try_slice!($ptr, $len);
        match ::std::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(_) => return $crate::error::ambit_result::AMBIT_RESULT_INVALID_PARAMETER,
        }
    }};
}

/// Borrows an `ambit_str` as `&str` (NULL_PARAMETER, INVALID_PARAMETER as `try_str!`).
macro_rules! try_ambit_str {
    ($s:expr) => {{
        let s: $crate::strings::ambit_str = $s;
        $crate::ffi::try_str!(s.data, s.len)
    }};
}

/// Borrows an `ambit_str` as bytes (NULL_PARAMETER for NULL with a nonzero length).
macro_rules! try_ambit_bytes {
    ($s:expr) => {{
        let s: $crate::strings::ambit_str = $s;
        let bytes: &[u8] = $crate::ffi::try_slice!(s.data, s.len);
        bytes
    }};
}

/// Checks an output pointer for NULL.
macro_rules! try_out {
    ($ptr:expr) => {{
        let p = $ptr;
        if p.is_null() {
            return $crate::error::ambit_result::AMBIT_RESULT_NULL_PARAMETER;
        }
        p
    }};
}

pub(crate) use {
    try_ambit_bytes, try_ambit_str, try_clone_arc, try_mut_from_ptr, try_out, try_ref_from_ptr,
    try_slice, try_str,
};

/// Copies `s` into the caller's buffer `(buf, len)` and the length into `*out_n`. With a short
/// buffer, nothing is copied and `*out_n` is the size needed.
///
/// # Safety
/// `buf` must be valid for `len` writable bytes (or NULL with `len == 0`); `out_n` must be a
/// valid, non-NULL pointer.
pub(crate) unsafe fn write_out(
    s: &[u8],
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> ambit_result {
    // SAFETY: the caller guarantees `out_n` is valid and non-NULL.
    unsafe { *out_n = s.len() };
    if s.len() > len {
        return ambit_result::AMBIT_RESULT_INSUFFICIENT_SIZE;
    }
    if !s.is_empty() {
        if buf.is_null() {
            return ambit_result::AMBIT_RESULT_NULL_PARAMETER;
        }
        // SAFETY: `buf` has at least `len >= s.len()` writable bytes (caller contract) and
        // cannot overlap `s`, which Rust owns.
        unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), buf, s.len()) };
    }
    ambit_result::AMBIT_RESULT_OK
}

// Pure pointer and boundary logic, no I/O and no crypto: these run under miri
// (`scripts/miri`), which checks every `unsafe` above for undefined behaviour and leaks.
#[cfg(test)]
mod tests;
