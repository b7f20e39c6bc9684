'use strict';
// Identity: sessions and API keys that end when they should, sockets of revoked users closed
// within a second, API key management, login throttling, operator-created accounts, bounded
// consumer profiles and names without control characters. Each attack is performed for real
// against the `parley` binary.
const test = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('child_process');
const fs = require('fs');
const WebSocket = require('ws');
const { startServer, login, rest, PARLEY_BIN } = require('./lib/server');
const { request } = require('./lib/http');
const { Consumer } = require('./lib/consumer');
const { adminSession, createUser } = require('./lib/setup');

const METRICS_TOKEN = 'identity-test-metrics';
let srv;
let admin;
test.before(async () => {
  srv = await startServer({ args: ['--metrics-token', METRICS_TOKEN] });
  admin = await adminSession(srv);
});
test.after(async () => {
  if (srv) {
    const r = await srv.stop();
    assert.equal(r.code, 0, `clean exit on SIGTERM; the server's last log lines:\n${srv.logs().slice(-4000)}`);
  }
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function loginRaw(s, account, username, password) {
  return request('POST', `${s.https}/api/account/${account}/login?v=1.3`, {
    ca: s.ca, body: { username, password },
  });
}

// Opens an agent socket with `token`; resolves {ws, closed: Promise<{code, reason, at}>}.
function agentSocket(s, account, token) {
  const ws = new WebSocket(`wss://${s.httpsHost}/ws_api/account/${account}/messaging/brand/${token}?v=2.1`, { ca: s.ca });
  const closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString(), at: Date.now() })));
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws, closed }));
    ws.once('error', reject);
    ws.once('unexpected-response', (req, res) => reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)));
  });
}

