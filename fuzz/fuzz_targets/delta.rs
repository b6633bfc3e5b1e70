//! Fuzzes `Delta::from_bytes` and `View::apply`: the bytes as given, then with their body length
//! and checksum made right and their base pointed at a fixed snapshot, so that mutations reach the
//! structural validation and the apply path. Whatever applies is looked up, dumped and compacted,
//! also through a store that compacts in the background.

#![no_main]

use std::sync::Arc;

use entitle_core::{Delta, Store, View};
use entitle_fuzz::{exercise, fixture, framed};
use libfuzzer_sys::fuzz_target;

fn check(bytes: Vec<u8>) {
    let Ok(delta) = Delta::from_bytes(bytes) else {
        return;
    };
    let _ = (
        delta.target(),
        delta.target_created_at(),
        delta.is_full(),
        delta.change_count(),
    );
    let base = View::from(Arc::clone(fixture()));
    let Ok(view) = base.apply(&delta) else {
        return;
    };
    exercise(&view);
    let store = Store::with_threshold(base, 0);
    match store.apply(&delta) {
        Ok(version) => assert_eq!(version, view.version()),
        Err(e) => panic!("the store refused a delta its view accepted: {e}"),
    }
    store.wait_compaction();
    exercise(&store.view());
}

fuzz_target!(|data: &[u8]| {
    check(data.to_vec());
    let base = fixture();
    if let Some(fixed) = framed(data, Some((base.version(), base.checksum()))) {
        check(fixed);
    }
});
