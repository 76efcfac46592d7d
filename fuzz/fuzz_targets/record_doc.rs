//! Outside bytes as a record document or a change: loading, reading, saving,
//! decoding and validating never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(
    init: common::install_panic_recorder(),
    |data: &[u8]| common::fuzz(|| common::check_record_doc(data))
);
