'use strict';
// (d) SIGKILL the server in the middle of a conversation, restart it on the same data dir and
// ports: no acknowledged message and no conversation state is lost, the consumer reconnects and
// sees the whole history, the conversation is still OPEN and assigned, and the bot (which
// reconnects by itself) keeps answering.
const test = require('node:test');
const assert = require('node:assert/strict');
const { startServer, rest, login } = require('./lib/server');
const { Consumer } = require('./lib/consumer');
const { BotProcess } = require('./lib/bot');
const { adminSession, createSkill, createUser } = require('./lib/setup');

test('SIGKILL mid-conversation loses nothing acknowledged', { timeout: 90000 }, async (t) => {
  let srv = await startServer();
  let bot;
  let consumer;
  t.after(async () => {
    if (consumer) consumer.close();
    if (bot) await bot.stop();
    if (srv) await srv.stop();
  });
  const admin = await adminSession(srv);
  const skill = await createSkill(srv, admin, 'durable');
  const botUser = await createUser(srv, admin, { loginName: 'durable-bot', skills: [skill] });
  bot = new BotProcess(srv, admin.account, botUser.loginName, botUser.password, 'echo');
  await bot.waitFor((e) => e.event === 'subscribed', 'bot subscribed');

  consumer = new Consumer(srv, admin.account);
  await consumer.signup();
  await consumer.connect();
  const created = await consumer.request('cm.ConsumerRequestConversation', { skillId: skill });
  const convId = created.body.conversationId;
  await consumer.request('ms.SubscribeMessagingEvents', { dialogId: convId, fromSeq: 0 });
  const acked = [];
  for (let i = 1; i <= 5; i++) {
    const text = `before crash ${i}`;
    acked.push({ text, sequence: await consumer.publishText(convId, text) });
  }
  await consumer.waitFor((c) => c.contentRecords().filter((r) => r.originatorMetadata.role === 'ASSIGNED_AGENT').length >= 5, 'five echoes');
  const seenBefore = consumer.contentRecords().map((r) => ({ seq: r.sequence, text: r.event.message }));
  // Fire more messages and kill while they are in flight; only the acknowledged ones count.
  const inflight = [];
  for (let i = 6; i <= 10; i++) {
    const text = `racing ${i}`;
    inflight.push(consumer.publishText(convId, text).then((sequence) => acked.push({ text, sequence }), () => {}));
  }
  const identity = { jwt: consumer.jwt, consumerId: consumer.consumerId };
  const killed = srv.kill();
  await Promise.all(inflight);
  await killed;
  consumer.close();

  // Restart on the same data dir and ports.
  const ports = { listen: new URL(srv.http).host, tlsListen: srv.httpsHost };
  const dataDir = srv.dataDir;
  srv = null;
  srv = await startServer({ dataDir, listen: ports.listen, tlsListen: ports.tlsListen });

  // The consumer reconnects with the same identity and finds the conversation open and assigned.
  consumer = Object.assign(new Consumer(srv, admin.account), { jwt: identity.jwt, consumerId: identity.consumerId });
  await consumer.connect();
  await consumer.request('cqm.SubscribeExConversations', { convState: ['OPEN', 'CLOSE'] });
  const change = await consumer.waitFor((c) => c.conversationChanges().find((ch) => ch.result.convId === convId), 'conversation after restart');
  assert.equal(change.result.conversationDetails.state, 'OPEN');
  assert.deepEqual(change.result.conversationDetails.participantsPId.ASSIGNED_AGENT, [botUser.pid]);

  await consumer.request('ms.SubscribeMessagingEvents', { dialogId: convId, fromSeq: 0 });
  await consumer.waitFor((c) => c.contentRecords().length >= seenBefore.length, 'history after restart');
  const history = consumer.contentRecords().map((r) => ({ seq: r.sequence, text: r.event.message }));
  for (const m of seenBefore) assert.ok(history.find((h) => h.seq === m.seq && h.text === m.text), `lost ${JSON.stringify(m)}`);
  for (const a of acked) assert.ok(history.find((h) => h.seq === a.sequence && h.text === a.text), `acknowledged message lost: ${JSON.stringify(a)}`);
  const seqs = consumer.records().filter((r) => r.sequence !== undefined).map((r) => r.sequence);
  assert.equal(new Set(seqs).size, seqs.length, 'no sequence delivered twice');

  // The bot reconnects by itself (same ports), gets its conversation back and answers again.
  await bot.waitFor((e) => e.event === 'connected' && bot.events.filter((x) => x.event === 'connected').length >= 2, 'bot reconnected', 20000);
  await consumer.publishText(convId, 'after restart');
  await consumer.waitFor((c) => c.contentRecords().find((r) => r.event.message === 'echo : after restart'), 'echo after restart', 15000);
  const s = await login(srv, admin.account, srv.demo.admin.username, srv.demo.admin.password);
  const conv = await rest(srv, s.bearer, 'GET', admin.account, `conversations/${convId}`);
  assert.equal(conv.json.state, 'OPEN');
});

// SIGTERM while consumer sockets (TLS) are open: each gets the close frame 1001 "server
// shutting down" and the server exits 0. Regression: the shutdown asked each upgraded HTTPS
// session for the executor of a stream that had moved into its WebSocket session, and crashed.
test('SIGTERM with open consumer sockets closes them as going away and exits cleanly', { timeout: 60000 }, async () => {
  const srv = await startServer();
  const admin = await adminSession(srv);
  const skill = await createSkill(srv, admin, 'shutdown');
  const consumers = [];
  for (let i = 0; i < 3; i++) {
    const c = new Consumer(srv, admin.account);
    await c.signup();
    await c.connect();
    await c.request('cm.ConsumerRequestConversation', { skillId: skill });
    consumers.push(c);
  }
  const r = await srv.stop();
  assert.equal(r.code, 0, `clean exit on SIGTERM (signal ${r.signal}); the server's last log lines:\n${srv.logs().slice(-4000)}`);
  for (const c of consumers) {
    await c.waitFor(() => c.closed !== null, 'socket closed');
    assert.deepEqual(c.closed, { code: 1001, reason: 'server shutting down' });
  }
});
