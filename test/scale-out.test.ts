/**
 * Scale-out: the shipped deploy/haproxy.cfg (only its `bind` line and server
 * addresses changed) in front of two `serve` daemons, each with its own queue
 * and a receiver that keeps messages queued. Mail spreads over both; one node
 * is SIGKILLed while sessions are running and the balancer sends new sessions
 * to the other; clients retry a session cut by the kill (a bounded number of
 * times). Afterwards, with both daemons stopped, every message that got a 250
 * is in exactly one queue — the one of the node whose greeting the client saw —
 * and shows the client's address (PROXY v2 from the balancer).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { REPO_ROOT, spawnCli, type CliProcess } from './helpers/cli.ts';
import { freePort, startHaproxy, type HaproxyProcess } from './helpers/haproxy.ts';
import { ownQueue } from './helpers/owned.ts';
import { RawClient, queuedId } from './helpers/smtp.ts';

const KEEP_QUEUED = new URL('./fixtures/keep-queued.ts', import.meta.url).pathname;
const CLIENT = '127.0.0.2';
/** The v2 header of a LOCAL connection (a health check): how the test itself greets a node directly. */
const V2_LOCAL = Buffer.from('0d0a0d0a000d0a515549540a20000000', 'hex');

/** deploy/haproxy.cfg with the frontend on 127.0.0.1:`port` and its servers at `nodes` (in order). */
async function shippedConfig(port: number, nodes: number[]): Promise<string> {
  const text = await readFile(join(REPO_ROOT, 'deploy', 'haproxy.cfg'), 'utf8');
  let binds = 0;
  let servers = 0;
  const out = text
    .replace(/^(\s*bind\s+):25$/m, (_, lead: string) => { binds++; return `${lead}127.0.0.1:${port}`; })
    .replace(/^(\s*server\s+node(\d+)\s+)\S+/gm, (all, lead: string, n: string) => {
      const node = nodes[Number(n) - 1];
      if (node === undefined) return all;
      servers++;
      return `${lead}127.0.0.1:${node}`;
    });
  assert.equal(binds, 1, 'deploy/haproxy.cfg has one `bind :25`');
  assert.equal(servers, nodes.length, `deploy/haproxy.cfg has servers node1..node${nodes.length}`);
  return out;
}

interface Node {
  name: string;
  queue: string;
  daemon: CliProcess;
  port: number;
}

