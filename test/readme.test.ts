/**
 * The TypeScript examples of README.md and docs/*.md compile: each ```ts block is written to a
 * file and type-checked with the settings a user's project would have
 * (strict, module nodenext), 'smtp-receive' resolving to this repository.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { REPO_ROOT } from './helpers/cli.ts';

/** The ```ts blocks of a markdown text. */
function tsBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

describe('README and docs/ examples', () => {
  it('every TypeScript example type-checks (strict, nodenext)', async () => {
    const docs = ['README.md', ...readdirSync(join(REPO_ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => join('docs', f))];
    const blocks = docs.flatMap((f) => tsBlocks(readFileSync(join(REPO_ROOT, f), 'utf8')));
    assert.ok(blocks.length >= 5, 'the README and docs/ have TypeScript examples');
    // inside the repository, so that node_modules (@types/node, the dependencies) resolve
    const dir = await mkdtemp(join(REPO_ROOT, 'test', '.readme-'));
    try {
      const files = await Promise.all(blocks.map(async (code, i) => {
        const file = join(dir, `example-${i}.ts`);
        // each example is a module of its own, awaiting at top level as a user's would
        await writeFile(file, `${code}\nexport {};\n`);
        return file;
      }));
      await writeFile(join(dir, 'tsconfig.json'), JSON.stringify({
        compilerOptions: {
          target: 'ES2022', module: 'nodenext', moduleResolution: 'nodenext', strict: true, noEmit: true,
          skipLibCheck: true, types: ['node'], allowImportingTsExtensions: true,
          paths: { 'smtp-receive': [join(REPO_ROOT, 'src', 'index.ts')] },
        },
        files: [...files, join(REPO_ROOT, 'src', 'types', 'fs-native-extensions.d.ts')],
      }));
      const tsc = join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
      const r = await promisify(execFile)(process.execPath, [tsc, '-p', join(dir, 'tsconfig.json')], { cwd: dir })
        .then(() => ({ out: '' }), (e: { stdout: string }) => ({ out: e.stdout }));
      assert.equal(r.out.split(dir + '/').join(''), '', 'tsc found errors in README examples');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
