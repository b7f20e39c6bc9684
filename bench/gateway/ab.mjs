// Two Parley binaries' functions gateway side by side (A/B), driven by wrk in one run: the same
// request as compare.mjs (the demo echo function, a login bearer, plain HTTP, worker processes),
// alternating A and B (the order swapping each round) at 32 and 1 keep-alive connections, so the
// machine's noise falls on both. Prints one JSON line per run (requests/s, p50/p99, CPU per
// request: utime+stime of the server and its worker processes from /proc, before and after the
// run, divided by the requests wrk counted; context switches of their threads the same way) and
// the medians with B/A.
//   node bench/gateway/ab.mjs <binary A> <binary B> [seconds per run, default 5] [rounds, default 3]
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDemoServer } from '../lib/demo_server.mjs';
import { median, post, runWrk, writeWrkScript } from './wrk.mjs';

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
  writeWrkScript(script, body, { Authorization: `Bearer ${bearer}` });
  return { pid: p.proc.pid, url, script };
}
const targets = { A: await start('A', binA), B: await start('B', binB) };

const results = [];
for (let round = 0; round < rounds; round++) {
  for (const conns of [32, 1]) {
    for (const name of round % 2 ? ['B', 'A'] : ['A', 'B']) {
      const r = { round, binary: name, conns, ...runWrk(targets[name], conns, seconds),
                  load: readFileSync('/proc/loadavg', 'utf8').split(' ')[0] };
      results.push(r);
      console.log(JSON.stringify(r));
    }
  }
}
console.log(`\nmedian of ${rounds} rounds, ${seconds} s each; A = ${binA}, B = ${binB}`);
console.log('binary conns    req/s    p50 µs   p99 µs   CPU µs/req   switches/req');
for (const conns of [32, 1]) {
  const m = {};
  for (const name of ['A', 'B']) {
    const rs = results.filter((r) => r.binary === name && r.conns === conns);
    m[name] = { rps: median(rs.map((r) => r.rps)), p50: median(rs.map((r) => r.p50_us)),
                p99: median(rs.map((r) => r.p99_us)), cpu: median(rs.map((r) => r.cpu_us_per_req)),
                switches: median(rs.map((r) => r.switches_per_req)) };
    console.log(`${name.padEnd(6)} ${String(conns).padStart(5)} ${m[name].rps.toFixed(0).padStart(8)} ${m[name].p50.toFixed(0).padStart(9)} ${m[name].p99.toFixed(0).padStart(8)} ${m[name].cpu.toFixed(1).padStart(11)} ${m[name].switches.toFixed(2).padStart(14)}`);
  }
  console.log(`conns ${conns}: CPU per request B/A ${(m.B.cpu / m.A.cpu).toFixed(2)}, p99 B/A ${(m.B.p99 / m.A.p99).toFixed(2)}`);
}
process.exit(0);
