//! HTTP/3 frame headers, SETTINGS and QPACK field sections from arbitrary bytes (see
//! `ambit_hbone::fuzz_logic::h3_wire`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ambit_hbone::fuzz_logic::h3_wire(data));
