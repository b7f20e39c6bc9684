'use strict';
// Boots the real `parley serve` binary on port 0 with a temp data dir and parses its
// {"event":"listening"} (and {"event":"demo"}) lines.
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { request } = require('./http');

const PARLEY_BIN =
  process.env.PARLEY_BIN || path.resolve(__dirname, '../../../build/default/src/app/parley');

function tempDataDir(tag) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `parley-${tag}-`));
}

// Starts the server; resolves {proc, http, https, ca, node, demo, dataDir, httpsHost, stop(), kill(), logs()}.
function startServer({ dataDir, demo = true, args = [], listen = '127.0.0.1:0', tlsListen = '127.0.0.1:0', timeoutMs = 20000 } = {}) {
  dataDir = dataDir || tempDataDir('test');
  const argv = ['serve', '--data', dataDir, '--listen', listen, '--tls-listen', tlsListen,
    '--log-level', process.env.PARLEY_LOG_LEVEL || 'info', ...args];
  if (demo) argv.push('--demo');
  const proc = spawn(PARLEY_BIN, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let stdout = '';
  proc.stderr.on('data', (d) => {
    stderr += d.toString();
    if (stderr.length > 2e6) stderr = stderr.slice(-1e6);
  });
  return new Promise((resolve, reject) => {
    let listening = null;
    let demoLine = null;
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`server did not print its listening line within ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    proc.on('exit', (code, sig) => {
      if (!listening || (demo && !demoLine)) {
        clearTimeout(timer);
        reject(new Error(`server exited early (code ${code}, signal ${sig})\n${stdout}\n${stderr}`));
      }
    });
    proc.stdout.on('data', (d) => {
      stdout += d.toString();
      const lines = stdout.split('\n');
      for (const line of lines) {
        if (!line.trim()) continue;
        let o;
        try {
          o = JSON.parse(line);
        } catch (e) {
          continue;
        }
        if (o.event === 'listening') listening = o;
        if (o.event === 'demo') demoLine = o;
      }
      if (listening && (!demo || demoLine)) {
        clearTimeout(timer);
        const ca = fs.readFileSync(listening.ca);
        const srv = {
          proc,
          dataDir,
          http: listening.http,
          https: listening.https,
          httpsHost: new URL(listening.https).host,
          caPath: listening.ca,
          node: listening.node,
          ca,
          demo: demoLine,
          logs: () => stderr,
          stop: () => stopProc(proc, 'SIGTERM'),
          kill: () => stopProc(proc, 'SIGKILL'),
        };
        resolve(srv);
      }
    });
  });
}

function stopProc(proc, sig) {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve({ code: proc.exitCode, signal: proc.signalCode });
    proc.once('exit', (code, signal) => resolve({ code, signal }));
    proc.kill(sig);
  });
}

// Logs in over the LivePerson login endpoint; returns {bearer, csrf, config, cookie}.
async function login(srv, account, username, password) {
  const r = await request('POST', `${srv.https}/api/account/${account}/login?v=1.3`, {
    ca: srv.ca,
    body: { username, password },
  });
  if (r.status !== 200) throw new Error(`login ${username} failed: ${r.status} ${r.text}`);
  const cookie = (r.headers['set-cookie'] || [])[0] || '';
  return Object.assign({ cookie: cookie.split(';')[0] }, r.json);
}

// REST v1 call as `token`.
function rest(srv, token, method, account, pathTail, body) {
  return request(method, `${srv.https}/api/v1/accounts/${account}/${pathTail}`, {
    ca: srv.ca,
    headers: token ? { Authorization: `Bearer ${token}` } : {},
    body,
  });
}

// A snapshot of what the store holds for an account (skills, users, conversations + messages).
async function storeSnapshot(srv, token, account) {
  const skills = await rest(srv, token, 'GET', account, 'skills');
  const users = await rest(srv, token, 'GET', account, 'users');
  const convs = await rest(srv, token, 'GET', account, 'conversations');
  const out = { skills: skills.json, users: users.json, conversations: convs.json, messages: {} };
  for (const c of convs.json || []) {
    out.messages[c.id] = (await rest(srv, token, 'GET', account, `conversations/${c.id}/messages`)).json;
  }
  return out;
}

module.exports = { startServer, login, rest, storeSnapshot, tempDataDir, PARLEY_BIN };
