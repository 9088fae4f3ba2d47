#!/usr/bin/env node
// The built CLI (npm ci builds dist/ through the `prepare` script).
import { main } from '../dist/main/cli.js';

main(process.argv.slice(2)).then((code) => {
  if (code >= 0) process.exitCode = code;
});
