//! CONNECT-UDP's wire pieces: DATAGRAM capsules split anywhere, HTTP/3 datagrams and the UDP
//! path template (see `ambit_hbone::fuzz_logic::capsules`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ambit_hbone::fuzz_logic::capsules(data));
