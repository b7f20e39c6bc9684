'use strict';
// The function sandbox in the real server: account B test-invokes two runaway loops and a
// memory bomb while account A's echo bot (the demo bot, a deployed function) answers its
// consumer. A's answers stay prompt, the server survives, B gets errors for its own code.
//
// Two accounts: --demo creates account A (and its echo bot); account B is created beside it with
// the operator's `parley account create` on the same data directory, and B's admin logs in.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('crypto');
const { spawnSync } = require('child_process');
const { startServer, login, rest } = require('./lib/server');
const { Consumer } = require('./lib/consumer');
const { request } = require('./lib/http');

const LOOP = 'function lambda(input, callback) { while (true) {} }';
const BOMB = 'function lambda(input, callback) { const a = new Array(2 ** 26).fill(1.5); callback(null, a.length); }';

async function createFunction(srv, bearer, account, name, code) {
  const r = await rest(srv, bearer, 'POST', account, 'functions', {
    name, event: 'bot_connectors_custom_integration', code,
  });
  if (r.status !== 201) throw new Error(`create function ${name}: ${r.status} ${r.text}`);
  return r.json.uuid;
}

// A test invoke may take its whole 30 s deadline (+1 s before a worker stuck in a built-in is
// killed) on a loaded machine, and the request is idle meanwhile.
function testInvoke(srv, bearer, account, uuid) {
  return request('POST', `${srv.https}/api/v1/accounts/${account}/functions/${uuid}/invoke`, {
    ca: srv.ca,
    headers: { Authorization: `Bearer ${bearer}` },
    body: { payload: {} },
    timeoutMs: 45000,
  });
}

test('a runaway loop and a memory bomb of one account do not stall another account\'s bot', { timeout: 240000 }, async (t) => {
  // Account A: the demo account; account B: created by the operator on the same data directory.
  const srv0 = await startServer();
  const dataDir = srv0.dataDir;
  const a = { account: srv0.demo.account, admin: srv0.demo.admin };
  const r0 = await srv0.stop();
  assert.equal(r0.code, 0);
  const bAccount = String(Number(a.account) + 1);
  const bPassword = crypto.randomBytes(12).toString('hex');
  const made = spawnSync(process.env.PARLEY_BIN, ['account', 'create', '--data', dataDir, '--name', 'B', '--id', bAccount, '--admin', 'admin', '--admin-password-stdin'], { input: `${bPassword}\n`, encoding: 'utf8' });
  assert.equal(made.status, 0, `parley account create: ${made.stderr}`);
  // A 1 s CPU limit: each of B's loops ends after 1 s of CPU.
  const srv = await startServer({ dataDir, args: ['--function-cpu-limit-ms', '1000'] });
  let consumer;
  t.after(async () => {
    if (consumer) consumer.close();
    const res = await srv.stop();
    assert.equal(res.code, 0, `server exit code on SIGTERM: ${JSON.stringify(res)}\n${srv.logs().slice(-3000)}`);
  });
  assert.equal(srv.demo.account, a.account);
  const bAdmin = await login(srv, bAccount, 'admin', bPassword);
  const aAdmin = await login(srv, a.account, a.admin.username, a.admin.password);
  const skills = await rest(srv, aAdmin.bearer, 'GET', a.account, 'skills');
  const general = skills.json.find((s) => s.name === 'general').id;

  // A's consumer talks to A's echo bot.
  consumer = new Consumer(srv, a.account);
  await consumer.signup();
  await consumer.connect();
  const created = await consumer.request('cm.ConsumerRequestConversation', { skillId: general, channelType: 'MESSAGING', ttrDefName: 'NORMAL' });
  assert.equal(created.code, 200, JSON.stringify(created));
  const convId = created.body.conversationId;
  assert.equal((await consumer.request('ms.SubscribeMessagingEvents', { dialogId: convId, fromSeq: 0 })).code, 200);
  let asked = 0;
  async function echoTurn(label) {
    const text = `${label} ${++asked}`;
    const t0 = Date.now();
    await consumer.publishText(convId, text);
    await consumer.waitFor((c) => c.contentRecords().some((m) => m.event.message === `echo : ${text}`), `echo of "${text}"`, 20000);
    return Date.now() - t0;
  }
  const baseline = [];
  for (let i = 0; i < 5; i++) baseline.push(await echoTurn('before'));

  // B's functions (saved, not deployed: test invokes run the saved code).
  const loop = await createFunction(srv, bAdmin.bearer, bAccount, 'runaway', LOOP);
  const bomb = await createFunction(srv, bAdmin.bearer, bAccount, 'bomb', BOMB);
  const noisy = [testInvoke(srv, bAdmin.bearer, bAccount, loop), testInvoke(srv, bAdmin.bearer, bAccount, loop)];
  await new Promise((res) => setTimeout(res, 300));  // the loops are running
  const during = [];
  for (let i = 0; i < 10; i++) during.push(await echoTurn('loops'));
  noisy.push(testInvoke(srv, bAdmin.bearer, bAccount, bomb));
  for (let i = 0; i < 10; i++) during.push(await echoTurn('bomb'));
  const results = await Promise.all(noisy);

  // A's bot kept answering promptly (it answers in well under a second; the loops run for
  // seconds: without the sandbox's scheduler a turn waited ~30 s behind them).
  const worst = Math.max(...during);
  assert.ok(worst < 3000, `A's echo took ${worst} ms while B's functions ran (baseline ${JSON.stringify(baseline)}, during ${JSON.stringify(during)})`);
  // B got errors for its own code, the server is alive.
  for (const res of results.slice(0, 2)) {
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.error.code, 'com.liveperson.faas.handler.executiontime-exceeded', res.text);
  }
  assert.equal(results[2].status, 200, results[2].text);
  assert.ok(results[2].json.error, results[2].text);
  // V8's fatal OOM ends the worker, or (when the fill cannot be interrupted before its deadline)
  // the supervisor kills it: either way only B's invocation fails.
  assert.match(results[2].json.error.message, /memory|was killed/, results[2].text);
  assert.ok(await echoTurn('after') < 3000);
});
