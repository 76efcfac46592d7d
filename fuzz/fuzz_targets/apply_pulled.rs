//! Foreign op payloads through `Replica::apply_pulled`: never a panic; a refused
//! page writes nothing; an accepted page leaves the view a rebuild reproduces.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(
    init: common::install_panic_recorder(),
    |data: &[u8]| common::fuzz(|| common::check_apply_pulled(data))
);
