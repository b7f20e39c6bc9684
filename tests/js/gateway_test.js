'use strict';
// The functions gateway (LivePerson's faasGW) over the real server: invoke a deployed function on
// its warm context, every error answer with its status and LivePerson error code, auth (no token,
// a role without FAAS_INVOCATION, another account's token, an API key scoped to FAAS_INVOCATION),
// the per-account in-flight limit, events invoke and isImplemented, and CSDS naming faasGW and
// sentinel. The server runs with --gateway-max-in-flight 3 and a 300 ms CPU limit so the limits
// are reached quickly.
const test = require('node:test');
const assert = require('node:assert/strict');
const { startServer, login, rest } = require('./lib/server');
const { request } = require('./lib/http');
const { adminSession, createUser } = require('./lib/setup');

let srv;
let admin;
let invoker; // a FAAS_INVOCATION-only user's session
const fns = {};

async function createFunction(name, code, { event = 'no_event', deploy = true } = {}) {
  const r = await rest(srv, admin.bearer, 'POST', admin.account, 'functions', { name, event, code });
  assert.equal(r.status, 201, r.text);
  const uuid = r.json.uuid;
  if (deploy) {
    const d = await rest(srv, admin.bearer, 'POST', admin.account, `functions/${uuid}/deploy`, {});
    assert.equal(d.status, 200, d.text);
  }
  return uuid;
}

function gw(method, tail, { token, body, raw, query = 'v=1&externalSystem=gateway-test', account } = {}) {
  const acc = account || admin.account;
  return request(method, `${srv.https}/api/account/${acc}/${tail}${query === null ? '' : `?${query}`}`, {
    ca: srv.ca,
    headers: token ? { Authorization: `Bearer ${token}` } : {},
    body,
    raw,
  });
}

const input = (payload) => ({ timestamp: Date.now(), headers: [{ key: 'X-Test', value: '1' }], payload });

function assertLpError(r, status, code, what) {
  assert.equal(r.status, status, `${what}: ${r.status} ${r.text}`);
  assert.equal(r.json.errorCode, code, `${what}: ${r.text}`);
  assert.equal(typeof r.json.errorMsg, 'string', `${what}: ${r.text}`);
  assert.ok(r.json.errorMsg.length > 0, what);
}

test.before(async () => {
  srv = await startServer({ args: ['--gateway-max-in-flight', '3', '--function-cpu-limit-ms', '300'] });
  admin = await adminSession(srv);
  const u = await createUser(srv, admin, { loginName: 'gw-invoker', type: 'HUMAN', roles: ['FAAS_INVOCATION'] });
  invoker = await login(srv, admin.account, u.loginName, u.password);
  fns.counter = await createFunction('gw-counter', `
    let calls = 0;
    function lambda(input, callback) {
      calls += 1;
      const h = input.headers.find((x) => x.key === 'X-Test');
      callback(null, { calls, echo: input.payload, header: h ? h.value : null, hasTimestamp: typeof input.timestamp === 'number' });
    }`);
  fns.fails = await createFunction('gw-fails', `function lambda(input, callback) { callback(new Error('boom: ' + input.payload.why)); }`);
  fns.throws = await createFunction('gw-throws', `function lambda(input, callback) { null.x; }`);
  fns.loops = await createFunction('gw-loops', `function lambda(input, callback) { while (true) {} }`);
  fns.slow = await createFunction('gw-slow', `function lambda(input, callback) { setTimeout(() => callback(null, 'late'), 400); }`);
  fns.draft = await createFunction('gw-draft', `function lambda(input, callback) { callback(null, 1); }`, { deploy: false });
  fns.cmdA = await createFunction('gw-cmd-a', `function lambda(input, callback) { callback(null, { by: 'a', got: input.payload }); }`, { event: 'conversational_command' });
  fns.cmdB = await createFunction('gw-cmd-b', `function lambda(input, callback) { callback(new Error('b refuses')); }`, { event: 'conversational_command' });
});

test.after(async () => {
  if (srv) {
    const r = await srv.stop();
    assert.equal(r.code, 0, `clean exit on SIGTERM; the server's last log lines:\n${srv.logs().slice(-4000)}`);
  }
});

test('invoke runs the deployed function on its warm context: module state persists', async () => {
  const a = await gw('POST', `lambdas/${fns.counter}/invoke`, { token: invoker.bearer, body: input({ n: 1 }) });
  assert.equal(a.status, 200, a.text);
  const b = await gw('POST', `lambdas/${fns.counter}/invoke`, { token: invoker.bearer, body: input({ n: 2 }) });
  assert.equal(b.status, 200, b.text);
  // The body is the callback result itself, not an envelope.
  assert.deepEqual(b.json, { calls: a.json.calls + 1, echo: { n: 2 }, header: '1', hasTimestamp: true });
  // headers and timestamp may be left out: the gateway adds them.
  const c = await gw('POST', `lambdas/${fns.counter}/invoke`, { token: invoker.bearer, body: { payload: 'x' } });
  assert.equal(c.status, 200, c.text);
  assert.deepEqual(c.json, { calls: a.json.calls + 2, echo: 'x', header: null, hasTimestamp: true });
});

