//go:build !cgo

package entitle

// This package calls libentitle through cgo, which is off in this build (CGO_ENABLED=0, or a
// cross-compilation without a C compiler). Build with CGO_ENABLED=1 and a C compiler; see
// README.md. The line below is what stops such a build, with this name in the error:
var _ = entitle_needs_cgo__build_with_CGO_ENABLED_1_and_a_C_compiler__see_README
