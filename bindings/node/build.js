#!/usr/bin/env node
'use strict';
// Compiles the addon (src/entitle_node.c) and links the static libentitle.a into one
// self-contained `entitle.node`, stripped, exporting only the Node-API entry points.
//
//   node build.js [--out FILE]
//
// Inputs, each found from the environment first:
//   ENTITLE_LIB_DIR      the folder holding libentitle.a (in the repository: target/release,
//                        built by `cargo build --release -p entitle-ffi`)
//   ENTITLE_INCLUDE_DIR  the folder holding entitle.h (in the repository: ffi/include; in the
//                        published package: include/)
//   NODE_API_HEADERS     the folder holding node_api.h: the `node-api-headers` package when it
//                        is installed, else the headers of the running Node (<prefix>/include/node)
//   CC                   the C compiler (default: cc)
// Nothing is downloaded.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const here = __dirname;
const repo = path.resolve(here, '..', '..');

function firstExisting(candidates, file) {
  for (const dir of candidates) {
    if (dir && fs.existsSync(path.join(dir, file))) return dir;
  }
  return null;
}

function libDir() {
  const target = process.env.CARGO_TARGET_DIR
    ? path.resolve(repo, process.env.CARGO_TARGET_DIR)
    : path.join(repo, 'target');
  return firstExisting([process.env.ENTITLE_LIB_DIR, path.join(target, 'release')], 'libentitle.a');
}

function includeDir() {
  return firstExisting(
    [process.env.ENTITLE_INCLUDE_DIR, path.join(here, 'include'), path.join(repo, 'ffi', 'include')],
    'entitle.h',
  );
}

function nodeApiDir() {
  const candidates = [process.env.NODE_API_HEADERS];
  try {
    candidates.push(path.dirname(require.resolve('node-api-headers/include/node_api.h')));
  } catch {
    // not installed: fall back to the running Node's own headers
  }
  candidates.push(path.resolve(path.dirname(process.execPath), '..', 'include', 'node'));
  return firstExisting(candidates, 'node_api.h');
}

function build(out) {
  const lib = libDir();
  const inc = includeDir();
  const napi = nodeApiDir();
  const missing = [];
  if (!lib) missing.push('libentitle.a (set ENTITLE_LIB_DIR; build it with `cargo build --release -p entitle-ffi`)');
  if (!inc) missing.push('entitle.h (set ENTITLE_INCLUDE_DIR)');
  if (!napi) missing.push('node_api.h (install `node-api-headers` or set NODE_API_HEADERS)');
  if (missing.length > 0) {
    throw new Error(`entitle: cannot build the addon, missing: ${missing.join('; ')}`);
  }
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const cc = process.env.CC || 'cc';
  const args = [
    '-std=c11', '-O3', '-fPIC', '-shared', '-fvisibility=hidden',
    '-Wall', '-Wextra', '-Wno-unused-parameter',
    ...(process.env.ENTITLE_STRICT ? ['-Werror'] : []),
    '-I', napi, '-I', inc,
    path.join(here, 'src', 'entitle_node.c'),
    path.join(lib, 'libentitle.a'),
    '-o', out,
    // Only the Node-API entry points are exported; the library's symbols stay inside.
    `-Wl,--version-script=${path.join(here, 'src', 'exports.map')}`,
    '-Wl,--gc-sections', '-Wl,--as-needed', ...(process.env.ENTITLE_NO_STRIP ? [] : ['-s']),
    // What Rust's standard library needs from the system (`--print native-static-libs`).
    '-lgcc_s', '-lutil', '-lrt', '-lpthread', '-lm', '-ldl', '-lc',
  ];
  execFileSync(cc, args, { stdio: 'inherit' });
  return out;
}

module.exports = { build };

if (require.main === module) {
  const i = process.argv.indexOf('--out');
  const out = path.resolve(i > 0 ? process.argv[i + 1] : path.join(here, 'build', 'entitle.node'));
  try {
    build(out);
    console.log(`entitle: built ${out}`);
  } catch (err) {
    console.error(err.message);
    process.exit(1);
  }
}
