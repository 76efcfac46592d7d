//! Server answers as a client reads them: decoding each answer type, then a
//! sync session on an in-memory replica. Never a panic; a refused answer
//! changes nothing; the view stays what a rebuild gives.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;
#[path = "checks/wire_client.rs"]
mod wire_client_check;

fuzz_target!(
    init: common::install_panic_recorder(),
    |data: &[u8]| common::fuzz(|| wire_client_check::check_wire_client(data))
);
