//! The whole sync system (replicas, server, a faulty network) driven by
//! arbitrary decision lists: after the faults heal, every invariant of the
//! seeded simulation holds.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;
#[path = "checks/simulation.rs"]
mod simulation_check;

fuzz_target!(
    init: common::install_panic_recorder(),
    |data: &[u8]| common::fuzz(|| simulation_check::check_simulation(data))
);
