//! What istio-cni's node agent sends (`ambit_node::inpod::zds::check`): any datagram, with any
//! number of descriptors, is a checked request or refused with a message for the ack; never a
//! panic. A checked add always names its pod and takes exactly one descriptor; nothing else
//! takes one.
#![no_main]

use ambit_node::inpod::zds::{Checked, check};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&meta, bytes)) = data.split_first() else {
        return;
    };
    let fds = usize::from(meta & 7);
    let truncated = meta & 8 != 0;
    match check(bytes, fds, truncated) {
        Ok(Checked::Add { uid, .. }) => {
            assert!(!uid.is_empty());
            assert_eq!(fds, 1);
            assert!(!truncated);
        }
        Ok(_) => {
            assert_eq!(fds, 0);
            assert!(!truncated);
        }
        Err(e) => assert!(!e.is_empty()),
    }
});
