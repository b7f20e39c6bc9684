'use strict';
// (a) Auth and robustness: login/refresh/logout, wrong account (403), wrong role (403),
// expired/garbage tokens (401), malformed frames, unknown types (code 400), oversized frames
// and bodies. Each check asserts that nothing changed in the store afterwards.
const test = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');
const { startServer, login, rest, storeSnapshot } = require('./lib/server');
const { request } = require('./lib/http');
const { Consumer } = require('./lib/consumer');
const { adminSession } = require('./lib/setup');

let srv;
let admin;
test.before(async () => {
  srv = await startServer({ args: ['--session-ttl', '3', '--metrics-token', 'negative-test-metrics'] });
  admin = await adminSession(srv);
});
test.after(async () => {
  if (srv) {
    const r = await srv.stop();
    assert.equal(r.code, 0, `clean exit on SIGTERM (signal ${r.signal}); the server's last log lines:\n${srv.logs().slice(-4000)}`);
  }
});

// Runs `fn` and asserts the store (skills, users, conversations, messages) did not change.
async function unchanged(fn) {
  admin = await adminSession(srv);
  const before = await storeSnapshot(srv, admin.bearer, admin.account);
  await fn();
  admin = await adminSession(srv);
  const after = await storeSnapshot(srv, admin.bearer, admin.account);
  assert.deepEqual(after, before, 'the store changed');
}

test('healthz, metrics and CSDS', { timeout: 60000 }, async () => {
  const h = await request('GET', `${srv.http}/healthz`);
  assert.equal(h.status, 200);
  const m = await request('GET', `${srv.https}/metrics`, { ca: srv.ca, headers: { Authorization: 'Bearer negative-test-metrics' } });
  assert.equal(m.status, 200);
  assert.match(m.text, /parley_http_requests_total\{route="healthz",status="200"\} 1/);
  assert.match(m.text, /parley_websockets_open /);
  const c = await request('GET', `${srv.https}/api/account/${admin.account}/service/baseURI.json?version=1.0`, { ca: srv.ca });
  assert.equal(c.status, 200);
  const services = Object.fromEntries(c.json.baseURIs.map((u) => [u.service, u.baseURI]));
  assert.equal(services.agentVep, srv.httpsHost);
  assert.equal(services.asyncMessagingEnt, srv.httpsHost);
  assert.equal(services.idp, srv.httpsHost);
  const unknown = await request('GET', `${srv.https}/api/account/99999999/service/baseURI.json?version=1.0`, { ca: srv.ca });
  assert.equal(unknown.status, 404);
  assert.deepEqual(unknown.json.baseURIs, [], 'unknown accounts still get a baseURIs array');
});

test('login, refresh with csrf + cookie, logout', { timeout: 60000 }, async () => {
  await unchanged(async () => {
    const bad = await request('POST', `${srv.https}/api/account/${admin.account}/login?v=1.3`, {
      ca: srv.ca, body: { username: srv.demo.admin.username, password: 'wrong' },
    });
    assert.equal(bad.status, 401);
    assert.equal(typeof bad.json.error, 'string');
    const s = await login(srv, admin.account, srv.demo.agent.username, srv.demo.agent.password);
    assert.match(s.bearer, /^[0-9a-f]{32,}$/, 'bearer is URL-path safe hex');
    assert.ok(s.csrf && s.config.userId && s.config.userPid);
    assert.equal(s.config.loginName, srv.demo.agent.username);
    assert.ok(s.cookie.startsWith('session_id='));
    const ok = await request('POST', `${srv.https}/api/account/${admin.account}/refresh?v=1.3`, {
      ca: srv.ca, headers: { Cookie: s.cookie }, body: { csrf: s.csrf },
    });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.error, undefined);
    const wrong = await request('POST', `${srv.https}/api/account/${admin.account}/refresh?v=1.3`, {
      ca: srv.ca, headers: { Cookie: s.cookie }, body: { csrf: 'nope' },
    });
    assert.equal(wrong.status, 401);
    const me = await rest(srv, s.bearer, 'GET', admin.account, 'me');
    assert.equal(me.status, 200);
    const out = await request('POST', `${srv.https}/api/account/${admin.account}/logout?v=1.3`, {
      ca: srv.ca, headers: { Authorization: `Bearer ${s.bearer}` },
    });
    assert.equal(out.status, 200);
    const after = await rest(srv, s.bearer, 'GET', admin.account, 'me');
    assert.equal(after.status, 401);
    assert.equal(after.json.error.code, 'UNAUTHORIZED');
  });
});

