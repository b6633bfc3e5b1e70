//go:build cgo && !(linux && (amd64 || arm64))

package entitle

// The static library is built and linked for linux/amd64 and linux/arm64 only (see README.md,
// "Platforms"). The line below is what stops a build for another platform, with this name in the
// error:
var _ = entitle_has_no_static_library_for_this_GOOS_GOARCH__see_README_platforms
