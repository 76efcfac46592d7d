//! Requests from outside through the real axum router, in process: never a
//! panic, never a 5xx; a refused request changes no space.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;
#[path = "checks/server_fixture.rs"]
mod server_fixture;
#[path = "checks/wire_server.rs"]
mod wire_server_check;

fuzz_target!(
    init: common::install_panic_recorder(),
    |data: &[u8]| common::fuzz(|| wire_server_check::check_wire_server(data))
);
