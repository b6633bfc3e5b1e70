'use strict';
// Finds the native addon: the prebuilt package for this platform (installed through
// optionalDependencies), else the one built from source into build/ by install.js.

const path = require('node:path');

/** The suffix of the prebuilt package for this machine, e.g. `linux-x64-gnu`. */
function platformTriple() {
  let triple = `${process.platform}-${process.arch}`;
  if (process.platform === 'linux') {
    const report = typeof process.report?.getReport === 'function' ? process.report.getReport() : null;
    triple += report?.header?.glibcVersionRuntime ? '-gnu' : '-musl';
  }
  return triple;
}

function load() {
  const triple = platformTriple();
  const tried = [];
  const candidates = [
    `entitle-${triple}`,
    path.join(__dirname, 'build', 'entitle.node'),
  ];
  for (const candidate of candidates) {
    try {
      return require(candidate);
    } catch (err) {
      if (err && err.code !== 'MODULE_NOT_FOUND') throw err;
      tried.push(candidate);
    }
  }
  throw new Error(
    `entitle: no native addon for ${triple} (tried ${tried.join(', ')}). ` +
      'Install the prebuilt package for this platform, or build from source: ' +
      'ENTITLE_LIB_DIR=<folder of libentitle.a> npm rebuild entitle',
  );
}

module.exports = { load, platformTriple };
