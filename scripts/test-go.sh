#!/usr/bin/env bash
# Go package (bindings/go): builds libentitle.a into the package directory and the CLI (the sync
# tests serve an edge with it), then: go vet; the whole suite; the concurrency tests under the
# race detector; the suite once more with GOEXPERIMENT=cgocheck2 (every pointer passed to C is
# checked); and a scratch module under target/ that imports the package through a replace
# directive, as a user's program would, built and run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/go-env.sh

scripts/build-go-lib.sh --with-cli
scripts/setup/go.sh

cd bindings/go
echo "go: vet"
go vet ./...
echo "go: test"
go test -count=1 ./...
# -race multiplies the cost of every call: it runs the tests where goroutines meet.
echo "go: test -race (concurrency)"
go test -count=1 -race -short -run 'Readers|Close|ErrorDetail|HotPath|Lookups|Event|SyncRefreshes' .
echo "go: test with GOEXPERIMENT=cgocheck2"
GOEXPERIMENT=cgocheck2 go test -count=1 -short ./...
echo "go: a scratch module importing the package"
cd ../..
scratch=target/go-scratch
rm -rf "$scratch"
mkdir -p "$scratch"
cat > "$scratch/go.mod" <<MOD
module scratch

go 1.26

require example.invalid/entitle/bindings/go v0.0.0

replace example.invalid/entitle/bindings/go => $PWD/bindings/go
MOD
cat > "$scratch/main.go" <<'SRC'
package main

import (
	"errors"
	"fmt"
	"os"

	entitle "example.invalid/entitle/bindings/go"
)

func main() {
	engine, err := entitle.FromCatalogJSON([]byte(`{"features": [{"key": "sso", "type": "flag", "default": true}]}`))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer engine.Close()
	_, err = entitle.FromFile("/nonexistent/catalog.snap")
	fmt.Println(engine.Enabled("cus_1", "sso"), engine.Limit("cus_1", "sso"), errors.Is(err, entitle.ErrIO))
}
SRC
(cd "$scratch" && go mod tidy && go build -o scratch . && ./scratch) | tee "$scratch/out.txt"
if [ "$(cat "$scratch/out.txt")" != "true 0 true" ]; then
  echo "the scratch module printed something unexpected" >&2
  exit 1
fi
# The binary links libentitle statically: no libentitle.so is needed at run time.
if ldd "$scratch/scratch" | grep -q libentitle; then
  echo "the scratch binary links libentitle dynamically" >&2
  exit 1
fi
echo "go: all passed"
