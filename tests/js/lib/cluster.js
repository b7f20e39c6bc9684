'use strict';
// tools/cluster.sh driven from the tests: start it (resolves once the demo line is out), read the
// lines it prints later, stop it.
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const os = require('os');
const { spawn } = require('child_process');
const { request } = require('./http');
const { tempDataDir, PARLEY_BIN, rest } = require('./server');
const { Consumer } = require('./consumer');

const SCRIPT = path.resolve(__dirname, '../../../tools/cluster.sh');

// Starts the cluster; resolves {proc, dir, stderr(), events(), listening[], cluster, demo}.
function startCluster(n, timeoutMs = 240000, env = {}) {
  const dir = tempDataDir('cluster');
  const proc = spawn('bash', [SCRIPT, String(n)], {
    env: Object.assign({}, process.env, { PARLEY_BIN, PARLEY_CLUSTER_DIR: dir }, env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let parsed = [];
  proc.stderr.on('data', (d) => { stderr += d.toString(); });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGTERM');
      reject(new Error(`cluster did not start within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`cluster.sh exited early (${code})\n${stdout}\n${stderr}`));
    });
    proc.stdout.on('data', (d) => {
      stdout += d.toString();
      // Whole lines only (a chunk may end inside one).
      parsed = stdout.split('\n').slice(0, -1).filter((l) => l.trim()).map((l) => JSON.parse(l));
      const demo = parsed.find((o) => o.event === 'demo');
      if (!demo) return;
      clearTimeout(timer);
      proc.removeAllListeners('exit');
      resolve({
        proc,
        dir,
        stderr: () => stderr,
        // Every line printed so far (the later ones: {"event":"postgres",…} after SIGUSR1).
        events: () => parsed,
        listening: parsed.filter((o) => o.event === 'listening'),
        cluster: parsed.find((o) => o.event === 'cluster'),
        demo,
      });
    });
  });
}

// SIGTERM to tools/cluster.sh, which stops its nodes and waits for them: a node a test left
// stopped (SIGSTOP) is continued first, or it would never end.
function stopCluster(c) {
  for (const f of fs.existsSync(c.dir) ? fs.readdirSync(c.dir) : []) {
    if (!/^node\d+\.pid$/.test(f)) continue;
    try { process.kill(Number(fs.readFileSync(path.join(c.dir, f), 'utf8')), 'SIGCONT'); } catch (e) { /* gone */ }
  }
  return new Promise((resolve) => {
    if (c.proc.exitCode !== null) return resolve(c.proc.exitCode);
    c.proc.once('exit', (code) => resolve(code));
    c.proc.kill('SIGTERM');
  });
}

// Where the logs of a test's cluster are kept after it is removed: the nodes', PostgreSQL's,
// NATS's and HAProxy's, one folder per test, replaced by the test's next run (so a failure can
// be read afterwards; nothing accumulates).
const keptLogsRoot = path.join(os.tmpdir(), 'parley-cluster-logs');

function keepLogs(c, name) {
  const to = path.join(keptLogsRoot, name.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80));
  fs.rmSync(to, { recursive: true, force: true });
  fs.mkdirSync(to, { recursive: true });
  const logs = [['.', /^node\d+\.(log|out)$|^haproxy\.log$/], ['pg', /^server\.log$/], ['nats', /^server\.log$/]];
  for (const [sub, re] of logs) {
    const from = path.join(c.dir, sub);
    for (const f of fs.existsSync(from) ? fs.readdirSync(from) : []) {
      if (re.test(f)) fs.copyFileSync(path.join(from, f), path.join(to, sub === '.' ? f : `${sub}-${f}`));
    }
  }
  return to;
}

// A cluster of n nodes for test t, stopped and removed after it (its logs kept, keepLogs), with
// what the tests use: the nodes by name, the CA, the demo account, srv(node) for the clients, and
// an admin bearer from a login through node 2.
async function clusterForTest(t, n, env = {}) {
  const c = await startCluster(n, 240000, env);
  t.after(async () => {
    await stopCluster(c);
    try {
      t.diagnostic(`cluster logs kept in ${keepLogs(c, t.name)}`);
    } catch (e) {
      t.diagnostic(`cluster logs not kept: ${e.message}`);
    }
    fs.rmSync(c.dir, { recursive: true, force: true });
  });
  const byName = Object.fromEntries(c.listening.map((l) => [l.node, l]));
  const ca = fs.readFileSync(c.listening[0].ca);
  const acc = c.demo.account;
  const srv = (node) => ({ https: node.https, httpsHost: new URL(node.https).host, ca });
  const login = await request('POST', `${byName.node2.https}/api/account/${acc}/login?v=1.3`, {
    ca, body: { username: c.demo.admin.username, password: c.demo.admin.password },
  });
  assert.equal(login.status, 200, login.text);
  return { c, byName, ca, acc, srv, bearer: login.json.bearer };
}

// The bot's content messages a consumer socket has seen, as text.
const botTexts = (sock) => sock.contentRecords()
  .filter((r) => r.originatorMetadata.role === 'ASSIGNED_AGENT').map((r) => String(r.event.message));

// The conversation as REST shows it through the node `srvOfNode` (srv(node) of clusterForTest).
async function conversationVia(srvOfNode, bearer, acc, convId) {
  const r = await rest(srvOfNode, bearer, 'GET', acc, `conversations/${convId}`);
  assert.equal(r.status, 200, r.text);
  return r.json;
}

// One ms.PublishEvent of a text on `sock`, sent once and answered within timeoutMs (no retry:
// what the tests time, e.g. a publish waiting for a conversation's next owner). With `key`, the
// publish carries it as its idempotency key (envelope metadata).
function publishOnce(sock, convId, message, timeoutMs, key) {
  const id = String(sock.nextId++);
  const msg = {
    kind: 'req', id, type: 'ms.PublishEvent',
    body: { dialogId: convId, event: { type: 'ContentEvent', contentType: 'text/plain', message } },
  };
  if (key !== undefined) msg.metadata = [{ type: 'IdempotencyKey', key }];
  return sock.sendRaw(JSON.stringify(msg), id, timeoutMs);
}

// A consumer on `srvOfNode` with an open conversation on `skillId`; closed after the test.
async function consumerWithConversation(t, srvOfNode, acc, skillId) {
  const consumer = new Consumer(srvOfNode, acc);
  await consumer.signup();
  await consumer.connect();
  t.after(() => consumer.close());
  const created = await consumer.request('cm.ConsumerRequestConversation',
    { skillId, channelType: 'MESSAGING', ttrDefName: 'NORMAL' });
  assert.equal(created.code, 200, JSON.stringify(created));
  return { consumer, convId: created.body.conversationId };
}

// A new consumer's conversation on `skillId`, created through node A (which owns it), and the
// same consumer's second socket on node B subscribed to it; both closed after the test.
async function conversationOnTwoNodes(t, srvA, srvB, acc, skillId) {
  const { consumer: onA, convId } = await consumerWithConversation(t, srvA, acc, skillId);
  const onB = new Consumer(srvB, acc);
  onB.jwt = onA.jwt;
  await onB.connect();
  t.after(() => onB.close());
  assert.equal((await onB.request('ms.SubscribeMessagingEvents', { dialogId: convId, fromSeq: 0 })).code, 200);
  return { onA, onB, convId };
}

module.exports = {
  startCluster, stopCluster, clusterForTest, botTexts, conversationVia, publishOnce, conversationOnTwoNodes,
  consumerWithConversation,
};
