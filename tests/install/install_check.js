'use strict';
// Run by install_test.sh against an installed `parley` (PARLEY_BIN) while the source tree is
// hidden: the demo starts, and the console, /healthz, the demo bot and the built-in
// structured-content schema all work.
const test = require('node:test');
const assert = require('node:assert/strict');
const { startServer, login, rest } = require('./lib/server');
const { Consumer } = require('./lib/consumer');
const { request } = require('./lib/http');

test('an installed parley serves the demo with the source tree hidden', { timeout: 120000 }, async (t) => {
  const srv = await startServer({ timeoutMs: 60000 });
  t.after(async () => {
    const r = await srv.stop();
    assert.equal(r.code, 0, `server exit code on SIGTERM: ${JSON.stringify(r)}\n${srv.logs().slice(-3000)}`);
  });

  // The console: its index page from PREFIX/share/parley/web, and an asset it links.
  const index = await request('GET', `${srv.https}/`, { ca: srv.ca, headers: { Accept: 'text/html' } });
  assert.equal(index.status, 200);
  assert.match(index.headers['content-type'], /text\/html/);
  assert.doesNotMatch(index.text, /console was not found/, 'the console is not installed');
  const asset = /(?:src|href)="(\/assets\/[^"]+\.js)"/.exec(index.text);
  assert.ok(asset, `no /assets/*.js in the index page:\n${index.text.slice(0, 2000)}`);
  const js = await request('GET', `${srv.https}${asset[1]}`, { ca: srv.ca });
  assert.equal(js.status, 200, asset[1]);
  assert.match(js.headers['content-type'], /javascript/);
  assert.ok(js.text.length > 1000, `${asset[1]} is ${js.text.length} bytes`);

  const health = await request('GET', `${srv.http}/healthz`);
  assert.equal(health.status, 200, health.text);

  // The demo echo bot (a function in V8, from the installed libnode) answers a consumer.
  const d = srv.demo;
  assert.ok(d.function, `the demo function was not deployed: ${JSON.stringify(d)}`);
  const consumer = new Consumer(srv, d.account);
  t.after(() => consumer.close());
  await consumer.signup();
  await consumer.connect();
  const created = await consumer.request('cm.ConsumerRequestConversation', { skillId: d.skills.general });
  assert.equal(created.code, 200, JSON.stringify(created));
  const convId = created.body.conversationId;
  const sub = await consumer.request('ms.SubscribeMessagingEvents', { dialogId: convId, fromSeq: 0 });
  assert.equal(sub.code, 200);
  await consumer.publishText(convId, 'hello from an installed tree');
  await consumer.waitFor((c) => c.contentRecords().find((r) => r.event.message === 'echo : hello from an installed tree'),
    'the demo bot echoes', 30000);

  // Structured content is validated against the schema compiled into the binary.
  const admin = await login(srv, d.account, d.admin.username, d.admin.password);
  const validate = (structuredContent) => rest(srv, admin.bearer, 'POST', d.account, 'richcontent/validate', { structuredContent });
  const valid = await validate({
    type: 'vertical',
    elements: [
      { type: 'text', text: 'Pick one' },
      { type: 'button', title: 'Yes', click: { actions: [{ type: 'publishText', text: 'yes' }] } },
    ],
  });
  assert.equal(valid.status, 200, valid.text);
  assert.equal(valid.json.valid, true, valid.text);
  const invalid = await validate({ type: 'vertical', elements: [{ type: 'button', click: { actions: [] } }] });
  assert.equal(invalid.status, 200, invalid.text);
  assert.equal(invalid.json.valid, false, invalid.text);
  assert.ok(invalid.json.errors.some((e) => e.path.endsWith('/elements/0') && /title/.test(e.message)), invalid.text);
  const unknown = await validate({ type: 'hologram' });
  assert.equal(unknown.json.valid, false, unknown.text);

  // The functions' npm libraries (lodash, luxon) are compiled in as well.
  const code = `function lambda(input, callback) {
  const _ = require('lodash');
  const { DateTime } = require('luxon');
  callback(null, { sum: _.sum([1, 2, 3]), year: DateTime.fromISO('2020-05-06').year });
}`;
  const fn = await rest(srv, admin.bearer, 'POST', d.account, 'functions', { name: 'libs', description: 'libs', event: 'no_event', code });
  assert.ok(fn.status === 200 || fn.status === 201, fn.text);
  const run = await rest(srv, admin.bearer, 'POST', d.account, `functions/${fn.json.uuid}/invoke`, { payload: {} });
  assert.equal(run.status, 200, run.text);
  assert.deepEqual(run.json.result, { sum: 6, year: 2020 }, run.text);
});