// One request over an open agent socket; resolves with the response envelope.
function agentRequest(ws, type, body) {
  const id = String(Math.random()).slice(2);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no response to ${type}`)), 5000);
    const onMessage = (data) => {
      const m = JSON.parse(data.toString());
      if (m.kind === 'resp' && String(m.reqId) === id) {
        clearTimeout(timer);
        ws.off('message', onMessage);
        resolve(m);
      }
    };
    ws.on('message', onMessage);
    ws.send(JSON.stringify({ kind: 'req', id, type, body }));
  });
}

async function newUser(roles = ['AGENT'], type = 'HUMAN') {
  const u = await createUser(srv, admin, { loginName: `u-${Math.random().toString(36).slice(2, 10)}`, type, roles });
  const s = await login(srv, admin.account, u.loginName, u.password);
  return Object.assign(u, { bearer: s.bearer });
}

async function apiKey(token, body) {
  const r = await rest(srv, token, 'POST', admin.account, 'apikeys', body);
  assert.equal(r.status, 201, r.text);
  return r.json;
}

// -------------------------------------------------------------------------------- revocation

test('a password change ends the old session and the API keys of that user', { timeout: 60000 }, async () => {
  const u = await newUser();
  const key = await apiKey(u.bearer, { name: 'ci' });
  assert.equal((await rest(srv, key.key, 'GET', admin.account, 'me')).status, 200);
  const p = await rest(srv, admin.bearer, 'PATCH', admin.account, `users/${u.id}`, { password: 'a-new-password' });
  assert.equal(p.status, 200, p.text);
  const old = await rest(srv, u.bearer, 'GET', admin.account, 'me');
  assert.equal(old.status, 401, 'the session from before the password change still works');
  assert.equal((await rest(srv, key.key, 'GET', admin.account, 'me')).status, 401, 'the API key still works');
  // The new password logs in.
  assert.equal((await loginRaw(srv, admin.account, u.loginName, 'a-new-password')).status, 200);
});

test('a role change ends the sessions and closes the socket that carried the old roles', { timeout: 60000 }, async () => {
  const u = await newUser(['AGENT', 'AGENT_MANAGER']);
  const sock = await agentSocket(srv, admin.account, u.bearer);
  const t0 = Date.now();
  const p = await rest(srv, admin.bearer, 'PATCH', admin.account, `users/${u.id}`, { roles: ['AGENT'] });
  assert.equal(p.status, 200, p.text);
  const closed = await Promise.race([sock.closed, sleep(5000).then(() => null)]);
  assert.ok(closed, 'the socket of the user whose roles changed stayed open');
  assert.equal(closed.code, 4401);
  assert.ok(closed.at - t0 <= 1000 + 500, `closed ${closed.at - t0} ms after the change (limit 1 s)`);
  assert.equal((await rest(srv, u.bearer, 'GET', admin.account, 'me')).status, 401);
});

for (const how of ['delete', 'disable']) {
  test(`a ${how}d user's agent and bot sockets close within a second and can do nothing`, { timeout: 60000 }, async () => {
    for (const type of ['HUMAN', 'BOT']) {
      const u = await newUser(['AGENT', 'AGENT_MANAGER'], type);
      const sock = await agentSocket(srv, admin.account, u.bearer);
      const before = await agentRequest(sock.ws, 'cqm.SubscribeExConversations', { convState: ['OPEN'] });
      assert.equal(before.code, 200);
      const t0 = Date.now();
      const r = how === 'delete'
        ? await rest(srv, admin.bearer, 'DELETE', admin.account, `users/${u.id}`)
        : await rest(srv, admin.bearer, 'PATCH', admin.account, `users/${u.id}`, { isEnabled: false });
      const changed = Date.now();
      assert.equal(r.status, 200, r.text);
      const closed = await Promise.race([sock.closed, sleep(5000).then(() => null)]);
      assert.ok(closed, `the ${type} user's socket stayed open after ${how}`);
      assert.equal(closed.code, 4401);
      assert.ok(closed.at - changed <= 1000, `closed ${closed.at - changed} ms after the ${how} answered (${changed - t0} ms to answer)`);
      // No new socket, no REST, no login.
      await assert.rejects(agentSocket(srv, admin.account, u.bearer), /HTTP 401/);
      assert.equal((await rest(srv, u.bearer, 'GET', admin.account, 'me')).status, 401);
      const again = await loginRaw(srv, admin.account, u.loginName, u.password);
      assert.equal(again.status, 401);
      if (how === 'disable') {
        assert.match(again.json.error, /disabled/);
        const list = await rest(srv, admin.bearer, 'GET', admin.account, `users/${u.id}`);
        assert.equal(list.json.isEnabled, false);
        // Enabled again, the user logs in with its password.
        const e = await rest(srv, admin.bearer, 'PATCH', admin.account, `users/${u.id}`, { isEnabled: true });
        assert.equal(e.status, 200, e.text);
        assert.equal((await loginRaw(srv, admin.account, u.loginName, u.password)).status, 200);
      }
    }
  });
}

test('an admin cannot disable itself', { timeout: 30000 }, async () => {
  const me = await rest(srv, admin.bearer, 'GET', admin.account, 'me');
  const r = await rest(srv, admin.bearer, 'PATCH', admin.account, `users/${me.json.id}`, { isEnabled: false });
  assert.equal(r.status, 400);
  assert.equal((await rest(srv, admin.bearer, 'GET', admin.account, 'me')).status, 200);
});

// ---------------------------------------------------------------------------------- API keys

