//! Fuzzes `Snapshot::from_bytes`: the bytes as given, then with their body length and checksum made
//! right so that mutations get past the checksum to the structural validation. Whatever decodes is
//! looked up, dumped, compacted and diffed from a fixed base, and the diff must apply and agree.

#![no_main]

use entitle_core::{diff, Snapshot, View};
use entitle_fuzz::{exercise, fixture, framed, same_answers};
use libfuzzer_sys::fuzz_target;

fn check(bytes: Vec<u8>) {
    let Ok(snapshot) = Snapshot::from_bytes(bytes) else {
        return;
    };
    let view = View::from(snapshot);
    exercise(&view);
    let base = fixture();
    if let Ok(delta) = diff(base, view.base()) {
        let applied = match View::from(std::sync::Arc::clone(base)).apply(&delta) {
            Ok(applied) => applied,
            Err(e) => panic!("a diff does not apply to its own base: {e}"),
        };
        same_answers(&view, &applied);
    }
}

fuzz_target!(|data: &[u8]| {
    check(data.to_vec());
    if let Some(fixed) = framed(data, None) {
        check(fixed);
    }
});
