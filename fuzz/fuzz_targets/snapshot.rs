//! Fuzzes `Snapshot::from_bytes`: see `entitle_fuzz::snapshot_input` for what each input goes
//! through.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| entitle_fuzz::snapshot_input(data));