test('auth: no token 401, a role without invocation 403, another account 403, a scoped API key works', async () => {
  assertLpError(await gw('POST', `lambdas/${fns.counter}/invoke`, { body: input(1) }), 401,
    'com.liveperson.faas.es.unauthorized', 'no token');
  assertLpError(await gw('POST', `lambdas/${fns.counter}/invoke`, { token: 'not-a-token', body: input(1) }), 401,
    'com.liveperson.faas.es.unauthorized', 'unknown token');
  const agent = await login(srv, admin.account, srv.demo.agent.username, srv.demo.agent.password);
  const refused = await gw('POST', `lambdas/${fns.counter}/invoke`, { token: agent.bearer, body: input(1) });
  assertLpError(refused, 403, 'com.liveperson.faas.es.forbidden', 'AGENT');
  assert.match(refused.json.errorMsg, /FAAS_INVOCATION/);
  // Another account in the path than the token's.
  assertLpError(await gw('POST', `lambdas/${fns.counter}/invoke`, { token: invoker.bearer, body: input(1), account: 'other1' }),
    403, 'com.liveperson.faas.es.forbidden', 'another account');
  // An API key of the invoker, scoped to FAAS_INVOCATION.
  const key = await rest(srv, invoker.bearer, 'POST', admin.account, 'apikeys', { name: 'gw', scopes: ['FAAS_INVOCATION'] });
  assert.equal(key.status, 201, key.text);
  const viaKey = await gw('POST', `lambdas/${fns.counter}/invoke`, { token: key.json.key, body: input('k') });
  assert.equal(viaKey.status, 200, viaKey.text);
  assert.equal(viaKey.json.echo, 'k');
  // The same key is no REST v1 credential for function management.
  const list = await rest(srv, key.json.key, 'GET', admin.account, 'functions');
  assert.equal(list.status, 403, list.text);
  // FaaS Developer and Admin may invoke too.
  const viaAdmin = await gw('POST', `lambdas/${fns.counter}/invoke`, { token: admin.bearer, body: input('a') });
  assert.equal(viaAdmin.status, 200, viaAdmin.text);
});

test('bad requests: externalSystem, v, body shape, body size', async () => {
  const t = invoker.bearer;
  const noExt = await gw('POST', `lambdas/${fns.counter}/invoke`, { token: t, body: input(1), query: 'v=1' });
  assertLpError(noExt, 400, 'com.liveperson.faas.es.badinput', 'no externalSystem');
  assert.match(noExt.json.errorMsg, /externalSystem/);
  assertLpError(await gw('POST', `lambdas/${fns.counter}/invoke`, { token: t, body: input(1), query: 'v=2&externalSystem=x' }),
    400, 'com.liveperson.faas.es.badinput', 'v=2');
  assertLpError(await gw('POST', `lambdas/${fns.counter}/invoke`, { token: t, raw: '{"payload":' }),
    400, 'com.liveperson.faas.es.badinput', 'not JSON');
  assertLpError(await gw('POST', `lambdas/${fns.counter}/invoke`, { token: t, raw: '[1,2]' }),
    400, 'com.liveperson.faas.es.badinput', 'an array body');
  const noPayload = await gw('POST', `lambdas/${fns.counter}/invoke`, { token: t, body: { headers: [] } });
  assertLpError(noPayload, 400, 'com.liveperson.faas.es.badinput', 'no payload');
  assert.match(noPayload.json.errorMsg, /payload/);
  assertLpError(await gw('POST', `lambdas/${fns.counter}/invoke`, { token: t, body: { payload: 1, headers: [{ key: 1 }] } }),
    400, 'com.liveperson.faas.es.badinput', 'bad headers');
  assertLpError(await gw('POST', `lambdas/${fns.counter}/invoke`, { token: t, body: { payload: 1, timestamp: 'now' } }),
    400, 'com.liveperson.faas.es.badinput', 'bad timestamp');
  const big = await gw('POST', `lambdas/${fns.counter}/invoke`, { token: t, body: input('x'.repeat(600 * 1024)) });
  assertLpError(big, 413, 'com.liveperson.faas.es.badinput', 'body over 512 KiB');
  // Just under the limit passes.
  const under = await gw('POST', `lambdas/${fns.counter}/invoke`, { token: t, body: input('x'.repeat(500 * 1024)) });
  assert.equal(under.status, 200, under.text.slice(0, 300));
  const wrongMethod = await gw('GET', `lambdas/${fns.counter}/invoke`, { token: t });
  assertLpError(wrongMethod, 405, 'com.liveperson.faas.es.general', 'GET on invoke');
  assertLpError(await gw('POST', `lambdas/${fns.counter}/nothing`, { token: t, body: input(1) }),
    404, 'com.liveperson.faas.es.general', 'unknown route');
});

