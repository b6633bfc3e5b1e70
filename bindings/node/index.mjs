// ESM entry point: the same module as `require("entitle")` (one addon instance per thread).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const entitle = require('./index.js');

export const {
  Engine,
  Feature,
  Decision,
  SyncState,
  EntitleError,
  ArgumentError,
  FileError,
  CatalogError,
  FormatError,
  DeltaError,
  ConfigError,
  ClosedError,
  InternalError,
  libraryVersion,
} = entitle;
export default entitle;
