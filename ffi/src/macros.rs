//! The panic boundary and pointer checks every export goes through.

/// Runs the body, turning a panic into `$on_panic` (default `AMBIT_RESULT_PANIC`).
macro_rules! ffi_boundary {
    ($body:block) => {
        ffi_boundary!($crate::error::ambit_result::AMBIT_RESULT_PANIC, $body)
    };
    ($on_panic:expr, $body:block) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body)) {
            Ok(v) => v,
            Err(_) => $on_panic,
        }
    };
}

/// Borrows `*const T` as `&T`, returning NULL_PARAMETER for NULL.
macro_rules! try_ref {
    ($ptr:expr) => {{
        let p = $ptr;
        if p.is_null() {
            return $crate::error::ambit_result::AMBIT_RESULT_NULL_PARAMETER;
        }
        // SAFETY: non-NULL, and the caller promises (per the function's contract) that it
        // points to a live, properly aligned value for the duration of the call.
        unsafe { &*p }
    }};
}

/// Borrows `(ptr, len)` as `&[u8]`; NULL is allowed only with `len == 0`.
macro_rules! try_slice {
    ($ptr:expr, $len:expr) => {{
        let (p, n): (*const u8, usize) = ($ptr, $len);
        if n == 0 {
            &[][..]
        } else if p.is_null() {
            return $crate::error::ambit_result::AMBIT_RESULT_NULL_PARAMETER;
        } else {
            // SAFETY: non-NULL and the caller promises `n` readable bytes at `p` for the
            // duration of the call.
            unsafe { ::std::slice::from_raw_parts(p, n) }
        }
    }};
}

/// Borrows `(ptr, len)` as `&str`, returning INVALID_PARAMETER for bad UTF-8.
macro_rules! try_str {
    ($ptr:expr, $len:expr) => {{
        match ::std::str::from_utf8($crate::macros::try_slice!($ptr, $len)) {
            Ok(s) => s,
            Err(_) => return $crate::error::ambit_result::AMBIT_RESULT_INVALID_PARAMETER,
        }
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

/// Takes our own `Arc<$ty>` from a `*const` handle made by `Arc::into_raw`, returning
/// NULL_PARAMETER for NULL; the caller's handle stays valid.
macro_rules! try_clone_arc {
    ($ptr:expr, $ty:ty) => {{
        let p: *const $ty = ($ptr).cast::<$ty>();
        if p.is_null() {
            return $crate::error::ambit_result::AMBIT_RESULT_NULL_PARAMETER;
        }
        // SAFETY: non-NULL handles of this type come from `Arc::into_raw` and the caller keeps
        // them alive for the call; adding a count first makes `from_raw` hand us our own.
        unsafe {
            ::std::sync::Arc::increment_strong_count(p);
            ::std::sync::Arc::from_raw(p)
        }
    }};
}

pub(crate) use {ffi_boundary, try_clone_arc, try_out, try_ref, try_slice, try_str};

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
) -> crate::error::ambit_result {
    // SAFETY: the caller guarantees `out_n` is valid and non-NULL.
    unsafe { *out_n = s.len() };
    if s.len() > len {
        return crate::error::ambit_result::AMBIT_RESULT_INSUFFICIENT_SIZE;
    }
    if !s.is_empty() {
        if buf.is_null() {
            return crate::error::ambit_result::AMBIT_RESULT_NULL_PARAMETER;
        }
        // SAFETY: `buf` has at least `len >= s.len()` writable bytes (caller contract) and
        // cannot overlap `s`, which Rust owns.
        unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), buf, s.len()) };
    }
    crate::error::ambit_result::AMBIT_RESULT_OK
}

#[cfg(test)]
mod tests {
    use crate::error::ambit_result;

    fn boom(fail: bool) -> ambit_result {
        ffi_boundary!({
            if fail {
                panic!("deliberate");
            }
            ambit_result::AMBIT_RESULT_OK
        })
    }

    #[test]
    fn panics_become_result_codes() {
        // The default hook would print the panic; keep test output clean.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let got = boom(true);
        std::panic::set_hook(hook);
        assert_eq!(got, ambit_result::AMBIT_RESULT_PANIC);
        assert_eq!(boom(false), ambit_result::AMBIT_RESULT_OK);
        let default: usize = ffi_boundary!(7, { panic!("deliberate") });
        assert_eq!(default, 7);
    }
}
