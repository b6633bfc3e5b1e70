'use strict';
// npm's install step: nothing to do when the prebuilt package for this platform is installed;
// otherwise builds the addon from source (see build.js for what that needs).

const { platformTriple } = require('./binding.js');

function hasPrebuilt() {
  try {
    require.resolve(`entitle-${platformTriple()}`);
    return true;
  } catch {
    return false;
  }
}

if (!hasPrebuilt()) {
  console.log(`entitle: no prebuilt addon for ${platformTriple()}; building from source`);
  try {
    require('./build.js').build(require('node:path').join(__dirname, 'build', 'entitle.node'));
  } catch (err) {
    console.error(err.message);
    process.exit(1);
  }
}
