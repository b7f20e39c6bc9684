// Two Parley binaries' functions gateway side by side (A/B), driven by wrk in one run: the same
// request as compare.mjs (the demo echo function, a login bearer, plain HTTP, worker processes),
// alternating A and B (the order swapping each round) at 32 and 1 keep-alive connections, so the
// machine's noise falls on both. Prints one JSON line per run (requests/s, p50/p99, CPU per
// request: utime+stime of the server and its worker processes from /proc, before and after the
// run, divided by the requests wrk counted) and the medians with B/A.
//   node bench/gateway/ab.mjs <binary A> <binary B> [seconds per run, default 5] [rounds, default 3]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDemoServer } from '../lib/demo_server.mjs';

const [binA, binB] = [process.argv[2], process.argv[3]];
if (!binA || !binB) throw new Error('usage: ab.mjs <binary A> <binary B> [seconds] [rounds]');
const seconds = Number(process.argv[4] ?? 5);
const rounds = Number(process.argv[5] ?? 3);
const work = mkdtempSync(join(tmpdir(), 'parley-gateway-ab-'));
const children = [];
process.on('exit', () => {
  for (const c of children) { try { c.kill('SIGTERM'); } catch { /* gone */ } }
  rmSync(work, { recursive: true, force: true });
});

const ticks = 100;  // USER_HZ
function cpuOf(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const x = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(x[11]) + Number(x[12])) / ticks;
  } catch { return 0; }
}
function treeCpu(pid) {
  let total = cpuOf(pid);
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const f = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(f.slice(f.lastIndexOf(')') + 2).split(' ')[1]) === pid) total += cpuOf(Number(d));
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

const body = JSON.stringify({ timestamp: 1700000000000, headers: [], payload: { message: 'hello', convId: 'bench' } });
const expected = JSON.stringify({ messages: ['echo : hello'] });
async function start(name, bin) {
  process.env.PARLEY_BIN = bin;
  const p = await startDemoServer(`parley-gateway-ab-${name}-`);
  children.push(p.proc);
  const acc = p.events.demo.account;
  const base = p.events.listening.http;
  const login = await post(`${base}/api/account/${acc}/login?v=1.3`,
    JSON.stringify({ username: p.events.demo.admin.username, password: p.events.demo.admin.password }));
  const bearer = JSON.parse(login.body).bearer;
  const url = `${base}/api/account/${acc}/lambdas/${p.events.demo.function}/invoke?v=1&externalSystem=bench`;
  const r = await post(url, body, { authorization: `Bearer ${bearer}` });
  if (r.status !== 200 || r.body !== expected) throw new Error(`${name} answered ${r.status} ${r.body}`);
  const script = join(work, `${name}.lua`);
  writeFileSync(script, ['wrk.method = "POST"', `wrk.body = ${JSON.stringify(body)}`,
    'wrk.headers["Content-Type"] = "application/json"',
    `wrk.headers["Authorization"] = ${JSON.stringify(`Bearer ${bearer}`)}`].join('\n') + '\n');
  return { pid: p.proc.pid, url, script };
}
const targets = { A: await start('A', binA), B: await start('B', binB) };

const unitUs = { us: 1, ms: 1000, s: 1e6 };
function runWrk(t, conns) {
  const threads = String(Math.min(2, conns));
  execFileSync('wrk', ['-t', threads, '-c', String(conns), '-d', '1s', '-s', t.script, t.url], { stdio: 'ignore' });
  const cpu0 = treeCpu(t.pid);
  const out = execFileSync('wrk', ['-t', threads, '-c', String(conns), '-d', `${seconds}s`, '--latency', '-s', t.script, t.url]).toString();
  const cpu = treeCpu(t.pid) - cpu0;
  const pct = (p) => { const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(out); return m ? Number(m[1]) * unitUs[m[2]] : NaN; };
  const requests = Number((/(\d+) requests in/.exec(out) ?? [0, 0])[1]);
  const non2xx = Number((/Non-2xx or 3xx responses: (\d+)/.exec(out) ?? [0, 0])[1]);
  return { requests, rps: Number((/Requests\/sec:\s+([\d.]+)/.exec(out) ?? [0, NaN])[1]),
           p50_us: pct(50), p99_us: pct(99), non2xx,
           cpu_us_per_req: requests ? Math.round((cpu * 1e6) / requests * 10) / 10 : NaN };
}

const results = [];
for (let round = 0; round < rounds; round++) {
  for (const conns of [32, 1]) {
    for (const name of round % 2 ? ['B', 'A'] : ['A', 'B']) {
      const r = { round, binary: name, conns, ...runWrk(targets[name], conns),
                  load: readFileSync('/proc/loadavg', 'utf8').split(' ')[0] };
      results.push(r);
      console.log(JSON.stringify(r));
    }
  }
}
const median = (xs) => { const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b); return s.length ? s[(s.length - 1) >> 1] : NaN; };
console.log(`\nmedian of ${rounds} rounds, ${seconds} s each; A = ${binA}, B = ${binB}`);
console.log('binary conns    req/s    p50 µs   p99 µs   CPU µs/req');
for (const conns of [32, 1]) {
  const m = {};
  for (const name of ['A', 'B']) {
    const rs = results.filter((r) => r.binary === name && r.conns === conns);
    m[name] = { rps: median(rs.map((r) => r.rps)), p50: median(rs.map((r) => r.p50_us)),
                p99: median(rs.map((r) => r.p99_us)), cpu: median(rs.map((r) => r.cpu_us_per_req)) };
    console.log(`${name.padEnd(6)} ${String(conns).padStart(5)} ${m[name].rps.toFixed(0).padStart(8)} ${m[name].p50.toFixed(0).padStart(9)} ${m[name].p99.toFixed(0).padStart(8)} ${m[name].cpu.toFixed(1).padStart(11)}`);
  }
  console.log(`conns ${conns}: CPU per request B/A ${(m.B.cpu / m.A.cpu).toFixed(2)}, p99 B/A ${(m.B.p99 / m.A.p99).toFixed(2)}`);
}
process.exit(0);