test('API keys: shown once, listed without the key, scoped, revocable, expiring', { timeout: 60000 }, async () => {
  const u = await newUser(['AGENT']);
  const k = await apiKey(u.bearer, { name: 'deploy bot' });
  assert.match(k.key, /^pk_[0-9a-f]{48}$/);
  assert.equal(k.name, 'deploy bot');
  assert.equal(k.userId, u.id);
  assert.equal(k.expiresAt, null);
  const list = await rest(srv, u.bearer, 'GET', admin.account, 'apikeys');
  assert.equal(list.status, 200);
  assert.deepEqual(list.json.map((x) => x.id), [k.id]);
  assert.ok(!list.text.includes(k.key), 'the key is listed');
  assert.equal(list.json[0].key, undefined);
  // Works, then revoked → 401.
  assert.equal((await rest(srv, k.key, 'GET', admin.account, 'skills')).status, 200);
  const del = await rest(srv, u.bearer, 'DELETE', admin.account, `apikeys/${k.id}`);
  assert.equal(del.status, 200, del.text);
  assert.equal((await rest(srv, k.key, 'GET', admin.account, 'skills')).status, 401, 'a revoked API key still works');
  assert.equal((await rest(srv, u.bearer, 'DELETE', admin.account, `apikeys/${k.id}`)).status, 404);

  // Expiry.
  const short = await apiKey(u.bearer, { name: 'short', expiresAt: Date.now() + 1500 });
  assert.equal((await rest(srv, short.key, 'GET', admin.account, 'skills')).status, 200);
  await sleep(1700);
  const expired = await rest(srv, short.key, 'GET', admin.account, 'skills');
  assert.equal(expired.status, 401);
  assert.match(expired.json.error.message, /expired/);
  assert.equal((await rest(srv, u.bearer, 'POST', admin.account, 'apikeys', { name: 'past', expiresAt: Date.now() - 1 })).status, 400);

  // Scopes narrow the roles: the admin's key scoped to AGENT cannot create a skill.
  const scoped = await apiKey(admin.bearer, { name: 'agent only', scopes: ['AGENT_MANAGER'] });
  assert.deepEqual(scoped.scopes, ['AGENT_MANAGER']);
  const denied = await rest(srv, scoped.key, 'POST', admin.account, 'skills', { name: `s-${Date.now()}` });
  assert.equal(denied.status, 403, denied.text);
  const me = await rest(srv, scoped.key, 'GET', admin.account, 'me');
  assert.deepEqual(me.json.roles, ['AGENT_MANAGER']);
  // A scoped key cannot mint a wider key.
  const wider = await rest(srv, scoped.key, 'POST', admin.account, 'apikeys', { name: 'wider', scopes: ['ADMIN'] });
  assert.equal(wider.status, 403, wider.text);
  // A scope the user does not have is refused.
  const notMine = await rest(srv, u.bearer, 'POST', admin.account, 'apikeys', { name: 'x', scopes: ['ADMIN'] });
  assert.equal(notMine.status, 403, notMine.text);
  assert.equal((await rest(srv, u.bearer, 'POST', admin.account, 'apikeys', { name: 'x', scopes: ['NOPE'] })).status, 400);
  assert.equal((await rest(srv, u.bearer, 'POST', admin.account, 'apikeys', {})).status, 400, 'a key without a name');
});

test('API keys for others: only an admin creates, lists and revokes them', { timeout: 60000 }, async () => {
  const a = await newUser(['AGENT']);
  const b = await newUser(['AGENT', 'AGENT_MANAGER']);
  const forOther = await rest(srv, a.bearer, 'POST', admin.account, 'apikeys', { name: 'steal', userId: b.id });
  assert.equal(forOther.status, 403, 'a non-admin created a key for someone else');
  assert.equal((await rest(srv, a.bearer, 'GET', admin.account, `apikeys?userId=${b.id}`)).status, 403);
  const bKey = await apiKey(b.bearer, { name: 'b key' });
  assert.equal((await rest(srv, a.bearer, 'DELETE', admin.account, `apikeys/${bKey.id}`)).status, 403);
  assert.equal((await rest(srv, bKey.key, 'GET', admin.account, 'me')).status, 200);
  // The admin creates one for b (scoped), sees b's keys, revokes b's own key.
  const byAdmin = await apiKey(admin.bearer, { name: 'for b', userId: b.id, scopes: ['AGENT'] });
  assert.equal(byAdmin.userId, b.id);
  const me = await rest(srv, admin.bearer, 'GET', admin.account, 'me');
  assert.equal(byAdmin.createdBy, me.json.id);
  const bMe = await rest(srv, byAdmin.key, 'GET', admin.account, 'me');
  assert.equal(bMe.json.id, b.id);
  assert.deepEqual(bMe.json.roles, ['AGENT']);
  const listed = await rest(srv, admin.bearer, 'GET', admin.account, `apikeys?userId=${b.id}`);
  assert.deepEqual(listed.json.map((x) => x.id).sort(), [bKey.id, byAdmin.id].sort());
  assert.equal((await rest(srv, admin.bearer, 'DELETE', admin.account, `apikeys/${bKey.id}`)).status, 200);
  assert.equal((await rest(srv, bKey.key, 'GET', admin.account, 'me')).status, 401);
  // b lists only its own keys.
  const own = await rest(srv, b.bearer, 'GET', admin.account, 'apikeys');
  assert.deepEqual(own.json.map((x) => x.userId), [b.id]);
});

