// Whole-server benchmark of the functions gateway beside the console's test invoke, in one run:
//   gateway:     POST /api/account/{acc}/lambdas/{uuid}/invoke?v=1&externalSystem=bench
//                (the deployed demo echo function on its warm context)
//   test-invoke: POST /api/v1/accounts/{acc}/functions/{uuid}/invoke
//                (the saved code in a fresh context)
// Starts `parley serve --demo` ($PARLEY_BIN, temp data dir, port 0, worker processes), logs in as
// the demo admin and, for each path and each concurrency (1 and 32 keep-alive connections),
// drives requests for SECONDS; prints one JSON line per run with requests/s, latency percentiles
// and the server's CPU time per request: utime+stime of the server process and its function
// worker processes (/proc/<pid>/stat), read before and after the run.
//   PARLEY_BIN=build/default/src/app/parley node bench/functions/gateway_bench.mjs [seconds] [rounds]
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import http from 'node:http';
import { startDemoServer } from '../lib/demo_server.mjs';

const seconds = Number(process.argv[2] ?? 5);
const rounds = Number(process.argv[3] ?? 1);
const { proc, data, events } = await startDemoServer('parley-gateway-bench-');

const ticks = 100;  // USER_HZ on Linux
function cpuSeconds(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / ticks;  // utime, stime
  } catch { return 0; }
}
// The server and its children (the function worker processes).
function serverCpu() {
  let total = cpuSeconds(proc.pid);
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === proc.pid) total += cpuSeconds(d);
    } catch { /* gone */ }
  }
  return total;
}

const base = new URL(events.listening.http);
function request(agent, method, path, payload, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: base.hostname, port: base.port, method, path, agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), ...headers } }, (res) => {
      const chunks = []; res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject); req.end(payload);
  });
}
const acc = events.demo.account;
const setupAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const login = await request(setupAgent, 'POST', `/api/account/${acc}/login?v=1.3`,
  JSON.stringify({ username: events.demo.admin.username, password: events.demo.admin.password }), {});
const auth = { authorization: `Bearer ${JSON.parse(login.body).bearer}` };
const uuid = events.demo.function;
const payload = { message: 'hello', convId: 'bench', context: { lpEvent: {}, lpSdes: {} } };
const paths = {
  gateway: { path: `/api/account/${acc}/lambdas/${uuid}/invoke?v=1&externalSystem=bench`,
    body: JSON.stringify({ timestamp: Date.now(), headers: [], payload }),
    ok: (r) => r.status === 200 && JSON.parse(r.body) !== null },
  'test-invoke': { path: `/api/v1/accounts/${acc}/functions/${uuid}/invoke`,
    body: JSON.stringify({ headers: [], payload }),
    ok: (r) => r.status === 200 && JSON.parse(r.body).result !== undefined },
};
for (const [name, p] of Object.entries(paths)) {
  const r = await request(setupAgent, 'POST', p.path, p.body, auth);
  if (!p.ok(r)) throw new Error(`${name} failed: ${r.status} ${r.body}`);
}

async function run(name, concurrency) {
  const p = paths[name];
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  // Warm the connections.
  await Promise.all(Array.from({ length: concurrency }, () => request(agent, 'POST', p.path, p.body, auth)));
  const lat = []; let errors = 0; let stop = false;
  const cpu0 = serverCpu();
  const t0 = process.hrtime.bigint();
  async function worker() {
    while (!stop) {
      const s = process.hrtime.bigint();
      const r = await request(agent, 'POST', p.path, p.body, auth);
      if (r.status !== 200) errors++;
      lat.push(Number(process.hrtime.bigint() - s) / 1e6);
    }
  }
  setTimeout(() => { stop = true; }, seconds * 1000);
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = serverCpu() - cpu0;
  agent.destroy();
  lat.sort((a, b) => a - b);
  const pct = (q) => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))].toFixed(2);
  console.log(JSON.stringify({ bench: 'gateway', path: name, concurrency, seconds: elapsed.toFixed(1),
    requests: lat.length, errors, requestsPerSecond: Math.round(lat.length / elapsed),
    latencyMs: { p50: pct(0.5), p99: pct(0.99) },
    serverCpuUsPerRequest: Math.round((cpu * 1e6) / lat.length) }));
}

for (let r = 0; r < rounds; r++) {
  for (const concurrency of [1, 32]) {
    // Alternate the order between rounds so neither path always runs first.
    const order = r % 2 === 0 ? ['gateway', 'test-invoke'] : ['test-invoke', 'gateway'];
    for (const name of order) await run(name, concurrency);
  }
}
proc.kill('SIGTERM');
await new Promise((r) => proc.on('exit', r));
rmSync(data, { recursive: true, force: true });
setupAgent.destroy();
