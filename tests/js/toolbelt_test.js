'use strict';
// Toolbelt.LpClient over the real server: a function reaches Parley's own REST API by LivePerson
// service name, authenticated with the API key in its app-key secret and authorised by the
// server like any REST call (no network: the request goes to the router in-process). Also the
// refusals, each with the message a developer needs: unknown service, a service Parley has no
// API for, a write through a read-only service, another account, another resource, a missing
// secret, LivePerson OAuth1 credentials, a revoked key, a key whose role is not enough; and every
// read of the secret in the secret audit.
const test = require('node:test');
const assert = require('node:assert/strict');
const { startServer, login, rest } = require('./lib/server');
const { adminSession, createUser } = require('./lib/setup');

let srv;
let admin;
let fn;

const code = `
const { Toolbelt, LpServices } = require('lp-faas-toolbelt');
async function lambda(input, callback) {
  const lpClient = Toolbelt.LpClient();
  const p = input.payload;
  try {
    const value = await lpClient(p.service, p.path.replace('{acc}', process.env.BRAND_ID), p.options || {});
    callback(null, { value });
  } catch (e) {
    callback(null, { name: e.name, message: e.message, statusCode: e.statusCode, code: e.code });
  }
}`;

async function call(service, path, options) {
  const r = await rest(srv, admin.bearer, 'POST', admin.account, `functions/${fn}/invoke`,
    { payload: { service, path, options } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.error, undefined, r.text);
  return r.json.result;
}

async function putSecret(key, value) {
  const r = await rest(srv, admin.bearer, 'PUT', admin.account, `secrets/${key}`, { value });
  assert.ok(r.status === 200 || r.status === 201 || r.status === 204, r.text);
}

async function apiKey(body) {
  const r = await rest(srv, admin.bearer, 'POST', admin.account, 'apikeys', body);
  assert.equal(r.status, 201, r.text);
  return r.json;
}

test.before(async () => {
  srv = await startServer();
  admin = await adminSession(srv);
  const r = await rest(srv, admin.bearer, 'POST', admin.account, 'functions', { name: 'lp-client', event: 'no_event', code });
  assert.equal(r.status, 201, r.text);
  fn = r.json.uuid;
  const key = await apiKey({ name: 'lp-client' });
  await putSecret('lp-faas-default-app-key', key.key);
});

test.after(async () => {
  if (srv) {
    const r = await srv.stop();
    assert.equal(r.code, 0, `clean exit on SIGTERM; the server's last log lines:\n${srv.logs().slice(-4000)}`);
  }
});

test('LpClient reads and writes skills and reads conversations through the server', async () => {
  const skills = await call('accountConfigReadOnly', '/api/v1/accounts/{acc}/skills');
  assert.ok(Array.isArray(skills.value), JSON.stringify(skills));
  const direct = await rest(srv, admin.bearer, 'GET', admin.account, 'skills');
  assert.deepEqual(skills.value.map((s) => s.id).sort(), direct.json.map((s) => s.id).sort());

  const made = await call('accountConfigReadWrite', '/api/v1/accounts/{acc}/skills',
    { method: 'POST', body: { name: 'made-by-lpclient' } });
  assert.equal(made.value.name, 'made-by-lpclient', JSON.stringify(made));
  const after = await rest(srv, admin.bearer, 'GET', admin.account, 'skills');
  assert.ok(after.json.some((s) => s.name === 'made-by-lpclient'), after.text);

  const convs = await call('msgHist', '/api/v1/accounts/{acc}/conversations');
  assert.equal(convs.name, undefined, JSON.stringify(convs));
  const missing = await call('msgHist', '/api/v1/accounts/{acc}/conversations/no-such-conversation');
  assert.equal(missing.name, 'StatusCodeError', JSON.stringify(missing));
  assert.equal(missing.statusCode, 404);
});

test('LpClient refuses what it cannot reach, naming why', async () => {
  const unknown = await call('noSuchService', '/api/v1/accounts/{acc}/skills');
  assert.equal(unknown.message, 'Service "noSuchService" could not be found.');
  const noApi = await call('rtbf', '/api/v1/accounts/{acc}/skills');
  assert.match(noApi.message, /Parley has no API for the LivePerson service "rtbf"/);
  const readOnly = await call('accountConfigReadOnly', '/api/v1/accounts/{acc}/skills', { method: 'POST', body: { name: 'x' } });
  assert.match(readOnly.message, /read-only.*accountConfigReadWrite/);
  const other = await call('accountConfigReadOnly', '/api/v1/accounts/other1/skills');
  assert.match(other.message, /only its own account/);
  const functions = await call('accountConfigReadWrite', '/api/v1/accounts/{acc}/functions');
  assert.match(functions.message, /does not reach 'functions'/);
  const dots = await call('accountConfigReadOnly', '/api/v1/accounts/{acc}/skills/../functions');
  assert.match(dots.message, /'\.\.'/);
  const noSecret = await call('accountConfigReadOnly', '/api/v1/accounts/{acc}/skills', { appKeySecretName: 'no-such-secret' });
  assert.match(noSecret.message, /needs secret 'no-such-secret'.*does not exist/);
  await putSecret('lp-oauth1', JSON.stringify({ consumerKey: 'a', consumerSecret: 'b', token: 'c', tokenSecret: 'd' }));
  const oauth1 = await call('accountConfigReadOnly', '/api/v1/accounts/{acc}/skills', { appKeySecretName: 'lp-oauth1' });
  assert.match(oauth1.message, /LivePerson OAuth1 credentials.*apiKey/);
  await putSecret('lp-bogus', 'not-a-key');
  const bogus = await call('accountConfigReadOnly', '/api/v1/accounts/{acc}/skills', { appKeySecretName: 'lp-bogus' });
  assert.equal(bogus.name, 'StatusCodeError', JSON.stringify(bogus));
  assert.equal(bogus.statusCode, 401);
});

test('the server authorises the key: its scopes, and revocation', async () => {
  // A FAAS_DEVELOPER's key: GET skills is not in that role (docs/authorization.md).
  const u = await createUser(srv, admin, { loginName: 'lp-developer', type: 'HUMAN', roles: ['FAAS_DEVELOPER'] });
  const dev = await login(srv, admin.account, u.loginName, u.password);
  const devKey = await rest(srv, dev.bearer, 'POST', admin.account, 'apikeys', { name: 'lp-narrow' });
  assert.equal(devKey.status, 201, devKey.text);
  await putSecret('lp-narrow', JSON.stringify({ apiKey: devKey.json.key }));
  const narrow = await call('accountConfigReadOnly', '/api/v1/accounts/{acc}/skills', { appKeySecretName: 'lp-narrow' });
  assert.equal(narrow.name, 'StatusCodeError', JSON.stringify(narrow));
  assert.equal(narrow.statusCode, 403);

  const revoked = await apiKey({ name: 'lp-revoked' });
  await putSecret('lp-revoked', revoked.key);
  assert.ok(Array.isArray((await call('accountConfigReadOnly', '/api/v1/accounts/{acc}/skills', { appKeySecretName: 'lp-revoked' })).value));
  const del = await rest(srv, admin.bearer, 'DELETE', admin.account, `apikeys/${revoked.id}`);
  assert.ok(del.status === 200 || del.status === 204, del.text);
  const after = await call('accountConfigReadOnly', '/api/v1/accounts/{acc}/skills', { appKeySecretName: 'lp-revoked' });
  assert.equal(after.statusCode, 401, JSON.stringify(after));
});

test('every read of the app-key secret is in the secret audit', async () => {
  const r = await rest(srv, admin.bearer, 'GET', admin.account, 'secrets/audit?limit=1000');
  assert.equal(r.status, 200, r.text);
  const reads = r.json.entries.filter((e) => e.key === 'lp-faas-default-app-key' && e.operation === 'read');
  assert.equal(reads.length, 4, r.text);  // the four calls of the first test
  assert.ok(reads.every((e) => e.functionUuid === fn && e.invoker.type === 'user'), r.text);
  const missing = r.json.entries.find((e) => e.key === 'no-such-secret');
  assert.ok(missing && /does not exist/.test(missing.detail), r.text);
});
