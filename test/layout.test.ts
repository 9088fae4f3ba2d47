/**
 * The layout rule (shared/STYLE.md): src/core imports neither src/main nor
 * src/workers; src/workers never imports src/main; the built-in receivers
 * (src/receivers, loaded in every worker) import neither, and load
 * nodemailer only dynamically (on first use).
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { it } from 'node:test';
import { REPO_ROOT } from './helpers/cli.ts';

/** The specifiers a file imports (static, type-only and dynamic). */
function importsOf(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+'([^']+)'/gm)) out.push(m[1]!);
  for (const m of text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g)) out.push(m[1]!);
  return out;
}

/** Static imports of nodemailer that are not type-only (those would load it with 'smtp-receive'). */
function staticNodemailer(text: string): string[] {
  return [...text.matchAll(/^import (?!type\b)[^;]*?from '(nodemailer[^']*)'/gm)].map((m) => m[1]!);
}

async function filesIn(dir: string): Promise<string[]> {
  return (await readdir(join(REPO_ROOT, 'src', dir))).filter((f) => f.endsWith('.ts')).map((f) => join(REPO_ROOT, 'src', dir, f));
}

it('core, workers and receivers import only what the layout allows', async () => {
  const rules: Record<string, RegExp> = { core: /^\.\.\/(main|workers)\//, workers: /^\.\.\/main\//, receivers: /^\.\.\/(main|workers)\// };
  const broken: string[] = [];
  let checked = 0;
  for (const [dir, forbidden] of Object.entries(rules)) {
    for (const file of await filesIn(dir)) {
      const text = await readFile(file, 'utf8');
      for (const spec of importsOf(text)) {
        checked++;
        if (forbidden.test(spec)) broken.push(`${file}: ${spec}`);
      }
      if (dir === 'receivers') for (const spec of staticNodemailer(text)) broken.push(`${file}: a static import of ${spec}`);
    }
  }
  assert.ok(checked > 20, `imports found: ${checked}`);
  assert.deepEqual(broken, []);
});

it('the nodemailer check sees a static import, and not a type-only one', () => {
  assert.deepEqual(staticNodemailer("import nodemailer from 'nodemailer';\nimport type X from 'nodemailer/lib/smtp-connection';\n"), ['nodemailer']);
  assert.deepEqual(staticNodemailer("import type X from 'nodemailer/lib/smtp-connection';\n"), []);
});
