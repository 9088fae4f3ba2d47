#!/usr/bin/env node
// The built CLI (npm ci builds dist/ through the `prepare` script; a packed tarball carries it).
let main;
try {
  ({ main } = await import('../dist/main/cli.js'));
} catch (err) {
  // loading patches smtp-server and lmdb-js (dist/patch/) or refuses with a PatchError: its message says why and what to do
  if (err?.code !== 'ERR_SMTP_RECEIVE_PATCH') throw err;
  process.stderr.write(`${err.message}\n`);
  process.exit(1);
}

main(process.argv.slice(2)).then((code) => {
  if (code >= 0) process.exitCode = code;
});
