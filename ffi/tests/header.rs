//! `include/entitle.h` is generated from the sources by cbindgen: this test regenerates it and fails
//! when the committed header differs. Run with `ENTITLE_BLESS=1` to rewrite the committed header.

use std::path::Path;

#[test]
fn committed_header_matches_the_sources() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml"))
        .unwrap_or_else(|e| panic!("reading cbindgen.toml: {e}"));
    let bindings = cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .unwrap_or_else(|e| panic!("cbindgen: {e}"));
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).unwrap_or_else(|e| panic!("cbindgen output: {e}"));

    let path = dir.join("include/entitle.h");
    if std::env::var_os("ENTITLE_BLESS").is_some() {
        std::fs::write(&path, &generated)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("entitle.h");
        std::fs::write(&out, &generated)
            .unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
        panic!(
            "ffi/include/entitle.h is out of date with ffi/src (generated: {}); \
             run `ENTITLE_BLESS=1 cargo test -p entitle-ffi --test header` and commit the result",
            out.display()
        );
    }
}