test('function answers: unknown, not deployed, callback error, exception, timeout', async () => {
  const t = invoker.bearer;
  assertLpError(await gw('POST', 'lambdas/00000000-0000-4000-8000-000000000000/invoke', { token: t, body: input(1) }),
    404, 'com.liveperson.faas.es.missinglambda', 'unknown function');
  assertLpError(await gw('POST', `lambdas/${fns.draft}/invoke`, { token: t, body: input(1) }),
    404, 'com.liveperson.faas.es.notdeployed', 'draft function');
  const failed = await gw('POST', `lambdas/${fns.fails}/invoke`, { token: t, body: input({ why: 'no stock' }) });
  assertLpError(failed, 500, 'com.liveperson.faas.handler.custom-failure', 'callback(Error)');
  assert.match(failed.json.errorMsg, /boom: no stock/);
  assertLpError(await gw('POST', `lambdas/${fns.throws}/invoke`, { token: t, body: input(1) }),
    500, 'com.liveperson.faas.handler.runtime-exception', 'TypeError');
  assertLpError(await gw('POST', `lambdas/${fns.loops}/invoke`, { token: t, body: input(1) }),
    504, 'com.liveperson.faas.handler.executiontime-exceeded', 'endless loop');
});

test('rate limit: more than --gateway-max-in-flight invocations of an account at once get 429', async () => {
  const all = await Promise.all(Array.from({ length: 8 }, () =>
    gw('POST', `lambdas/${fns.slow}/invoke`, { token: invoker.bearer, body: input(1) })));
  const ok = all.filter((r) => r.status === 200);
  const limited = all.filter((r) => r.status === 429);
  assert.ok(ok.length >= 1 && ok.length <= 3, all.map((r) => r.status).join(','));
  assert.equal(ok.length + limited.length, 8, all.map((r) => r.status).join(','));
  for (const r of ok) assert.equal(r.json, 'late');
  assertLpError(limited[0], 429, 'com.liveperson.faas.es.ratelimit', 'over the limit');
  assert.equal(limited[0].headers['retry-after'], '1');
  // Once they finish, the account may invoke again.
  const again = await gw('POST', `lambdas/${fns.slow}/invoke`, { token: invoker.bearer, body: input(1) });
  assert.equal(again.status, 200, again.text);
});

test('events: invoke every deployed function of the event; isImplemented', async () => {
  const t = invoker.bearer;
  const r = await gw('POST', 'events/conversational_command/invoke', { token: t, body: input({ cmd: 'go' }) });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, [
    { uuid: fns.cmdA, name: 'gw-cmd-a', statusCode: 200, body: { by: 'a', got: { cmd: 'go' } } },
    { uuid: fns.cmdB, name: 'gw-cmd-b', statusCode: 500,
      body: { errorCode: 'com.liveperson.faas.handler.custom-failure', errorMsg: r.json[1].body.errorMsg } },
  ]);
  assert.match(r.json[1].body.errorMsg, /b refuses/);
  const yes = await gw('GET', 'events/conversational_command/isImplemented', { token: t });
  assert.equal(yes.status, 200, yes.text);
  assert.deepEqual(yes.json, { implemented: true });
  const no = await gw('GET', 'events/surveybot_messaging_survey_started/isImplemented', { token: t });
  assert.deepEqual(no.json, { implemented: false });
  assertLpError(await gw('POST', 'events/surveybot_messaging_survey_started/invoke', { token: t, body: input(1) }),
    404, 'com.liveperson.faas.es.notdeployed', 'event without functions');
  // Undeploying one leaves the other.
  const u = await rest(srv, admin.bearer, 'POST', admin.account, `functions/${fns.cmdB}/undeploy`, {});
  assert.equal(u.status, 200, u.text);
  const one = await gw('POST', 'events/conversational_command/invoke', { token: t, body: input(2) });
  assert.deepEqual(one.json.map((e) => e.name), ['gw-cmd-a']);
  const agent = await login(srv, admin.account, srv.demo.agent.username, srv.demo.agent.password);
  assertLpError(await gw('GET', 'events/conversational_command/isImplemented', { token: agent.bearer }),
    403, 'com.liveperson.faas.es.forbidden', 'AGENT on isImplemented');
});

test('CSDS lists faasGW and sentinel at this server', async () => {
  const r = await request('GET', `${srv.https}/api/account/${admin.account}/service/baseURI.json?version=1.0`, { ca: srv.ca });
  assert.equal(r.status, 200, r.text);
  const svc = Object.fromEntries(r.json.baseURIs.map((b) => [b.service, b.baseURI]));
  assert.equal(svc.faasGW, srv.httpsHost);
  assert.equal(svc.sentinel, srv.httpsHost);
});
