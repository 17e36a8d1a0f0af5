//! The C ABI as a C host uses it, called through its Rust symbols.

use std::os::fd::{FromRawFd, OwnedFd};

use ambit::{ambit_credentials, ambit_result, ambit_runtime};
use anyhow::{Result, bail};

/// An `ambit_runtime` (its own worker threads) and the client's `ambit_credentials`.
pub(super) struct Host {
    rt: *mut ambit_runtime,
    creds: *const ambit_credentials,
}

// SAFETY: the runtime and credentials are documented thread-safe (`ambit_hbone_dial` may be
// called from any thread); `Host` frees them once, in `drop`.
#[allow(unsafe_code)]
unsafe impl Send for Host {}
// SAFETY: as above; no method takes `&mut self`.
#[allow(unsafe_code)]
unsafe impl Sync for Host {}

/// An `ambit_str` borrowing `text`.
fn s(text: &str) -> ambit::ambit_str {
    ambit::ambit_str {
        data: text.as_ptr(),
        len: text.len(),
    }
}

impl Host {
    pub(super) fn new(pem: &[String; 3]) -> Result<Self> {
        let mut rt = std::ptr::null_mut();
        if ambit::ambit_runtime_new(0, &mut rt) != ambit_result::AMBIT_RESULT_OK {
            bail!("ambit_runtime_new failed");
        }
        let mut creds = std::ptr::null();
        let [chain, key, bundle] = pem;
        let r = ambit::ambit_credentials_from_pem(
            rt,
            s(chain),
            s(key),
            s(bundle),
            &mut creds,
            std::ptr::null_mut(),
        );
        let host = Self { rt, creds };
        if r != ambit_result::AMBIT_RESULT_OK {
            bail!("ambit_credentials_from_pem: {r:?}");
        }
        Ok(host)
    }

    /// `ambit_hbone_dial` (blocking), as a tokio stream over the descriptor it returns.
    pub(super) fn dial(
        &self,
        peer: &str,
        expected_id: &str,
        authority: &str,
    ) -> Result<tokio::net::UnixStream> {
        let mut fd = -1;
        let mut peer_addr = ambit::ambit_socket_addr::default();
        if ambit::ambit_socket_addr_parse(s(peer), &mut peer_addr) != ambit_result::AMBIT_RESULT_OK
        {
            bail!("{peer:?} is not ip:port");
        }
        let r = ambit::ambit_hbone_dial(
            self.rt,
            self.creds,
            &peer_addr,
            s(expected_id),
            s(authority),
            &mut fd,
            std::ptr::null_mut(),
        );
        if r != ambit_result::AMBIT_RESULT_OK {
            bail!("ambit_hbone_dial: {r:?}");
        }
        // SAFETY: on success `fd` is a new socketpair descriptor that the caller owns.
        #[allow(unsafe_code)]
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let s = std::os::unix::net::UnixStream::from(fd);
        s.set_nonblocking(true)?;
        Ok(tokio::net::UnixStream::from_std(s)?)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let free = || {
            ambit::ambit_credentials_free(self.creds);
            // Waits up to 1 s for ambit's threads: not allowed on an async worker.
            ambit::ambit_runtime_free(self.rt);
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::task::block_in_place(free);
        } else {
            free();
        }
    }
}
