package entitle

// `go generate` in this directory builds libentitle.a from the repository's Rust sources and
// places it (and entitle.h) under lib/; see README.md, "Building the library".
//go:generate ../../scripts/build-go-lib.sh
