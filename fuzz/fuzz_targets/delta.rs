//! Fuzzes `Delta::from_bytes` and `View::apply`: see `entitle_fuzz::delta_input` for what each
//! input goes through.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| entitle_fuzz::delta_input(data));
