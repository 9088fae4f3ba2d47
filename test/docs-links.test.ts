/**
 * The links of README.md, docs/*.md and examples/README.md hold: every relative link
 * names a file or directory of the repository, and every #anchor a heading of the page
 * it points to (GitHub's heading ids: lower case, punctuation dropped, spaces to '-').
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { REPO_ROOT } from './helpers/cli.ts';

/** GitHub's id of a heading (github-slugger), with -1, -2 … for repeats. */
function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  const text = markdown.replace(/^```[\s\S]*?^```$/gm, ''); // no headings inside code blocks
  for (const m of text.matchAll(/^#{1,6} +(.+?) *#* *$/gm)) {
    const base = m[1]!.toLowerCase().replace(/[^\p{L}\p{N}\p{M} _-]/gu, '').replace(/ /g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** The relative links of a markdown text (not in code), as [target, anchor]. */
function links(markdown: string): Array<[string, string | undefined]> {
  const text = markdown.replace(/^```[\s\S]*?^```$/gm, '').replace(/`[^`\n]*`/g, '``');
  const out: Array<[string, string | undefined]> = [];
  for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
    const href = m[1]!;
    if (/^[a-z]+:/i.test(href)) continue; // http:, mailto:, file:
    const [path, anchor] = href.split('#') as [string, string | undefined];
    out.push([path, anchor]);
  }
  return out;
}

describe('links in the documentation', () => {
  it('every relative link and #anchor of README.md, docs/ and examples/README.md resolves', () => {
    const pages = ['README.md', ...readdirSync(join(REPO_ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => join('docs', f))];
    if (existsSync(join(REPO_ROOT, 'examples', 'README.md'))) pages.push(join('examples', 'README.md'));
    const problems: string[] = [];
    let checked = 0;
    for (const page of pages) {
      const file = join(REPO_ROOT, page);
      for (const [path, anchor] of links(readFileSync(file, 'utf8'))) {
        checked++;
        const target = path === '' ? file : join(dirname(file), path);
        if (!existsSync(target)) {
          problems.push(`${page}: ${path} does not exist`);
          continue;
        }
        if (anchor === undefined) continue;
        if (statSync(target).isDirectory() || !target.endsWith('.md')) {
          problems.push(`${page}: ${path}#${anchor}: an anchor into something other than a markdown page`);
        } else if (!anchors(readFileSync(target, 'utf8')).has(anchor)) {
          problems.push(`${page}: #${anchor} is not a heading of ${relative(REPO_ROOT, target)}`);
        }
      }
    }
    assert.ok(checked > 20, `links checked: ${checked}`);
    assert.deepEqual(problems, []);
  });
});