test('wrong account, wrong role, garbage and expired tokens', { timeout: 60000 }, async () => {
  await unchanged(async () => {
    const agent = await login(srv, admin.account, srv.demo.agent.username, srv.demo.agent.password);
    admin = await adminSession(srv);
    const other = await rest(srv, admin.bearer, 'GET', '87654321', 'skills');
    assert.equal(other.status, 403);
    assert.equal(other.json.error.code, 'FORBIDDEN');
    const role = await rest(srv, agent.bearer, 'POST', admin.account, 'skills', { name: 'nope' });
    assert.equal(role.status, 403);
    assert.match(role.json.error.message, /ADMIN/);
    const roleUser = await rest(srv, agent.bearer, 'POST', admin.account, 'users', { loginName: 'x', password: 'xxxxxxxx' });
    assert.equal(roleUser.status, 403);
    const garbage = await rest(srv, 'deadbeef', 'GET', admin.account, 'skills');
    assert.equal(garbage.status, 401);
    const none = await rest(srv, '', 'GET', admin.account, 'skills');
    assert.equal(none.status, 401);
    // Sessions live 3 s on this server: after that the bearer is refused everywhere.
    await new Promise((r) => setTimeout(r, 3300));
    const expired = await rest(srv, agent.bearer, 'GET', admin.account, 'skills');
    assert.equal(expired.status, 401);
    assert.match(expired.json.error.message, /expired/);
    const ws = await upgradeStatus(`wss://${srv.httpsHost}/ws_api/account/${admin.account}/messaging/brand/${agent.bearer}?v=2.1`);
    assert.equal(ws, 401);
    const bad = await upgradeStatus(`wss://${srv.httpsHost}/ws_api/account/${admin.account}/messaging/brand/not-a-bearer?v=2.1`);
    assert.equal(bad, 401);
    const badJwt = await upgradeStatus(`wss://${srv.httpsHost}/ws_api/account/${admin.account}/messaging/consumer?v=3`, { Authorization: 'jwt x.y.z' });
    assert.equal(badJwt, 401);
    admin = await adminSession(srv);
  });
});

function upgradeStatus(url, headers = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { ca: srv.ca, headers });
    ws.on('unexpected-response', (req, res) => { resolve(res.statusCode); req.destroy(); });
    ws.on('open', () => { ws.close(); resolve(101); });
    ws.on('error', (e) => { if (!e.message.includes('Unexpected server response')) reject(e); });
  });
}

