// Login flood vs. the rest of the API: the latency of an authenticated REST GET while many
// clients hammer the login endpoint, compared with the same GET on an idle server, in one run.
//
//   node bench/auth/login_flood.mjs [--parley build/default/src/app/parley] [--clients 32]
//        [--requests 400] [--max-seconds 60] [--mode wrong|right|spread] [--warmup-ms 1500]
//
// Starts `parley serve --demo` on port 0 (plain HTTP, a temp data dir), logs in as the demo
// admin, then measures `GET /api/v1/accounts/{acc}/skills` one request at a time (keep-alive):
// `--requests` times (or for at most `--max-seconds`) on the idle server, then again while
// `--clients` flood clients (a child
// process, so its event loop does not delay the measuring one) post logins as fast as the server
// answers them:
//   wrong  — the demo agent's login name with a wrong password (what a guesser sends);
//   right  — one user per client (created first) with its real password (every login costs a
//            full password hash; at most 20 run at once from one address, the rest get 429);
//   spread — a different unknown login name each time, wrong password (defeats per-user limits).
// Prints one JSON line: the idle and flood p50/p99/max in ms, their ratio, and the flood's
// answers by status.
import { spawn, fork } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

function post(agent, url, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const h = { Accept: 'application/json', ...headers };
    if (payload !== undefined) {
      h['Content-Type'] = 'application/json';
      h['Content-Length'] = Buffer.byteLength(payload);
    }
    const req = http.request(
      { method: payload === undefined ? 'GET' : 'POST', hostname: u.hostname, port: u.port,
        path: u.pathname + u.search, headers: h, agent },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString() }));
      });
    req.on('error', reject);
    req.setTimeout(60000, () => req.destroy(new Error('timeout')));
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

// ---- flood child ----------------------------------------------------------------------------
if (process.argv[2] === '--flood-child') {
  const cfg = JSON.parse(process.argv[3]);
  const agent = new http.Agent({ keepAlive: true, maxSockets: cfg.clients });
  const counts = {};
  let stop = false;
  let n = 0;
  process.on('message', (m) => {
    if (m === 'stop') stop = true;
  });
  const loop = async (_, k) => {
    while (!stop) {
      let username = cfg.mode === 'spread' ? `nobody-${process.pid}-${n++}` : cfg.username;
      let password = 'wrong-password';
      if (cfg.mode === 'right') ({ username, password } = cfg.users[k]);
      try {
        const r = await post(agent, `${cfg.http}/api/account/${cfg.account}/login?v=1.3`, { username, password });
        counts[r.status] = (counts[r.status] || 0) + 1;
      } catch (e) {
        counts.error = (counts.error || 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: cfg.clients }, loop));
  process.send({ counts });
  process.exit(0);
}

// ---- main -----------------------------------------------------------------------------------
const parley = arg('parley', path.resolve(here, '../../build/default/src/app/parley'));
const clients = Number(arg('clients', 32));
const requests = Number(arg('requests', 400));
const mode = arg('mode', 'wrong');
const warmupMs = Number(arg('warmup-ms', 1500));
const maxSeconds = Number(arg('max-seconds', 60));

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-login-flood-'));
const proc = spawn(parley, ['serve', '--data', dataDir, '--listen', '127.0.0.1:0', '--tls-listen', '',
  '--log-level', 'warn', '--demo'], { stdio: ['ignore', 'pipe', 'inherit'] });
let child;
const cleanup = () => {
  if (proc.exitCode === null) proc.kill('SIGKILL');
  if (child && child.exitCode === null) child.kill('SIGKILL');
};
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(1));
const lines = await new Promise((resolve, reject) => {
  let out = '';
  const got = {};
  proc.on('exit', (c) => reject(new Error(`parley exited (${c})`)));
  proc.stdout.on('data', (d) => {
    out += d;
    for (const l of out.split('\n')) {
      try {
        const o = JSON.parse(l);
        got[o.event] = o;
      } catch (e) { /* partial line */ }
    }
    if (got.listening && got.demo) resolve(got);
  });
});
const base = lines.listening.http;
const acc = lines.demo.account;
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const login = await post(agent, `${base}/api/account/${acc}/login?v=1.3`,
  { username: lines.demo.admin.username, password: lines.demo.admin.password });
if (login.status !== 200) throw new Error(`admin login failed: ${login.status} ${login.text}`);
const bearer = JSON.parse(login.text).bearer;

// `right`: one user per flood client (the throttle limits concurrent logins of one user), made
// before the measurements.
const floodUsers = [];
if (mode === 'right') {
  for (let i = 0; i < clients; i++) {
    const u = { username: `flood-${i}`, password: `flood-pw-${i}` };
    const r = await post(agent, `${base}/api/v1/accounts/${acc}/users`,
      { loginName: u.username, password: u.password, roles: ['AGENT'] }, { Authorization: `Bearer ${bearer}` });
    if (r.status !== 201) throw new Error(`creating ${u.username} failed: ${r.status} ${r.text}`);
    floodUsers.push(u);
  }
}

async function measure() {
  const ms = [];
  const statuses = {};
  const until = Date.now() + maxSeconds * 1000;
  for (let i = 0; i < requests && Date.now() < until; i++) {
    const t0 = process.hrtime.bigint();
    const r = await post(agent, `${base}/api/v1/accounts/${acc}/skills`, undefined, { Authorization: `Bearer ${bearer}` });
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
    statuses[r.status] = (statuses[r.status] || 0) + 1;
  }
  ms.sort((a, b) => a - b);
  const q = (p) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))];
  return { n: ms.length, p50: +q(0.5).toFixed(2), p99: +q(0.99).toFixed(2), max: +ms[ms.length - 1].toFixed(2), statuses };
}

await measure();  // warm the connection and the caches
const idle = await measure();
child = fork(fileURLToPath(import.meta.url), ['--flood-child', JSON.stringify({
  http: base, account: acc, clients, mode, username: lines.demo.agent.username, users: floodUsers,
})]);
const floodDone = new Promise((resolve) => child.on('message', resolve));
await new Promise((r) => setTimeout(r, warmupMs));
const t0 = Date.now();
const flood = await measure();
const floodMs = Date.now() - t0;
child.send('stop');
const { counts } = await floodDone;
proc.kill('SIGTERM');
await new Promise((r) => proc.on('exit', r));
fs.rmSync(dataDir, { recursive: true, force: true });
console.log(JSON.stringify({
  mode, clients, requests, idle, flood, p99_ratio: +(flood.p99 / idle.p99).toFixed(2),
  flood_answers: counts, flood_seconds: +((floodMs + warmupMs) / 1000).toFixed(1),
}));
