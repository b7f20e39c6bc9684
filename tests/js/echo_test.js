'use strict';
// (b) Interop: our echo bot on the unmodified node-agent-sdk 1.2.0 and a consumer on the
// consumer socket, against `parley serve` over TLS on 127.0.0.1.
const test = require('node:test');
const assert = require('node:assert/strict');
const { startServer, rest } = require('./lib/server');
const { Consumer } = require('./lib/consumer');
const { BotProcess } = require('./lib/bot');
const { adminSession, createSkill, createUser } = require('./lib/setup');

test('echo bot on node-agent-sdk 1.2.0: ring, accept, history, ordered echoes, close', { timeout: 90000 }, async (t) => {
  const srv = await startServer();
  let bot;
  let consumer;
  t.after(async () => {
    if (consumer) consumer.close();
    if (bot) await bot.stop();
    const r = await srv.stop();
    assert.equal(r.code, 0, `server exit code on SIGTERM: ${JSON.stringify(r)}\n${srv.logs().slice(-3000)}`);
  });
  const admin = await adminSession(srv);
  const skill = await createSkill(srv, admin, 'interop-echo');
  const botUser = await createUser(srv, admin, { loginName: 'echo-bot', skills: [skill] });

  bot = new BotProcess(srv, admin.account, botUser.loginName, botUser.password, 'echo');
  const connected = await bot.waitFor((e) => e.event === 'connected', 'bot connected');
  assert.equal(connected.agentId, botUser.pid, 'agent.agentId must be the userPid');
  const sub = await bot.waitFor((e) => e.event === 'subscribed', 'subscribeExConversations response');
  assert.ok(sub.subscriptionId, `subscriptionId missing: ${JSON.stringify(sub)}`);

  consumer = new Consumer(srv, admin.account);
  await consumer.signup();
  await consumer.connect();
  const exSub = await consumer.request('cqm.SubscribeExConversations', { minLastUpdatedTime: 0, convState: ['OPEN', 'CLOSE'] });
  assert.equal(exSub.code, 200);
  const created = await consumer.request('cm.ConsumerRequestConversation', { skillId: skill, channelType: 'MESSAGING', ttrDefName: 'NORMAL' });
  assert.equal(created.code, 200, JSON.stringify(created));
  assert.equal(created.type, 'cm.RequestConversationResponse');
  const convId = created.body.conversationId;
  assert.ok(convId);
  const msub = await consumer.request('ms.SubscribeMessagingEvents', { dialogId: convId, fromSeq: 0 });
  assert.equal(msub.code, 200);

  // The first message is published before the bot is assigned (it reaches the bot through
  // QueryMessages history); the others after the bot answered it (they reach it live). Publishing
  // all of them before the accept would race the stock bot's history read against live events.
  const texts = ['hello bot', 'second message', 'third: ünïcødé ✓'];
  const seqs = [await consumer.publishText(convId, texts[0])];

  // The bot is offered the conversation and accepts it; the consumer sees it join.
  await bot.waitFor((e) => e.event === 'accepted' && e.convId === convId && e.ok, 'ring accepted');
  const joined = await bot.waitFor((e) => e.event === 'joined' && e.convId === convId, 'bot joined');
  assert.equal(joined.myRole, 'ASSIGNED_AGENT');
  await consumer.waitFor((c) => c.conversationChanges().find((ch) =>
    ch.result.convId === convId && (ch.result.conversationDetails.participantsPId.ASSIGNED_AGENT || [])[0] === botUser.pid),
  'agent joined (participantsPId.ASSIGNED_AGENT)');
  await bot.waitFor((e) => e.event === 'profile' && e.ok, 'getUserProfile answered');

  await consumer.waitFor((c) => c.contentRecords().some((r) => r.originatorMetadata.role === 'ASSIGNED_AGENT'), 'first echo');
  for (const text of texts.slice(1)) seqs.push(await consumer.publishText(convId, text));
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'sequences rise');

  // Every message is echoed, in order, and the consumer sees every reply.
  await consumer.waitFor((c) => c.contentRecords().filter((r) => r.originatorMetadata.role === 'ASSIGNED_AGENT').length >= texts.length, 'all echoes');
  const replies = consumer.contentRecords().filter((r) => r.originatorMetadata.role === 'ASSIGNED_AGENT');
  assert.deepEqual(replies.map((r) => r.event.message), texts.map((x) => `echo : ${x}`),
    `replies in order; records: ${JSON.stringify(consumer.records().map((r) => [r.sequence, r.event.type, r.event.message || r.event.status]))}`);
  for (const r of replies) {
    assert.equal(r.originatorId, botUser.pid, 'consumers see the agent PId as originatorId');
    assert.equal(r.dialogId, convId);
  }
  const mine = consumer.contentRecords().filter((r) => r.originatorMetadata.role === 'CONSUMER');
  assert.deepEqual(mine.map((r) => r.event.message), texts, 'the consumer sees its own messages in order');
  assert.ok(mine.every((r) => r.originatorId === consumer.consumerId));
  const reads = consumer.records().filter((r) => r.event.type === 'AcceptStatusEvent' && r.event.status === 'READ');
  assert.ok(reads.some((r) => r.event.sequenceList[0] === seqs[0] && r.originatorMetadata.role === 'ASSIGNED_AGENT'), 'READ receipt for the first message');
  // The bot never answered itself.
  assert.equal(bot.events.filter((e) => e.event === 'message' && e.text.startsWith('echo :')).length, 0, 'echo loop');

  // #close closes the conversation: the consumer sees CLOSE, the bot's OPEN subscription a DELETE.
  await consumer.publishText(convId, '#close');
  await consumer.waitFor((c) => c.conversationChanges().find((ch) => ch.result.convId === convId && ch.result.conversationDetails.state === 'CLOSE'), 'state CLOSE');
  await bot.waitFor((e) => e.event === 'deleted' && e.convId === convId, 'DELETE on the bot subscription');

  const conv = await rest(srv, admin.bearer, 'GET', admin.account, `conversations/${convId}`);
  assert.equal(conv.json.state, 'CLOSE');
  const msgs = await rest(srv, admin.bearer, 'GET', admin.account, `conversations/${convId}/messages`);
  const stored = msgs.json.filter((m) => m.event.type === 'ContentEvent').map((m) => m.event.message);
  for (const text of texts) {
    assert.ok(stored.includes(text));
    assert.ok(stored.includes(`echo : ${text}`));
  }
  // A closed conversation refuses new messages.
  const late = await consumer.request('ms.PublishEvent', { dialogId: convId, event: { type: 'ContentEvent', contentType: 'text/plain', message: 'late' } });
  assert.ok(late.code >= 400, `publishing to a closed conversation must fail: ${JSON.stringify(late)}`);
  assert.deepEqual(bot.errors(), [], `bot reported errors: ${JSON.stringify(bot.errors())}`);
});
