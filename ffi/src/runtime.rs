//! The managed runtime: ambit owns tokio threads, so a C host keeps its own poll/epoll loop;
//! everything that does I/O (HBONE, the proxies) runs on these threads.

use std::future::Future;
use std::time::Duration;

use facade::hbone::{Client, ClientSettings};
use facade::tls::{Provider, TlsContext};

use crate::error::{Error, ambit_error, ambit_result, fail};
use crate::ffi::{Castable, OwnershipBox, ffi_panic_boundary, take_box, to_boxed_mut_ptr, try_out};

/// tokio worker threads owned by ambit, plus an HBONE client pool.
///
/// Thread-safe: share it between threads. Corresponds to `Box<Runtime>`; `ambit_runtime_free`
/// stops every task and must be called after everything created from it has been freed.
#[derive(Debug)]
pub struct ambit_runtime {
    _private: [u8; 0],
}

impl Castable for ambit_runtime {
    type Ownership = OwnershipBox;
    type RustType = Runtime;
}

pub(crate) struct Runtime {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) tls: TlsContext,
    pub(crate) client: Client,
}

/// Starts a runtime with `threads` worker threads (0 = one per core).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_runtime_new(threads: u32, out: *mut *mut ambit_runtime) -> ambit_result {
    ffi_panic_boundary!({
        let out = try_out!(out);
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if threads > 0 {
            b.worker_threads(threads as usize);
        }
        // A C host has not ignored SIGPIPE as Rust programs do; writes to a closed socket would
        // kill it. Blocking the signal on ambit's own threads (never process-wide) turns them
        // into EPIPE errors. All socket I/O runs on these threads (see `on_workers`).
        b.on_thread_start(|| {
            use nix::sys::signal::{SigSet, Signal};
            let _ = SigSet::from(Signal::SIGPIPE).thread_block();
        });
        let Ok(rt) = b.enable_all().thread_name("ambit").build() else {
            return ambit_result::AMBIT_RESULT_IO;
        };
        let tls = TlsContext::new(Provider::default());
        let client = Client::new(tls.clone(), ClientSettings::default());
        let runtime = Runtime { rt, tls, client };
        // SAFETY: `out` checked non-NULL and writable per the contract.
        unsafe { *out = to_boxed_mut_ptr(runtime) };
        ambit_result::AMBIT_RESULT_OK
    })
}

/// Stops the runtime's threads (waiting up to 1 s for tasks to end). NULL is a no-op.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_runtime_free(rt: *mut ambit_runtime) {
    ffi_panic_boundary!((), {
        // SAFETY: NULL, or a runtime from `ambit_runtime_new` freed once.
        if let Some(r) = unsafe { take_box(rt) } {
            r.rt.shutdown_timeout(Duration::from_secs(1));
        }
    })
}

/// Runs `fut` on the runtime's worker threads and waits for it on the caller's thread, which
/// does no socket I/O itself (its signal mask is the host's).
pub(crate) fn on_workers<F>(rt: &tokio::runtime::Runtime, fut: F) -> Result<F::Output, String>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.block_on(rt.spawn(fut))
        .map_err(|e| format!("internal task failed: {e}"))
}

/// Runs a proxy's `start` on the runtime's workers and hands the outcome to C: the running
/// proxy, wrapped with the runtime's handle, through `out`; the failure (config, a listener,
/// credentials) through `err_out`.
///
/// # Safety
/// `out` must be non-NULL and writable; `err_out` NULL or writable.
pub(crate) unsafe fn give_started<C, P>(
    rt: &Runtime,
    start: impl Future<Output = Result<P, facade::Error>> + Send + 'static,
    wrap: impl FnOnce(P, tokio::runtime::Handle) -> C::RustType,
    out: *mut *mut C,
    err_out: *mut *mut ambit_error,
) -> ambit_result
where
    C: Castable<Ownership = OwnershipBox>,
    P: Send + 'static,
{
    match on_workers(&rt.rt, start) {
        Err(e) => fail(Error::new(ambit_result::AMBIT_RESULT_PANIC, e), err_out),
        Ok(Ok(proxy)) => {
            let running = wrap(proxy, rt.rt.handle().clone());
            // SAFETY: `out` is non-NULL and writable per this function's contract.
            unsafe { *out = to_boxed_mut_ptr(running) };
            ambit_result::AMBIT_RESULT_OK
        }
        Ok(Err(e)) => fail(e, err_out),
    }
}