test('bearers are stored hashed', { timeout: 30000 }, async () => {
  const u = await newUser();
  const k = await apiKey(u.bearer, { name: 'hash check' });
  // The server is running: read the database file next to it (WAL) with the sqlite3 shell
  // when there is one; otherwise grep the files for the plaintext.
  const files = fs.readdirSync(srv.dataDir).filter((f) => f.startsWith('parley.db'));
  assert.ok(files.length > 0);
  for (const f of files) {
    const bytes = fs.readFileSync(`${srv.dataDir}/${f}`);
    assert.equal(bytes.indexOf(Buffer.from(u.bearer)), -1, `the session bearer is in ${f}`);
    assert.equal(bytes.indexOf(Buffer.from(k.key)), -1, `the API key is in ${f}`);
  }
});

// --------------------------------------------------------------------------- bad input, names

test('names with control characters are refused with a clear error', { timeout: 30000 }, async () => {
  const skill = await rest(srv, admin.bearer, 'POST', admin.account, 'skills', { name: 'sales\u0000admin' });
  assert.equal(skill.status, 400, skill.text);
  assert.match(skill.json.error.message, /skill name contains the control character U\+0000/);
  const user = await rest(srv, admin.bearer, 'POST', admin.account, 'users', { loginName: 'bob\nadmin', password: 'secret1' });
  assert.equal(user.status, 400, user.text);
  assert.match(user.json.error.message, /loginName contains the control character U\+000A/);
  const key = await rest(srv, admin.bearer, 'POST', admin.account, 'apikeys', { name: 'k\u001b[31m' });
  assert.equal(key.status, 400, key.text);
  const skills = await rest(srv, admin.bearer, 'GET', admin.account, 'skills');
  assert.ok(!skills.text.includes('\\u0000'), 'a name with NUL was stored');
});

// ----------------------------------------------------------------- consumer profiles and SDEs

function rssMiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? +(Number(m[1]) / 1024).toFixed(1) : NaN;
}

