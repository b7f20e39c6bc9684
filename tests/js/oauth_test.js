'use strict';
// OAuth 2.0 client credentials for the functions gateway over the real server and real HTTP:
// app installations (`apps`, ADMIN only, the secret shown once), the token endpoint
// (form, JSON, HTTP Basic; RFC 6749 errors), access tokens at the gateway (scoped to invoking,
// expiring, revoked with their app, no REST v1 or socket credential), throttling of bad
// secrets, and no secret or token in the server's logs. The server runs with
// --oauth-token-ttl 2 so that expiry takes two seconds.
const test = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');
const { startServer, login, rest } = require('./lib/server');
const { request } = require('./lib/http');
const { adminSession, createUser } = require('./lib/setup');

const TTL_S = 2;
let srv;
let admin;
let fn; // a deployed function's uuid
const shown = []; // every client secret and access token the server gave out

test.before(async () => {
  // The most the server logs (lib/server.js passes PARLEY_LOG_LEVEL as --log-level).
  process.env.PARLEY_LOG_LEVEL = 'debug';
  srv = await startServer({ args: ['--oauth-token-ttl', String(TTL_S)] });
  admin = await adminSession(srv);
  const f = await rest(srv, admin.bearer, 'POST', admin.account, 'functions', {
    name: 'oauth-echo',
    event: 'no_event',
    code: 'function lambda(input, callback) { callback(null, { echo: input.payload }); }',
  });
  assert.equal(f.status, 201, f.text);
  fn = f.json.uuid;
  const d = await rest(srv, admin.bearer, 'POST', admin.account, `functions/${fn}/deploy`, {});
  assert.equal(d.status, 200, d.text);
});

test.after(async () => {
  if (srv) {
    const r = await srv.stop();
    assert.equal(r.code, 0, `clean exit on SIGTERM; the server's last log lines:\n${srv.logs().slice(-4000)}`);
  }
});

async function createApp(name, token = admin.bearer) {
  const r = await rest(srv, token, 'POST', admin.account, 'apps', { name, scopes: ['faas.lambda.invoke'] });
  if (r.status === 201) shown.push(r.json.clientSecret);
  return r;
}

async function newApp(name) {
  const r = await createApp(name);
  assert.equal(r.status, 201, r.text);
  return r.json;
}

// POST oauth/token; `form` is an object sent form-encoded, or `json` an object sent as JSON.
async function tokenRequest({ form, json, basic, account = admin.account, query = '' } = {}) {
  const headers = {};
  let raw;
  let body;
  if (form) {
    headers['Content-Type'] = 'application/x-www-form-urlencoded';
    raw = new URLSearchParams(form).toString();
  } else if (json) {
    body = json;
  } else {
    headers['Content-Type'] = 'application/x-www-form-urlencoded';
    raw = '';
  }
  if (basic) {
    const enc = (s) => encodeURIComponent(s);
    headers.Authorization = `Basic ${Buffer.from(`${enc(basic[0])}:${enc(basic[1])}`).toString('base64')}`;
  }
  const r = await request('POST', `${srv.https}/api/account/${account}/oauth/token${query}`, { ca: srv.ca, headers, raw, body });
  if (r.status === 200 && r.json && r.json.access_token) shown.push(r.json.access_token);
  return r;
}

async function accessToken(app) {
  const r = await tokenRequest({ form: { grant_type: 'client_credentials', client_id: app.clientId, client_secret: app.clientSecret, scope: 'faas.lambda.invoke' } });
  assert.equal(r.status, 200, r.text);
  return r.json.access_token;
}

function invoke(token, payload = 'hi') {
  return request('POST', `${srv.https}/api/account/${admin.account}/lambdas/${fn}/invoke?v=1&externalSystem=oauth-test`, {
    ca: srv.ca,
    headers: token ? { Authorization: `Bearer ${token}` } : {},
    body: { timestamp: Date.now(), headers: [], payload },
  });
}

function assertOAuthError(r, status, error, what) {
  assert.equal(r.status, status, `${what}: ${r.status} ${r.text}`);
  assert.equal(r.json.error, error, `${what}: ${r.text}`);
  assert.equal(typeof r.json.error_description, 'string', what);
  assert.equal(r.headers['cache-control'], 'no-store', what);
}