test('malformed frames, unknown types and oversized frames on the consumer socket', { timeout: 60000 }, async () => {
  admin = await adminSession(srv);
  await unchanged(async () => {
    const c = new Consumer(srv, admin.account);
    await c.signup();
    await c.connect();
    const cases = [
      ['not json at all', /not valid JSON/],
      ['[1,2,3]', /JSON object/],
      ['{"kind":"req","id":"k1"}', /type/],
      ['{"kind":"req","id":"k2","type":"NoSuchRequest","body":{}}', /unknown request type "NoSuchRequest"/],
      ['{"kind":"req","id":"k3","type":"ms.PublishEvent","body":null,"headers":null,"metadata":null}', /dialogId/],
      ['{"kind":"req","id":"k4","type":"ms.PublishEvent","body":{"dialogId":"nope","event":{"type":"ContentEvent","message":"x"}}}', /./],
      ['{"kind":"req","id":"k5","type":".ams.routing.SetAgentState","body":{"availability":"ONLINE"}}', /agent request/],
      ['{"kind":"req","id":"k6","type":"cm.UpdateConversationField","body":{"conversationId":"nope","conversationField":[{"field":"Bogus"}]}}', /not supported/],
    ];
    for (const [frame, pattern] of cases) {
      const idMatch = frame.match(/"id":"(k\d)"/);
      if (idMatch) {
        const r = await c.sendRaw(frame, idMatch[1]);
        assert.ok(r.code >= 400 && r.code < 500, `${frame} → ${JSON.stringify(r)}`);
        assert.notEqual(r.type, 'error');
        assert.match(String(r.body), pattern, frame);
      } else {
        c.ws.send(frame);
        const r = await c.waitFor((x) => x.notifications.find((n) => n.kind === 'resp' && n.reqId === null && pattern.test(String(n.body))), `error for ${frame}`);
        assert.equal(r.code, 400);
      }
    }
    // The socket is still usable.
    const clock = await c.request('GetClock', {});
    assert.equal(clock.code, 200);
    assert.ok(clock.body.currentTime > 0);
    // An oversized frame (> 256 KiB) closes the socket with 1009.
    c.ws.send(JSON.stringify({ kind: 'req', id: 'big', type: 'ms.PublishEvent', body: { pad: 'x'.repeat(300 * 1024) } }));
    await c.waitFor((x) => x.closed, 'close after an oversized frame');
    assert.equal(c.closed.code, 1009);
  });
});

test('consumer InitConnection auth, and a socket that never authenticates is closed 4401', { timeout: 60000 }, async () => {
  await unchanged(async () => {
    const c = new Consumer(srv, admin.account);
    await c.signup();
    await c.connect({ header: false });
    const early = await c.request('cm.ConsumerRequestConversation', {});
    assert.equal(early.code, 401);
    const init = await c.request('InitConnection', undefined, {
      headers: [{ type: '.ams.headers.ClientProperties', deviceFamily: 'DESKTOP' },
        { type: '.ams.headers.ConsumerAuthentication', jwt: c.jwt }],
    });
    assert.equal(init.code, 200);
    const sub = await c.request('cqm.SubscribeExConversations', { convState: ['OPEN'] });
    assert.equal(sub.code, 200);
    c.close();
    const idle = new Consumer(srv, admin.account);
    await idle.connect({ header: false });
    await idle.waitFor((x) => x.closed, 'close of an unauthenticated socket', 9000);
    assert.equal(idle.closed.code, 4401);
  });
});

test('REST: 413 for a body over 1 MiB, 404 JSON for unknown resources, 400 for bad JSON', { timeout: 60000 }, async () => {
  await unchanged(async () => {
    admin = await adminSession(srv);
    const big = await request('POST', `${srv.https}/api/v1/accounts/${admin.account}/skills`, {
      ca: srv.ca, headers: { Authorization: `Bearer ${admin.bearer}` }, raw: '{"name":"' + 'x'.repeat(1100 * 1024) + '"}',
    });
    assert.equal(big.status, 413);
    assert.equal(big.json.error.code, 'TOO_LARGE');
    const unknown = await rest(srv, admin.bearer, 'GET', admin.account, 'nonsense');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error.code, 'NOT_FOUND');
    const badJson = await request('POST', `${srv.https}/api/v1/accounts/${admin.account}/skills`, {
      ca: srv.ca, headers: { Authorization: `Bearer ${admin.bearer}` }, raw: '{not json',
    });
    assert.equal(badJson.status, 400);
    assert.equal(badJson.json.error.code, 'INVALID');
  });
});

test('logout closes the agent socket with 4401', { timeout: 60000 }, async () => {
  const s = await login(srv, admin.account, srv.demo.agent.username, srv.demo.agent.password);
  const ws = new WebSocket(`wss://${srv.httpsHost}/ws_api/account/${admin.account}/messaging/brand/${s.bearer}?v=2.1`, { ca: srv.ca });
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  const closed = new Promise((resolve) => ws.once('close', (code) => resolve(code)));
  const out = await request('POST', `${srv.https}/api/account/${admin.account}/logout?v=1.3`, {
    ca: srv.ca, headers: { Authorization: `Bearer ${s.bearer}` },
  });
  assert.equal(out.status, 200);
  assert.equal(await closed, 4401);
});
