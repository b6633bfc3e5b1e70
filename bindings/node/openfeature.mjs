// ESM entry point of entitle/openfeature (the same module as the CommonJS one).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export const { OpenFeatureProvider } = require('./openfeature.js');
