//! Sequences of pushes against the server core: each accepted op stored once,
//! refusals change nothing, a pull returns exactly the accepted ops.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;
#[path = "checks/push.rs"]
mod push_check;
#[path = "checks/server_fixture.rs"]
mod server_fixture;

fuzz_target!(
    init: common::install_panic_recorder(),
    |data: &[u8]| common::fuzz(|| push_check::check_push(data))
);
