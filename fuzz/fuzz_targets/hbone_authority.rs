//! The CONNECT `:authority` parser: no panic, and what it accepts prints back to an equal value.
#![no_main]

use ambit_hbone::Authority;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let Ok(a) = s.parse::<Authority>() else {
        return;
    };
    assert_ne!(a.port(), 0, "{s:?}");
    let text = a.to_string();
    assert_eq!(
        text.parse::<Authority>().as_ref(),
        Ok(&a),
        "{s:?} printed as {text:?}"
    );
});