test('apps: an ADMIN creates, lists (no secret) and deletes them; every other role is refused', async () => {
  const app = await newApp('crm');
  assert.match(app.clientSecret, /^ocs_[0-9a-f]{64}$/);
  assert.ok(app.clientId);
  assert.deepEqual(app.scopes, ['faas.lambda.invoke']);
  const list = await rest(srv, admin.bearer, 'GET', admin.account, 'apps');
  assert.equal(list.status, 200, list.text);
  const listed = list.json.find((a) => a.clientId === app.clientId);
  assert.deepEqual(Object.keys(listed).sort(), ['clientId', 'createdAt', 'createdBy', 'name', 'scopes']);
  assert.ok(!list.text.includes(app.clientSecret), 'the secret is never listed');

  const roles = ['AGENT_MANAGER', 'AGENT', 'FAAS_ADMIN', 'FAAS_DEVELOPER', 'FAAS_INVOCATION'];
  for (const role of roles) {
    const u = await createUser(srv, admin, { loginName: `apps-${role.toLowerCase()}`, type: 'HUMAN', roles: [role] });
    const s = await login(srv, admin.account, u.loginName, u.password);
    const what = `as ${role}`;
    const l = await rest(srv, s.bearer, 'GET', admin.account, 'apps');
    assert.equal(l.status, 403, `${what}: ${l.text}`);
    assert.match(l.json.error.message, /ADMIN/);
    assert.equal((await createApp(`by-${role}`, s.bearer)).status, 403, what);
    assert.equal((await rest(srv, s.bearer, 'DELETE', admin.account, `apps/${app.clientId}`)).status, 403, what);
  }
  assert.equal((await rest(srv, admin.bearer, 'GET', admin.account, 'apps')).json.some((a) => a.clientId === app.clientId), true,
    'the refused delete changed nothing');
  const del = await rest(srv, admin.bearer, 'DELETE', admin.account, `apps/${app.clientId}`);
  assert.equal(del.status, 200, del.text);
  assert.equal((await rest(srv, admin.bearer, 'DELETE', admin.account, `apps/${app.clientId}`)).status, 404);
  const bad = await rest(srv, admin.bearer, 'POST', admin.account, 'apps', { name: 'x', scopes: ['faas.admin'] });
  assert.equal(bad.status, 400, bad.text);
});

