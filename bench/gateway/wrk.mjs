// What compare.mjs and ab.mjs share: a target's CPU time and context switches from /proc, a JSON
// POST, the wrk script for a POST with headers, one measured wrk run (after a 1 s warm-up) with
// its CPU and context switches per request, and the median.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';

const ticks = 100;  // USER_HZ
function cpuOf(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / ticks;
  } catch { return 0; }
}
// `of(pid)` summed over the process and its children.
function overTree(pid, of) {
  let total = of(pid);
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]) === pid) total += of(Number(d));
    } catch { /* gone */ }
  }
  return total;
}

// The process and its children (utime+stime of live processes: the children live throughout).
export function treeCpu(pid) {
  return overTree(pid, cpuOf);
}

// Context switches (voluntary and involuntary) of every thread of a process.
function switchesOf(pid) {
  let n = 0;
  let tasks = [];
  try { tasks = readdirSync(`/proc/${pid}/task`); } catch { return 0; }
  for (const t of tasks) {
    try {
      const s = readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8');
      for (const m of s.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)$/gm)) n += Number(m[1]);
    } catch { /* gone */ }
  }
  return n;
}
// The same over the process and its children (threads that ended meanwhile are not counted:
// the server's threads and its worker processes live throughout a run).
export function treeSwitches(pid) {
  return overTree(pid, switchesOf);
}

export function post(url, body, headers = {}) {
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

// Writes the wrk Lua script that POSTs `body` as JSON with `headers`.
export function writeWrkScript(path, body, headers) {
  const lua = [
    'wrk.method = "POST"',
    `wrk.body = ${JSON.stringify(body)}`,
    'wrk.headers["Content-Type"] = "application/json"',
    ...Object.entries(headers).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`),
  ].join('\n');
  writeFileSync(path, lua + '\n');
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

// One run of `seconds` against target {pid, url, script} with `conns` keep-alive connections.
export function runWrk(t, conns, seconds) {
  const threads = Math.min(2, conns);
  // Warm-up: connections open, contexts warm.
  execFileSync('wrk', ['-t', String(threads), '-c', String(conns), '-d', '1s', '-s', t.script, t.url], { stdio: 'ignore' });
  const cpu0 = treeCpu(t.pid);
  const cs0 = treeSwitches(t.pid);
  const out = execFileSync('wrk', ['-t', String(threads), '-c', String(conns), '-d', `${seconds}s`, '--latency', '-s', t.script, t.url]).toString();
  const cpu = treeCpu(t.pid) - cpu0;
  const cs = treeSwitches(t.pid) - cs0;
  const r = parseWrk(out);
  return { ...r, cpu_us_per_req: r.requests ? Math.round((cpu * 1e6) / r.requests * 10) / 10 : NaN,
           switches_per_req: r.requests ? Math.round(cs / r.requests * 100) / 100 : NaN };
}

export const median = (xs) => { const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b); return s.length ? s[(s.length - 1) >> 1] : NaN; };
