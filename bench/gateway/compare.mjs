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
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { startDemoServer } from '../lib/demo_server.mjs';

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

const ticks = 100;  // USER_HZ
function cpuOf(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / ticks;
  } catch { return 0; }
}
// The process and its children (utime+stime of live processes: the children live throughout).
function treeCpu(pid) {
  let total = cpuOf(pid);
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]) === pid) total += cpuOf(Number(d));
    } catch { /* gone */ }
  }
  return total;
}

function post(url, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers } }, (res) => {
      const chunks = []; res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject); req.end(body);
  });
}
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

// ---- workerd
const workerdPort = await freePort();
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
const workerdBin = join(here, 'node_modules', '.bin', 'workerd');
const workerdProc = spawn(workerdBin, ['serve', join(work, 'config.capnp')], { stdio: ['ignore', 'inherit', 'inherit'] });
children.push(workerdProc);
await waitForPort(workerdPort);

const targets = {
  parley: { pid: parley.proc.pid, url: `${base}/api/account/${acc}/lambdas/${uuid}/invoke?v=1&externalSystem=bench`,
            headers: { authorization: `Bearer ${bearer}` } },
  node: { pid: nodeProc.pid, url: `http://127.0.0.1:${nodePort}/`, headers: {} },
  workerd: { pid: workerdProc.pid, url: `http://127.0.0.1:${workerdPort}/`, headers: {} },
};
for (const [name, t] of Object.entries(targets)) {
  const r = await post(t.url, body, t.headers);
  if (r.status !== 200 || r.body !== expected) throw new Error(`${name} answered ${r.status} ${r.body}, not ${expected}`);
  const lua = [
    'wrk.method = "POST"',
    `wrk.body = ${JSON.stringify(body)}`,
    'wrk.headers["Content-Type"] = "application/json"',
    ...Object.entries(t.headers).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`),
  ].join('\n');
  t.script = join(work, `${name}.lua`);
  writeFileSync(t.script, lua + '\n');
}

const unitUs = { us: 1, ms: 1000, s: 1e6 };
function parseWrk(out) {
  const num = (re) => { const m = re.exec(out); return m ? Number(m[1]) : NaN; };
  const pct = (p) => { const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(out); return m ? Number(m[1]) * unitUs[m[2]] : NaN; };
  const reqs = /(\d+) requests in/.exec(out);
  return { requests: reqs ? Number(reqs[1]) : 0, rps: num(/Requests\/sec:\s+([\d.]+)/),
           p50_us: pct(50), p99_us: pct(99), non2xx: num(/Non-2xx or 3xx responses: (\d+)/) || 0,
           socket_errors: /Socket errors/.test(out) ? out.match(/Socket errors:.*$/m)[0] : '' };
}

function runWrk(t, conns) {
  const threads = Math.min(2, conns);
  // Warm-up: connections open, contexts warm.
  execFileSync('wrk', ['-t', String(threads), '-c', String(conns), '-d', '1s', '-s', t.script, t.url], { stdio: 'ignore' });
  const cpu0 = treeCpu(t.pid);
  const out = execFileSync('wrk', ['-t', String(threads), '-c', String(conns), '-d', `${seconds}s`, '--latency', '-s', t.script, t.url]).toString();
  const cpu = treeCpu(t.pid) - cpu0;
  const r = parseWrk(out);
  return { ...r, cpu_us_per_req: r.requests ? Math.round((cpu * 1e6) / r.requests * 10) / 10 : NaN };
}

const results = [];
const names = Object.keys(targets);
for (let round = 0; round < rounds; round++) {
  for (const conns of [32, 1]) {
    // Rotate the order each round, so no target always runs first.
    const order = names.map((_, i) => names[(i + round) % names.length]);
    for (const name of order) {
      const r = { round, target: name, conns, ...runWrk(targets[name], conns),
                  load: readFileSync('/proc/loadavg', 'utf8').split(' ')[0] };
      results.push(r);
      console.log(JSON.stringify(r));
    }
  }
}

const median = (xs) => { const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b); return s.length ? s[(s.length - 1) >> 1] : NaN; };
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
  console.log(`conns ${conns}: Parley/Node CPU per request ${ratio(p.cpu, n.cpu)}, Parley/workerd ${ratio(p.cpu, w.cpu)}; ` +
              `p99 Parley/Node ${ratio(p.p99, n.p99)}, Parley/workerd ${ratio(p.p99, w.p99)}`);
}
process.exit(0);
