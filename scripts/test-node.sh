#!/usr/bin/env bash
# Node package (bindings/node): builds libentitle.a and the CLI, compiles the addon against the
# `node-api-headers` package, checks what it exports, runs the `node --test` suite, then packs the
# package and the linux-x64-gnu prebuilt package with `npm pack`, installs both tarballs into a
# scratch project (and the main one alone, which builds from source), imports it both ways there,
# runs the conformance suite against the installed copy and type-checks the TypeScript example.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
scripts/setup/node.sh

# The CLI serves and publishes the edges the sync tests use; the library is linked in.
cargo build --release -p entitle-ffi -p entitle-cli

pkg=bindings/node
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$repo/$target ;; esac
export ENTITLE_LIB_DIR=$target/release

# The addon: warnings are errors here; only the Node-API entry points are exported.
ENTITLE_STRICT=1 node $pkg/build.js --out $pkg/build/entitle.node
exported=$(nm -D --defined-only $pkg/build/entitle.node | awk '{print $3}' | sort | tr '\n' ' ')
if [ "$exported" != "napi_register_module_v1 node_api_module_get_api_version_v1 " ]; then
  echo "the addon exports more than the Node-API entry points: $exported" >&2
  exit 1
fi
if readelf -S $pkg/build/entitle.node | grep -q '\.debug_'; then
  echo "the addon carries debug info" >&2
  exit 1
fi
echo "addon: $(stat -c %s $pkg/build/entitle.node) bytes, exports: $exported"

# The test suite, against the source tree.
(cd $pkg && node --test --test-concurrency=1 --test-reporter=spec test/)

# Packaging: stage both packages, pack them, install the tarballs into scratch projects.
stage=$target/node-pack
node $pkg/npm/stage.js "$stage" --addon linux-x64-gnu=$pkg/build/entitle.node --header ffi/include/entitle.h
(cd "$stage" && npm pack --silent ./entitle ./linux-x64-gnu >/dev/null)
main_tgz=$(ls "$stage"/entitle-[0-9]*.tgz)
prebuilt_tgz=$(ls "$stage"/entitle-linux-x64-gnu-*.tgz)
if tar -tzf "$main_tgz" | grep -q '\.node$'; then
  echo "the main package must not carry a binary" >&2
  exit 1
fi

scratch_check='
  const assert = require("node:assert/strict");
  const cjs = require("entitle");
  import("entitle").then(async (esm) => {
    assert.equal(esm.Engine, cjs.Engine, "ESM and CommonJS share one module");
    assert.equal(esm.default.Engine, cjs.Engine);
    const engine = esm.Engine.fromCatalog({ features: [{ key: "sso", type: "flag", default: true }] });
    assert.equal(engine.enabled("anyone", "sso"), true);
    assert.equal(await engine.waitReady(10), true);
    engine.close();
    const { OpenFeatureProvider } = require("entitle/openfeature");
    assert.equal(typeof OpenFeatureProvider, "function");
    console.log("scratch: entitle " + cjs.libraryVersion + " loads both ways from " + require.resolve("entitle"));
  });
'
for kind in prebuilt source; do
  scratch=$target/node-scratch-$kind
  rm -rf "$scratch" && mkdir -p "$scratch"
  echo '{"name": "scratch", "version": "1.0.0", "private": true}' > "$scratch/package.json"
  if [ $kind = prebuilt ]; then
    (cd "$scratch" && npm install --offline --no-audit --no-fund --loglevel=error "$main_tgz" "$prebuilt_tgz")
    [ -d "$scratch/node_modules/entitle-linux-x64-gnu" ] || { echo "the prebuilt package was not installed" >&2; exit 1; }
    [ ! -e "$scratch/node_modules/entitle/build" ] || { echo "built from source although a prebuilt package is installed" >&2; exit 1; }
  else
    # No prebuilt package: the install step compiles the addon from the shipped source.
    (cd "$scratch" && npm install --offline --no-audit --no-fund --loglevel=error "$main_tgz")
    [ -f "$scratch/node_modules/entitle/build/entitle.node" ] || { echo "the install step did not build the addon" >&2; exit 1; }
  fi
  (cd "$scratch" && node -e "$scratch_check")
done

# The installed package answers the conformance suite, and its types pass tsc --strict.
scratch=$target/node-scratch-prebuilt
ENTITLE_PACKAGE=$scratch/node_modules/entitle node --test $pkg/test/conformance.test.js >/dev/null
cp $pkg/examples/typescript/example.ts $pkg/examples/typescript/tsconfig.json "$scratch/"
ln -sfn "$repo/$pkg/node_modules/@types" "$scratch/node_modules/@types"
(cd "$scratch" && "$repo/$pkg/node_modules/.bin/tsc" -p tsconfig.json)
echo "node: packages installed from tarballs, conformance and tsc --strict pass"
