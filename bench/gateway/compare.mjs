// Parley's functions gateway beside a plain Node http server and workerd, each running the same
// lambda (Parley's demo echo function), driven by wrk in one run, alternating targets and
// concurrencies so the machine's noise falls on all of them. See compare.sh for how to run it.
//
// For each round, concurrency (32 and 1 keep-alive connections) and target it runs wrk for
// SECONDS and prints one JSON line: requests/s, latency p50/p99 (wrk --latency), non-2xx
// answers, and the server's CPU time per request: utime+stime from /proc/<pid>/stat of the
// server process and its children (Parley's function worker processes), read before and after
// the run. Then a summary: the median over the rounds per target and concurrency, and Parley's
// ratios to the others.
//   Parley:  POST /api/account/{acc}/lambdas/{uuid}/invoke?v=1&externalSystem=bench
//            (`parley serve --demo`, plain HTTP, worker processes, a login bearer)
//   node:    node_server.mjs, the lambda called directly (no sandbox, no auth)
//   workerd: the npm `workerd` binary, the lambda in an ES module worker
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { startDemoServer } from '../lib/demo_server.mjs';
import { median, post, runWrk, writeWrkScript } from './wrk.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const seconds = Number(process.argv[2] ?? 5);
const rounds = Number(process.argv[3] ?? 3);
const work = mkdtempSync(join(tmpdir(), 'parley-gateway-compare-'));
const children = [];
function cleanup() {
  for (const c of children) { try { c.kill('SIGTERM'); } catch { /* gone */ } }
  rmSync(work, { recursive: true, force: true });
}
process.on('exit', cleanup);

async function get(url, headers) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    http.get({ host: u.hostname, port: u.port, path: u.pathname, headers }, (res) => {
      const chunks = []; res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
    }).on('error', reject);
  });
}
function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}
async function waitForPort(port, ms = 20000) {
  const until = Date.now() + ms;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => { c.end(); resolve(true); }).on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listens on ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// ---- Parley
const parley = await startDemoServer('parley-gateway-compare-data-');
children.push(parley.proc);
const acc = parley.events.demo.account;
const base = parley.events.listening.http;
const login = await post(`${base}/api/account/${acc}/login?v=1.3`,
  JSON.stringify({ username: parley.events.demo.admin.username, password: parley.events.demo.admin.password }));
const bearer = JSON.parse(login.body).bearer;
const uuid = parley.events.demo.function;
const fn = await get(`${base}/api/v1/accounts/${acc}/functions/${uuid}`, { authorization: `Bearer ${bearer}` });
const code = JSON.parse(fn.body).code;

const input = { timestamp: 1700000000000, headers: [], payload: { message: 'hello', convId: 'bench' } };
const body = JSON.stringify(input);
const expected = JSON.stringify({ messages: ['echo : hello'] });

