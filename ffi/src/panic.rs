//! The panic boundary: no Rust panic crosses into C.

/// Runs the body, turning a panic into `$on_panic` (default `AMBIT_RESULT_PANIC`).
macro_rules! ffi_panic_boundary {
    ($body:block) => {
        ffi_panic_boundary!($crate::error::ambit_result::AMBIT_RESULT_PANIC, $body)
    };
    ($on_panic:expr, $body:block) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body)) {
            Ok(v) => v,
            Err(_) => $on_panic,
        }
    };
}

pub(crate) use ffi_panic_boundary;
