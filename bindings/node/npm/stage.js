#!/usr/bin/env node
'use strict';
// Stages the packages to publish into OUT_DIR, ready for `npm pack` / `npm publish`:
//
//   OUT_DIR/entitle/            the main package: JavaScript, types, the addon's C source and
//                               entitle.h (for the build-from-source fallback), and an
//                               optionalDependencies entry for every platform package below
//   OUT_DIR/<platform>/         one per folder of npm/ (e.g. linux-x64-gnu) whose entitle.node
//                               was given: package.json + the prebuilt addon
//
//   node npm/stage.js OUT_DIR --addon linux-x64-gnu=build/entitle.node [--header ffi/include/entitle.h]
//
// The source package.json names no optional dependency, so that development installs never ask
// the registry for platform packages that are built here.
const fs = require('node:fs');
const path = require('node:path');

const pkgDir = path.resolve(__dirname, '..');
const argv = process.argv.slice(2);
const out = path.resolve(argv[0] || 'npm-stage');
const addons = {};
let header = path.resolve(pkgDir, '..', '..', 'ffi', 'include', 'entitle.h');
for (let i = 1; i < argv.length; i += 2) {
  if (argv[i] === '--addon') {
    const [platform, file] = argv[i + 1].split('=');
    addons[platform] = path.resolve(file);
  } else if (argv[i] === '--header') {
    header = path.resolve(argv[i + 1]);
  } else {
    throw new Error(`unknown argument ${argv[i]}`);
  }
}

fs.rmSync(out, { recursive: true, force: true });
const main = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
main.optionalDependencies = {};
for (const [platform, addon] of Object.entries(addons)) {
  const meta = JSON.parse(fs.readFileSync(path.join(__dirname, platform, 'package.json'), 'utf8'));
  if (meta.version !== main.version) {
    throw new Error(`${meta.name} is at ${meta.version}, entitle at ${main.version}: they ship together`);
  }
  const dir = path.join(out, platform);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify(meta, null, 2) + '\n');
  fs.copyFileSync(addon, path.join(dir, 'entitle.node'));
  main.optionalDependencies[meta.name] = main.version;
}
delete main.devDependencies;
delete main.scripts.build;
delete main.scripts.test;
const mainDir = path.join(out, 'entitle');
for (const file of main.files) {
  const from = file === 'include/entitle.h' ? header : path.join(pkgDir, file);
  const to = path.join(mainDir, file);
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.copyFileSync(from, to);
}
fs.writeFileSync(path.join(mainDir, 'package.json'), JSON.stringify(main, null, 2) + '\n');
console.log(`staged entitle ${main.version} and ${Object.keys(addons).join(', ') || 'no platform package'} in ${out}`);
