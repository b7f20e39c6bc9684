// Memory of anonymous consumers: RSS of `parley serve` before, while and after 400 consumers
// (signup, consumer socket) each send a 240 KiB SetUserProfile and then (unless
// --also-fitting false) one just under the 16 KiB limit, then close their sockets.
//
//   node bench/auth/profile_rss.mjs [--parley build/default/src/app/parley] [--consumers 400]
//        [--settle-ms 15000] [--also-fitting true|false]
//
// Prints one JSON line: RSS in MiB at start, with the consumers connected, right after they
// closed, and after --settle-ms (the allocator returns freed pages over seconds), plus the
// answers the 240 KiB profiles got.
import { createRequire } from 'node:module';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.resolve(here, '../../tests/js/package.json'));
const { Consumer } = require('./lib/consumer');

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}
const parley = arg('parley', path.resolve(here, '../../build/default/src/app/parley'));
const N = Number(arg('consumers', 400));
const settleMs = Number(arg('settle-ms', 15000));
const alsoFitting = arg('also-fitting', 'true') !== 'false';

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-profile-rss-'));
const proc = spawn(parley, ['serve', '--data', dataDir, '--listen', '127.0.0.1:0', '--tls-listen', '127.0.0.1:0',
  '--log-level', 'warn', '--demo'], { stdio: ['ignore', 'pipe', 'inherit'] });
process.on('exit', () => { if (proc.exitCode === null) proc.kill('SIGKILL'); });
const got = await new Promise((resolve, reject) => {
  let out = '';
  const g = {};
  proc.on('exit', (c) => reject(new Error(`parley exited (${c})`)));
  proc.stdout.on('data', (d) => {
    out += d;
    for (const l of out.split('\n')) { try { const o = JSON.parse(l); g[o.event] = o; } catch (e) { /* partial */ } }
    if (g.listening && g.demo) resolve(g);
  });
});
const srv = { https: got.listening.https, httpsHost: new URL(got.listening.https).host, ca: fs.readFileSync(got.listening.ca) };
const rss = () => {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${proc.pid}/status`, 'utf8'));
  return +(Number(m[1]) / 1024).toFixed(1);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
await sleep(2000);
const start = rss();
const big = 'x'.repeat(240 * 1024);
const fits = 'y'.repeat(15 * 1024);
const answers = {};
const consumers = [];
for (let i = 0; i < N; i++) {
  const c = new Consumer(srv, got.demo.account);
  await c.signup();
  await c.connect();
  const r = await c.request('userprofile.SetUserProfile', { firstName: 'A', privateData: { notes: big } });
  answers[r.code] = (answers[r.code] || 0) + 1;
  if (alsoFitting) await c.request('userprofile.SetUserProfile', { firstName: 'A', privateData: { notes: fits } });
  consumers.push(c);
}
const open = rss();
for (const c of consumers) c.ws.close();
await sleep(2000);
const closed = rss();
await sleep(settleMs);
const settled = rss();
proc.kill('SIGTERM');
await new Promise((r) => proc.on('exit', r));
fs.rmSync(dataDir, { recursive: true, force: true });
console.log(JSON.stringify({ consumers: N, rss_mib: { start, open, closed, settled }, answers_240k: answers }));
