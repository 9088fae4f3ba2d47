// smtp-receive is an ES module package: this is what require('smtp-receive') loads (package.json
// "exports" → "require"), so that CommonJS code gets this message instead of ERR_PACKAGE_PATH_NOT_EXPORTED.
'use strict';
const err = new Error(
  "smtp-receive is ESM-only: use import (or await import('smtp-receive')) instead of require('smtp-receive'); " +
    'a receiver module is an ES module (.mjs, or .js in a package with "type": "module")',
);
err.code = 'ERR_REQUIRE_ESM';
throw err;