let dir: string | undefined;
const nodes: Node[] = [];
let haproxy: HaproxyProcess | undefined;
after(async () => {
  await haproxy?.stop();
  for (const n of nodes) await n.daemon.kill();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function startNode(name: string): Promise<Node> {
  const queue = join(dir!, name);
  const daemon = spawnCli(['serve', KEEP_QUEUED, '--listen', '127.0.0.1:0', '--queue', queue, '--hostname', name,
    '--no-reverse-dns', '--workers', '1', '--proxy-from', '127.0.0.1']);
  const { port } = await daemon.listening(40_000);
  // greeted through a LOCAL header (127.0.0.1 must send one): its signal handlers are in place now
  const c = await RawClient.connect(port);
  c.write(V2_LOCAL);
  const greeting = await c.read(20_000);
  assert.equal(greeting.text, `220 ${name} ESMTP smtp-receive`);
  await c.quit();
  return { name, queue, daemon, port };
}

/** One session through the balancer: the node that greeted, and the queue id of a 250 (undefined: cut short or refused). */
async function session(port: number, tag: string): Promise<{ node?: string; id?: string }> {
  let c: RawClient | undefined;
  let node: string | undefined;
  try {
    c = await RawClient.connect(port, '127.0.0.1', CLIENT);
    const greeting = await c.read(20_000);
    node = /^220 (\S+) /.exec(greeting.text)?.[1];
    if (!node) return {};
    if ((await c.command('EHLO client.test')).code !== 250) return { node };
    const reply = await c.send('a@example.org', ['b@localhost'], `Subject: ${tag}\r\n\r\n${tag}\r\n`);
    return reply.code === 250 ? { node, id: queuedId(reply) } : { node };
  } catch {
    return { node }; // the connection went away (the node was killed): not acknowledged
  } finally {
    await c?.quit();
  }
}

let retried = 0;

/** Sends one message, retrying a session that failed (at most `tries` sessions); the acknowledged one. */
async function deliverOne(port: number, tag: string, tries = 8): Promise<{ node: string; id: string }> {
  for (let i = 1; i <= tries; i++) {
    const r = await session(port, `${tag}-try${i}`);
    if (r.id) return { node: r.node!, id: r.id };
    retried++;
    await new Promise((res) => setTimeout(res, 100 * i));
  }
  throw new Error(`${tag}: no 250 in ${tries} sessions`);
}

it('two nodes behind the shipped HAProxy config: mail spreads, a SIGKILLed node loses no acknowledged message', { timeout: 120_000 }, async (t) => {
  dir = await mkdtemp(join(tmpdir(), 'smtp-receive-scale-'));
  nodes.push(...await Promise.all([startNode('node1'), startNode('node2')]));
  const front = await freePort();
  haproxy = await startHaproxy(await shippedConfig(front, nodes.map((n) => n.port)), front);
  const acked: Array<{ node: string; id: string; when: 'before' | 'after' }> = [];

  // before the kill: sessions one after another spread over both nodes
  for (let i = 0; i < 8; i++) acked.push({ ...await deliverOne(front, `before-${i}`), when: 'before' });
  const spread = new Set(acked.map((a) => a.node));
  assert.deepEqual([...spread].sort(), ['node1', 'node2'], `both nodes took mail: ${JSON.stringify(acked)}`);

  // four clients keep sending; node1 is SIGKILLed while they do, and they go on (retrying cut sessions)
  let killed = false;
  const clients = [0, 1, 2, 3].map(async (k) => {
    for (let i = 0; i < 6; i++) {
      const startedAfterKill = killed;
      const r = await deliverOne(front, `during-${k}-${i}`);
      acked.push({ ...r, when: startedAfterKill ? 'after' : 'before' });
      if (startedAfterKill) assert.equal(r.node, 'node2', 'a session begun after the kill went to the live node');
    }
  });
  const kill = (async () => {
    while (acked.length < 12) await new Promise((r) => setTimeout(r, 20));
    const exit = await nodes[0]!.daemon.signal('SIGKILL');
    assert.equal(exit.signal, 'SIGKILL');
    killed = true;
  })();
  await Promise.all([kill, ...clients]);
  assert.ok(acked.filter((a) => a.when === 'after').length >= 4, 'sessions after the kill were acknowledged');

  // the health check takes the dead node out (and the live one stays in)
  const deadline = Date.now() + 30_000;
  while (!/smtp_nodes\/node1 is DOWN/.test(haproxy.output()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  assert.match(haproxy.output(), /smtp_nodes\/node1 is DOWN/);
  assert.doesNotMatch(haproxy.output(), /smtp_nodes\/node2 is DOWN/);

  // stop the live node too, then read both queues as their owner
  await haproxy.stop();
  haproxy = undefined;
  const exit = await nodes[1]!.daemon.signal('SIGTERM', 30_000);
  assert.equal(exit.code, 0, nodes[1]!.daemon.stderr);
  const queued = new Map<string, Map<string, { peerAddr: string }>>();
  for (const n of nodes) {
    const { store, close } = await ownQueue(n.queue);
    try {
      queued.set(n.name, new Map([...store.ids()].map((id) => [id, { peerAddr: store.get(id)!.msg.peerAddr }])));
    } finally {
      await close();
    }
  }
  t.diagnostic(`acknowledged: ${acked.length} (${acked.filter((a) => a.when === 'after').length} begun after the kill), ` +
    `sessions retried: ${retried}, queued: ${[...queued].map(([n, q]) => `${n} ${q.size}`).join(', ')}`);
  for (const a of acked) {
    const holders = nodes.filter((n) => queued.get(n.name)!.has(a.id)).map((n) => n.name);
    assert.deepEqual(holders, [a.node], `message ${a.id} (250 from ${a.node}) is in exactly that node's queue`);
    assert.equal(queued.get(a.node)!.get(a.id)!.peerAddr, CLIENT, 'the node saw the client, not the balancer');
  }
});