// ---- plain Node
writeFileSync(join(work, 'lambda.cjs'), `${code}\nmodule.exports = lambda;\n`);
const nodeProc = spawn(process.execPath, [join(here, 'node_server.mjs'), join(work, 'lambda.cjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
children.push(nodeProc);
const nodePort = await new Promise((resolve) => readline.createInterface({ input: nodeProc.stdout })
  .once('line', (l) => resolve(JSON.parse(l).port)));

// ---- workerd (left out when it is not installed and NO_WORKERD is set: compare.sh)
const workerdBin = join(here, 'node_modules', '.bin', 'workerd');
const withWorkerd = !(process.env.NO_WORKERD && !existsSync(workerdBin));
let workerdProc = null;
let workerdPort = 0;
if (withWorkerd) {
  workerdPort = await freePort();
  writeFileSync(join(work, 'worker.js'), `${code}
  export default {
    async fetch(request) {
      const input = await request.json();
      return new Promise((resolve) => lambda(input, (err, result) => resolve(err
        ? new Response(JSON.stringify({ error: String(err) }), { status: 500 })
        : new Response(JSON.stringify(result ?? null), { headers: { 'content-type': 'application/json' } }))));
    },
  };
  `);
  writeFileSync(join(work, 'config.capnp'), `using Workerd = import "/workerd/workerd.capnp";
  const config :Workerd.Config = (
    services = [ (name = "main", worker = .echo) ],
    sockets = [ (name = "http", address = "127.0.0.1:${workerdPort}", http = (), service = "main") ],
  );
  const echo :Workerd.Worker = (
    modules = [ (name = "worker.js", esModule = embed "worker.js") ],
    compatibilityDate = "2024-01-01",
  );
  `);
  workerdProc = spawn(workerdBin, ['serve', join(work, 'config.capnp')], { stdio: ['ignore', 'inherit', 'inherit'] });
  children.push(workerdProc);
  await waitForPort(workerdPort);
}

const targets = {
  parley: { pid: parley.proc.pid, url: `${base}/api/account/${acc}/lambdas/${uuid}/invoke?v=1&externalSystem=bench`,
            headers: { authorization: `Bearer ${bearer}` } },
  node: { pid: nodeProc.pid, url: `http://127.0.0.1:${nodePort}/`, headers: {} },
};
if (withWorkerd) targets.workerd = { pid: workerdProc.pid, url: `http://127.0.0.1:${workerdPort}/`, headers: {} };
for (const [name, t] of Object.entries(targets)) {
  const r = await post(t.url, body, t.headers);
  if (r.status !== 200 || r.body !== expected) throw new Error(`${name} answered ${r.status} ${r.body}, not ${expected}`);
  t.script = join(work, `${name}.lua`);
  writeWrkScript(t.script, body, t.headers);
}

const results = [];
const names = Object.keys(targets);
for (let round = 0; round < rounds; round++) {
  for (const conns of [32, 1]) {
    // Rotate the order each round, so no target always runs first.
    const order = names.map((_, i) => names[(i + round) % names.length]);
    for (const name of order) {
      const r = { round, target: name, conns, ...runWrk(targets[name], conns, seconds),
                  load: readFileSync('/proc/loadavg', 'utf8').split(' ')[0] };
      results.push(r);
      console.log(JSON.stringify(r));
    }
  }
}

console.log(`\nmedian of ${rounds} rounds, ${seconds} s each (wrk; CPU = server process + children, utime+stime)`);
console.log('target   conns   req/s     p50 µs   p99 µs   CPU µs/req');
const summary = {};
for (const conns of [32, 1]) {
  for (const name of names) {
    const rs = results.filter((r) => r.target === name && r.conns === conns);
    const m = { rps: median(rs.map((r) => r.rps)), p50: median(rs.map((r) => r.p50_us)),
                p99: median(rs.map((r) => r.p99_us)), cpu: median(rs.map((r) => r.cpu_us_per_req)) };
    summary[`${name}/${conns}`] = m;
    console.log(`${name.padEnd(8)} ${String(conns).padStart(5)} ${m.rps.toFixed(0).padStart(8)} ${m.p50.toFixed(0).padStart(9)} ${m.p99.toFixed(0).padStart(8)} ${m.cpu.toFixed(1).padStart(11)}`);
  }
}
const ratio = (a, b) => (a / b).toFixed(2);
for (const conns of [32, 1]) {
  const p = summary[`parley/${conns}`]; const n = summary[`node/${conns}`]; const w = summary[`workerd/${conns}`];
  console.log(`conns ${conns}: Parley/Node CPU per request ${ratio(p.cpu, n.cpu)}, Parley/workerd ${w ? ratio(p.cpu, w.cpu) : 'not run'}; ` +
              `p99 Parley/Node ${ratio(p.p99, n.p99)}, Parley/workerd ${w ? ratio(p.p99, w.p99) : 'not run'}`);
}
process.exit(0);
