// Whole-server benchmark of the REST invoke endpoint:
//   POST /api/v1/accounts/{acc}/functions/{uuid}/invoke  (the demo echo function)
// Starts `parley serve --demo` ($PARLEY_BIN, temp data dir, port 0), logs in as the demo admin and
// keeps CONCURRENCY keep-alive requests in flight over plain HTTP for SECONDS; prints requests/s
// and latency percentiles as one JSON line.
//   PARLEY_BIN=build/bench/src/app/parley node bench/functions/rest_invoke_bench.mjs [concurrency] [seconds]
import { rmSync } from 'node:fs';
import http from 'node:http';
import { startDemoServer } from '../lib/demo_server.mjs';

const concurrency = Number(process.argv[2] ?? 32);
const seconds = Number(process.argv[3] ?? 10);
const { proc, data, events } = await startDemoServer('parley-rest-bench-');
const base = new URL(events.listening.http);
const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
function request(method, path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request({ host: base.hostname, port: base.port, method, path, agent,
      headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      const chunks = []; res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject); if (payload) req.write(payload); req.end();
  });
}
const acc = events.demo.account;
const login = await request('POST', `/api/account/${acc}/login?v=1.3`,
  { username: events.demo.admin.username, password: events.demo.admin.password });
const bearer = JSON.parse(login.body).bearer;
const auth = { authorization: `Bearer ${bearer}` };
const path = `/api/v1/accounts/${acc}/functions/${events.demo.function}/invoke`;
const body = { headers: [], payload: { message: 'hello', convId: 'bench', context: { lpEvent: {}, lpSdes: {} } } };
const first = await request('POST', path, body, auth);
if (first.status !== 200 || !JSON.parse(first.body).result) throw new Error(`invoke failed: ${first.status} ${first.body}`);

const lat = []; let errors = 0; let stop = false;
const t0 = process.hrtime.bigint();
async function worker() {
  while (!stop) {
    const s = process.hrtime.bigint();
    const r = await request('POST', path, body, auth);
    if (r.status !== 200) errors++;
    lat.push(Number(process.hrtime.bigint() - s) / 1e6);
  }
}
setTimeout(() => { stop = true; }, seconds * 1000);
await Promise.all(Array.from({ length: concurrency }, worker));
const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
lat.sort((a, b) => a - b);
const pct = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))].toFixed(2);
console.log(JSON.stringify({ bench: 'rest_invoke', concurrency, seconds: elapsed.toFixed(1),
  requests: lat.length, errors, requestsPerSecond: (lat.length / elapsed).toFixed(0),
  latencyMs: { p50: pct(0.5), p90: pct(0.9), p99: pct(0.99), max: lat[lat.length - 1].toFixed(2) } }));
proc.kill('SIGTERM');
await new Promise((r) => proc.on('exit', r));
rmSync(data, { recursive: true, force: true });
agent.destroy();