test('token endpoint: the right secret (form, JSON, Basic) gives a Bearer token the gateway accepts', async () => {
  const app = await newApp('hooks');
  const r = await tokenRequest({ form: { grant_type: 'client_credentials', client_id: app.clientId, client_secret: app.clientSecret, scope: 'faas.lambda.invoke' } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.token_type, 'Bearer');
  assert.equal(r.json.expires_in, TTL_S);
  assert.equal(r.json.scope, 'faas.lambda.invoke');
  assert.match(r.json.access_token, /^oat_[0-9a-f]{64}$/);
  assert.equal(r.headers['cache-control'], 'no-store');
  const ok = await invoke(r.json.access_token, { n: 1 });
  assert.equal(ok.status, 200, ok.text);
  assert.deepEqual(ok.json, { echo: { n: 1 } });

  const viaJson = await tokenRequest({ json: { grant_type: 'client_credentials', client_id: app.clientId, client_secret: app.clientSecret } });
  assert.equal(viaJson.status, 200, viaJson.text);
  const viaBasic = await tokenRequest({ form: { grant_type: 'client_credentials' }, basic: [app.clientId, app.clientSecret] });
  assert.equal(viaBasic.status, 200, viaBasic.text);
  assert.equal((await invoke(viaBasic.json.access_token)).status, 200);
});

test('token endpoint errors: wrong secret, unknown client, wrong scope, unsupported grant, malformed', async () => {
  const app = await newApp('errors');
  const good = { grant_type: 'client_credentials', client_id: app.clientId, client_secret: app.clientSecret };
  assertOAuthError(await tokenRequest({ form: { ...good, client_secret: 'ocs_wrong' } }), 401, 'invalid_client', 'wrong secret');
  assertOAuthError(await tokenRequest({ form: { ...good, client_id: 'no-such-client' } }), 401, 'invalid_client', 'unknown client');
  const basicWrong = await tokenRequest({ form: { grant_type: 'client_credentials' }, basic: [app.clientId, 'wrong'] });
  assertOAuthError(basicWrong, 401, 'invalid_client', 'wrong secret with Basic');
  assert.match(basicWrong.headers['www-authenticate'], /^Basic/);
  assertOAuthError(await tokenRequest({ form: { ...good, scope: 'faas.lambda.invoke faas.admin' } }), 400, 'invalid_scope', 'wrong scope');
  assertOAuthError(await tokenRequest({ form: { ...good, grant_type: 'authorization_code' } }), 400, 'unsupported_grant_type', 'unsupported grant');
  assertOAuthError(await tokenRequest({ form: { client_id: app.clientId, client_secret: app.clientSecret } }), 400, 'invalid_request', 'no grant_type');
  assertOAuthError(await tokenRequest({ form: good, query: `?client_secret=${app.clientSecret}` }), 400, 'invalid_request', 'secret in the URL');
  // Another account in the path does not know the app.
  assertOAuthError(await tokenRequest({ form: good, account: 'other1' }), 401, 'invalid_client', 'another account');
});

test('an access token expires after --oauth-token-ttl', async () => {
  const app = await newApp('expiry');
  const t = await accessToken(app);
  assert.equal((await invoke(t)).status, 200);
  await new Promise((r) => setTimeout(r, TTL_S * 1000 + 300));
  const expired = await invoke(t);
  assert.equal(expired.status, 401, expired.text);
  assert.equal(expired.json.errorCode, 'com.liveperson.faas.es.unauthorized');
  assert.match(expired.json.errorMsg, /expired/);
  // The app asks again and goes on.
  assert.equal((await invoke(await accessToken(app))).status, 200);
});

test('deleting an app revokes its tokens at the gateway at once', async () => {
  const app = await newApp('revoked');
  const other = await newApp('kept');
  const t = await accessToken(app);
  const kept = await accessToken(other);
  assert.equal((await invoke(t)).status, 200);
  assert.equal((await rest(srv, admin.bearer, 'DELETE', admin.account, `apps/${app.clientId}`)).status, 200);
  const refused = await invoke(t);
  assert.equal(refused.status, 401, refused.text);
  assert.equal(refused.json.errorCode, 'com.liveperson.faas.es.unauthorized');
  assert.equal((await invoke(kept)).status, 200, "another app's token stays");
  assertOAuthError(await tokenRequest({ form: { grant_type: 'client_credentials', client_id: app.clientId, client_secret: app.clientSecret } }),
    401, 'invalid_client', 'the deleted app');
});

test('an access token is no credential for any REST v1 route or the agent socket', async () => {
  const t = await accessToken(await newApp('rest'));
  const calls = [
    ['GET', 'me'], ['GET', 'apikeys'], ['POST', 'apikeys', { name: 'k' }], ['GET', 'apps'],
    ['POST', 'apps', { name: 'x', scopes: ['faas.lambda.invoke'] }], ['GET', 'skills'], ['GET', 'users'],
    ['GET', 'conversations'], ['GET', 'functions'], ['GET', `functions/${fn}`], ['POST', `functions/${fn}/invoke`, { payload: {} }],
    ['POST', `functions/${fn}/deploy`, {}], ['GET', 'secrets'], ['GET', 'allowlist'], ['GET', 'bots'],
    ['POST', 'richcontent/validate', { structuredContent: { type: 'vertical', elements: [] } }],
  ];
  for (const [method, path, body] of calls) {
    const r = await rest(srv, t, method, admin.account, path, body);
    assert.equal(r.status, 401, `${method} ${path}: ${r.status} ${r.text}`);
    assert.match(r.json.error.message, /functions gateway/, `${method} ${path}`);
  }
  const status = await new Promise((resolve) => {
    const ws = new WebSocket(`wss://${srv.httpsHost}/ws_api/account/${admin.account}/messaging/brand/${t}?v=2.1`, { ca: srv.ca });
    ws.once('open', () => {
      ws.close();
      resolve(101);
    });
    ws.once('unexpected-response', (req, res) => resolve(res.statusCode));
    ws.once('error', () => resolve(-1));
  });
  assert.equal(status, 401, 'agent socket upgrade');
  // The gateway itself still takes it.
  assert.equal((await invoke(t)).status, 200);
});

test('repeated bad secrets are throttled like logins (429 slow_down + Retry-After)', async () => {
  const app = await newApp('throttled');
  const bad = { grant_type: 'client_credentials', client_id: app.clientId, client_secret: 'ocs_guess' };
  for (let i = 0; i < 5; i += 1) assertOAuthError(await tokenRequest({ form: bad }), 401, 'invalid_client', `guess ${i}`);
  const throttled = await tokenRequest({ form: bad });
  assertOAuthError(throttled, 429, 'slow_down', 'sixth guess');
  assert.ok(Number(throttled.headers['retry-after']) >= 1, throttled.headers['retry-after']);
  const right = await tokenRequest({ form: { ...bad, client_secret: app.clientSecret } });
  assertOAuthError(right, 429, 'slow_down', 'the right secret while throttled is not checked');
  await new Promise((r) => setTimeout(r, Number(throttled.headers['retry-after']) * 1000 + 100));
  assert.equal((await tokenRequest({ form: { ...bad, client_secret: app.clientSecret } })).status, 200);
});

test('no client secret or access token appears in the server logs', async () => {
  assert.ok(shown.length >= 10, `secrets and tokens seen: ${shown.length}`);
  const logs = srv.logs();
  assert.ok(logs.length > 0, 'the server logged something');
  assert.match(logs, /oauth: app .* created/, 'app creation is logged (without its secret)');
  for (const s of shown) assert.ok(!logs.includes(s), `${s.slice(0, 8)}… is in the logs`);
});
