'use strict';
// (c) Transfer to a skill moves a conversation to another agent: two SDK agents on different
// skills; the first transfers, the second is rung, accepts and answers.
const test = require('node:test');
const assert = require('node:assert/strict');
const { startServer, rest } = require('./lib/server');
const { Consumer } = require('./lib/consumer');
const { BotProcess } = require('./lib/bot');
const { adminSession, createSkill, createUser } = require('./lib/setup');

test('transfer to a skill moves the conversation to the agent of that skill', { timeout: 90000 }, async (t) => {
  const srv = await startServer();
  const bots = [];
  let consumer;
  t.after(async () => {
    if (consumer) consumer.close();
    for (const b of bots) await b.stop();
    await srv.stop();
  });
  const admin = await adminSession(srv);
  const skillA = await createSkill(srv, admin, 'tier-1');
  const skillB = await createSkill(srv, admin, 'tier-2');
  const userA = await createUser(srv, admin, { loginName: 'agent-a', type: 'HUMAN', skills: [skillA] });
  const userB = await createUser(srv, admin, { loginName: 'agent-b', type: 'HUMAN', skills: [skillB] });

  const botA = new BotProcess(srv, admin.account, userA.loginName, userA.password, 'A');
  const botB = new BotProcess(srv, admin.account, userB.loginName, userB.password, 'B');
  bots.push(botA, botB);
  await botA.waitFor((e) => e.event === 'subscribed', 'A subscribed');
  await botB.waitFor((e) => e.event === 'subscribed', 'B subscribed');

  consumer = new Consumer(srv, admin.account);
  await consumer.signup();
  await consumer.connect();
  await consumer.request('cqm.SubscribeExConversations', { convState: ['OPEN', 'CLOSE'] });
  const created = await consumer.request('cm.ConsumerRequestConversation', { skillId: skillA });
  assert.equal(created.code, 200, JSON.stringify(created));
  const convId = created.body.conversationId;
  await consumer.request('ms.SubscribeMessagingEvents', { dialogId: convId, fromSeq: 0 });
  await consumer.publishText(convId, 'hi A');
  await consumer.waitFor((c) => c.contentRecords().find((r) => r.event.message === 'A : hi A'), 'A answers');
  assert.equal(botB.events.filter((e) => e.event === 'accepted').length, 0, 'B must not be rung for skill A');

  // A transfers to skill B: A's subscription (agentIds = A) gets a DELETE, B is rung and accepts.
  await consumer.publishText(convId, `#transfer A ${skillB}`);
  await botA.waitFor((e) => e.event === 'transferred' && e.ok, 'A transferred');
  await botA.waitFor((e) => e.event === 'deleted' && e.convId === convId, 'A DELETE');
  await botB.waitFor((e) => e.event === 'accepted' && e.convId === convId && e.ok, 'B accepted');
  await botB.waitFor((e) => e.event === 'joined' && e.convId === convId, 'B joined');
  await consumer.waitFor((c) => c.conversationChanges().find((ch) =>
    ch.result.convId === convId && (ch.result.conversationDetails.participantsPId.ASSIGNED_AGENT || [])[0] === userB.pid),
  'consumer sees B as the assigned agent');

  // B read the history (it saw "hi A"), and now answers new messages; A no longer does.
  await botB.waitFor((e) => e.event === 'message' && e.text === 'hi A', 'B read the history');
  await consumer.publishText(convId, 'hi B');
  await consumer.waitFor((c) => c.contentRecords().find((r) => r.event.message === 'B : hi B'), 'B answers');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(consumer.contentRecords().filter((r) => r.event.message === 'A : hi B').length, 0, 'A must not answer after the transfer');

  const conv = await rest(srv, admin.bearer, 'GET', admin.account, `conversations/${convId}`);
  assert.equal(conv.json.skillId, skillB);
  const assigned = conv.json.participants.filter((p) => p.role === 'ASSIGNED_AGENT' && p.state === 'ACTIVE');
  assert.deepEqual(assigned.map((p) => p.id), [userB.id]);
  assert.deepEqual(botA.errors(), []);
  assert.deepEqual(botB.errors(), []);
});
