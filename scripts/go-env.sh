# Sourced by the Go scripts: keeps Go's module cache and build cache in folders of the repository
# (target/gopath, target/gocache) and uses the machine's Go as it is (no toolchain download).
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export GOPATH="$repo_root/target/gopath"
export GOMODCACHE="$GOPATH/pkg/mod"
export GOCACHE="$repo_root/target/gocache"
export GOTOOLCHAIN=local
export GOFLAGS="-modcacherw ${GOFLAGS:-}"
export CGO_ENABLED=1