async function metric(name) {
  const m = await request('GET', `${srv.https}/metrics`, { ca: srv.ca, headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
  const line = m.text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : NaN;
}

test('consumer profiles are bounded and dropped when the consumer leaves (400 consumers)', { timeout: 180000 }, async (t) => {
  const N = 400;
  const rssStart = rssMiB(srv.proc.pid);
  const consumers = [];
  const big = 'x'.repeat(240 * 1024);
  const fits = 'y'.repeat(15 * 1024);
  let refused = 0;
  for (let i = 0; i < N; i += 1) {
    const c = new Consumer(srv, admin.account);
    await c.signup();
    await c.connect();
    // 240 KiB: refused with a clear error (the limit is 16 KiB).
    const r = await c.request('userprofile.SetUserProfile', { firstName: 'A', privateData: { notes: big } });
    if (r.code === 413) refused += 1;
    if (i === 0) assert.match(JSON.stringify(r.body), /at most 16384 bytes/);
    // Just under the limit: kept.
    const ok = await c.request('userprofile.SetUserProfile', { firstName: 'A', privateData: { notes: fits } });
    assert.equal(ok.code, 200, JSON.stringify(ok));
    consumers.push(c);
  }
  assert.equal(refused, N, 'every 240 KiB profile is refused');
  assert.equal(await metric('parley_consumer_profiles'), N);
  const rssOpen = rssMiB(srv.proc.pid);
  for (const c of consumers) c.ws.close();
  // The map empties as the sockets close (poll; the assertion is the count, not the time).
  let left = N;
  for (let i = 0; i < 300 && left > 0; i += 1) {
    await sleep(100);
    left = await metric('parley_consumer_profiles');
  }
  assert.equal(left, 0, 'profiles were kept after their consumers left');
  assert.equal(await metric('parley_consumer_profile_bytes'), 0);
  const rssAfter = rssMiB(srv.proc.pid);
  t.diagnostic(`RSS MiB: start ${rssStart}, 400 consumers with profiles ${rssOpen}, after they left ${rssAfter}`);
});

test('a conversationContext (SDEs) over 16 KiB is refused', { timeout: 30000 }, async () => {
  const c = new Consumer(srv, admin.account);
  await c.signup();
  await c.connect();
  const r = await c.request('cm.ConsumerRequestConversation', {
    conversationContext: { type: 'SharkContext', lang: 'en-US', visitorId: 'v', sessionId: 's', engagementAttributes: [{ type: 'personal', personal: { firstname: 'x'.repeat(17 * 1024) } }] },
  });
  assert.equal(r.code, 413, JSON.stringify(r).slice(0, 300));
  assert.match(JSON.stringify(r.body), /conversationContext is \d+ bytes; at most 16384/);
  c.ws.close();
});

// ------------------------------------------------------------------- operator-created accounts

function parley(args, input) {
  return new Promise((resolve) => {
    const p = execFile(PARLEY_BIN, args, (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr }));
    if (input !== undefined) p.stdin.end(input);
  });
}

test('parley account create|list|disable|enable works next to the running server', { timeout: 120000 }, async () => {
  const created = await parley(['account', 'create', '--data', srv.dataDir, '--name', 'Second Co', '--id', 'second-co']);
  assert.equal(created.code, 0, created.stderr);
  const acc = JSON.parse(created.stdout.trim());
  assert.equal(acc.id, 'second-co');
  assert.equal(acc.status, 'ACTIVE');
  assert.equal(acc.admin.username, 'admin');
  assert.ok(acc.admin.password.length >= 12);
  // Its admin logs in to it, works in it, and is a stranger to the demo account.
  const s = await login(srv, 'second-co', 'admin', acc.admin.password);
  assert.equal((await rest(srv, s.bearer, 'POST', 'second-co', 'skills', { name: 'sales' })).status, 201);
  assert.equal((await rest(srv, s.bearer, 'GET', admin.account, 'skills')).status, 403);
  assert.equal((await rest(srv, admin.bearer, 'GET', 'second-co', 'skills')).status, 403);
  assert.equal((await loginRaw(srv, admin.account, 'admin', acc.admin.password)).status, 401);

  const list = await parley(['account', 'list', '--data', srv.dataDir]);
  assert.equal(list.code, 0, list.stderr);
  const rows = list.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(rows.map((r) => r.id).sort(), [admin.account, 'second-co'].sort());

  const dup = await parley(['account', 'create', '--data', srv.dataDir, '--name', 'Again', '--id', 'second-co']);
  assert.notEqual(dup.code, 0);
  assert.match(dup.stderr, /already exists/);
  const bad = await parley(['account', 'create', '--data', srv.dataDir, '--name', 'bad\u0001name']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /control character/);

  // Disable while it runs: the open socket closes, logins, tokens and signups are refused.
  const sock = await agentSocket(srv, 'second-co', s.bearer);
  const consumer = new Consumer(srv, 'second-co');
  await consumer.signup();
  await consumer.connect();
  const off = await parley(['account', 'disable', '--data', srv.dataDir, 'second-co']);
  assert.equal(off.code, 0, off.stderr);
  const closed = await Promise.race([sock.closed, sleep(5000).then(() => null)]);
  assert.ok(closed, 'the disabled account\'s agent socket stayed open');
  assert.equal(closed.code, 4401);
  await consumer.waitFor((c) => c.closed, 'the consumer socket to close', 5000);
  assert.equal((await rest(srv, s.bearer, 'GET', 'second-co', 'skills')).status, 401);
  const refused = await loginRaw(srv, 'second-co', 'admin', acc.admin.password);
  assert.equal(refused.status, 401);
  assert.match(refused.json.error, /disabled/);
  assert.equal((await request('POST', `${srv.https}/api/account/second-co/signup`, { ca: srv.ca })).status, 403);
  // The demo account is untouched.
  assert.equal((await rest(srv, admin.bearer, 'GET', admin.account, 'skills')).status, 200);

  const on = await parley(['account', 'enable', '--data', srv.dataDir, 'second-co']);
  assert.equal(on.code, 0, on.stderr);
  await sleep(1500);
  assert.equal((await loginRaw(srv, 'second-co', 'admin', acc.admin.password)).status, 200);
});

// ---------------------------------------------------------------------------- login throttle

// Its own server: the flood leaves this client address throttled, which must not slow the
// other tests' logins.
test('a login flood gets 429 with Retry-After, success resets the user, the API stays up', { timeout: 180000 }, async (t) => {
  const s2 = await startServer();
  try {
    const acc = s2.demo.account;
    const agent = s2.demo.agent;
    const a = await login(s2, acc, s2.demo.admin.username, s2.demo.admin.password);
    // 5 free failures, then backoff.
    for (let i = 0; i < 5; i += 1) assert.equal((await loginRaw(s2, acc, agent.username, 'wrong')).status, 401, `failure ${i + 1}`);
    const sixth = await loginRaw(s2, acc, agent.username, 'wrong');
    assert.equal(sixth.status, 429, sixth.text);
    assert.equal(sixth.headers['retry-after'], '1');
    assert.match(sixth.json.error, /too many failed logins for this user/);
    // Even the right password waits (nothing is checked while throttled).
    assert.equal((await loginRaw(s2, acc, agent.username, agent.password)).status, 429);
    await sleep(1100);
    assert.equal((await loginRaw(s2, acc, agent.username, agent.password)).status, 200, 'the right password after the wait');
    // The success reset the user's counter: 4 more failures are 401 again (the address has 5).
    for (let i = 0; i < 4; i += 1) assert.equal((await loginRaw(s2, acc, agent.username, 'wrong')).status, 401);

    // The flood: 200 wrong passwords from 32 concurrent clients, spread over login names.
    const statuses = {};
    let next = 0;
    const t0 = Date.now();
    await Promise.all(Array.from({ length: 32 }, async () => {
      while (next < 200) {
        const i = next++;
        let r;
        try {
          r = await loginRaw(s2, acc, `guess-${i % 7}`, `pw-${i}`);
        } catch (e) {
          // The few admitted guesses queue for the one hashing thread; on a loaded machine the
          // last of them may outlast the client's 10 s timeout. Not an answer, not a failure.
          statuses.timeout = (statuses.timeout || 0) + 1;
          continue;
        }
        statuses[r.status] = (statuses[r.status] || 0) + 1;
        if (r.status === 429) assert.ok(Number(r.headers['retry-after']) >= 1, 'a 429 without Retry-After');
      }
    }));
    const floodMs = Date.now() - t0;
    assert.ok(statuses[429] >= 150, `only ${statuses[429]} of 200 throttled: ${JSON.stringify(statuses)}`);
    assert.equal((statuses[401] || 0) + statuses[429] + (statuses.timeout || 0), 200, JSON.stringify(statuses));
    assert.ok((statuses.timeout || 0) <= 20, `more requests timed out than could be admitted: ${JSON.stringify(statuses)}`);
    // The authenticated API still answers (not timed here: bench/auth measures latency).
    assert.equal((await rest(s2, a.bearer, 'GET', acc, 'skills')).status, 200);
    // (The lockout after the backoff is at 40 failures per address, 10 per user, reached only
    // after minutes of backoff: login_throttle_test.cpp walks it with a fake clock.)
    t.diagnostic(`flood of 200 took ${floodMs} ms: ${JSON.stringify(statuses)}`);
  } finally {
    await s2.stop();
  }
});
