'use strict';
// (e) Bot → human handoff: a bot (a deployed function behind the bot connector) answers, then
// TRANSFERs to the demo "human" skill with an intent; our echo agent on the unmodified
// node-agent-sdk 1.2.0, logged in as the demo "agent" user, is rung, accepts, reads the history
// (ms.QueryMessages) and must see the bot's intent as BotResponse metadata.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { startServer, rest } = require('./lib/server');
const { Consumer } = require('./lib/consumer');
const { BotProcess } = require('./lib/bot');
const { adminSession, createSkill } = require('./lib/setup');

const HANDOFF_CODE = `function lambda(input, callback) {
  const text = String(input.payload && input.payload.message);
  if (text === 'transfer') {
    callback(null, {
      messages: ['Connecting you to a human.'],
      context: { intentId: 'billing', intentName: 'Billing question', confidenceScore: 0.93,
                 action: 'TRANSFER', actionParameters: { skill: 'human' } },
    });
    return;
  }
  callback(null, { messages: ['bot heard: ' + text] });
}
`;

// Preloaded into the echo agent's process (NODE_OPTIONS=--require): reports, as a JSON line, the
// raw records of every ms.QueryMessages response the SDK receives (echo_bot.js and the SDK stay
// unmodified; the SDK's own transform still runs afterwards).
function writeHistoryProbe() {
  const transformer = path.join(path.dirname(require.resolve('node-agent-sdk/package.json')), 'lib', 'Transformer.js');
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'parley-handoff-')), 'history_probe.js');
  fs.writeFileSync(file, `'use strict';
const T = require(${JSON.stringify(transformer)});
const orig = T['.ams.ms.QueryMessages$Response'];
T['.ams.ms.QueryMessages$Response'] = (msg, agent) => {
  const records = Array.isArray(msg.body) ? JSON.parse(JSON.stringify(msg.body)) : msg.body;
  process.stdout.write(JSON.stringify({ event: 'history', records }) + '\\n');
  return orig(msg, agent);
};
`);
  return file;
}

async function ok(r, what, codes = [200, 201]) {
  assert.ok(codes.includes(r.status), `${what}: HTTP ${r.status} ${r.text}`);
  return r.json;
}

test('bot transfers to a human skill with an intent; the SDK echo agent sees BotResponse metadata', { timeout: 90000 }, async (t) => {
  const srv = await startServer();
  let agent;
  let consumer;
  t.after(async () => {
    if (consumer) consumer.close();
    if (agent) await agent.stop();
    const r = await srv.stop();
    assert.equal(r.code, 0, `server exit code on SIGTERM: ${JSON.stringify(r)}\n${srv.logs().slice(-3000)}`);
  });
  const demo = srv.demo;
  const admin = await adminSession(srv);
  const acc = admin.account;

  // The handoff function, deployed.
  const fn = await ok(await rest(srv, admin.bearer, 'POST', acc, 'functions', {
    name: 'handoff-bot', description: 'answers, and TRANSFERs to human on "transfer"', event: 'bot_connectors_custom_integration', code: HANDOFF_CODE,
  }), 'create function');
  assert.ok(fn.uuid, JSON.stringify(fn));
  await ok(await rest(srv, admin.bearer, 'POST', acc, `functions/${fn.uuid}/deploy`, {}), 'deploy', [200, 201, 202]);
  let state;
  for (let i = 0; i < 100; i++) {
    state = (await rest(srv, admin.bearer, 'GET', acc, `functions/${fn.uuid}`)).json.state;
    if (state !== 'Draft' && state !== 'Deploying') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(state, 'Productive', `function state after deploy: ${state}`);

  // A bot on its own skill, started.
  const botSkillName = 'handoff-bot-skill';
  const botSkill = await createSkill(srv, admin, botSkillName);
  const bot = await ok(await rest(srv, admin.bearer, 'POST', acc, 'bots', {
    name: 'handoff-bot', vendor: 'CUSTOM_INTEGRATION', functionUuid: fn.uuid, conversationTypes: ['MESSAGING'],
    skills: [botSkillName], disclaimerAccepted: true,
    escalation: { skill: 'escalation', message: 'Escalating.', retries: 0, turnTimeoutMs: 10000 },
  }), 'create bot');
  assert.ok(bot.id, JSON.stringify(bot));
  await ok(await rest(srv, admin.bearer, 'POST', acc, `bots/${bot.id}/start`, {}), 'start bot', [200, 201, 202, 204]);

  // The echo agent (echo_bot.js on node-agent-sdk 1.2.0) as the demo human agent (skill "human").
  const probe = writeHistoryProbe();
  const savedOptions = process.env.NODE_OPTIONS;
  process.env.NODE_OPTIONS = `${savedOptions ? savedOptions + ' ' : ''}--require ${probe}`;
  try {
    agent = new BotProcess(srv, acc, demo.agent.username, demo.agent.password, 'echo');
  } finally {
    if (savedOptions === undefined) delete process.env.NODE_OPTIONS;
    else process.env.NODE_OPTIONS = savedOptions;
  }
  const connected = await agent.waitFor((e) => e.event === 'connected', 'agent connected');
  await agent.waitFor((e) => e.event === 'subscribed', 'agent subscribed');

  consumer = new Consumer(srv, acc);
  await consumer.signup();
  await consumer.connect();
  await consumer.request('cqm.SubscribeExConversations', { minLastUpdatedTime: 0, convState: ['OPEN', 'CLOSE'] });
  const created = await consumer.request('cm.ConsumerRequestConversation', { skillId: botSkill, channelType: 'MESSAGING', ttrDefName: 'NORMAL' });
  assert.equal(created.code, 200, JSON.stringify(created));
  const convId = created.body.conversationId;
  await consumer.request('ms.SubscribeMessagingEvents', { dialogId: convId, fromSeq: 0 });

  const dump = () => JSON.stringify(consumer.records().map((r) => [r.sequence, r.originatorMetadata && r.originatorMetadata.role, r.event.type, r.event.message || r.event.status, r.metadata]));
  await consumer.publishText(convId, 'hello');
  await consumer.waitFor((c) => c.contentRecords().find((r) => r.event.message === 'bot heard: hello'), 'the bot answers "hello"', 15000);
  assert.equal(agent.events.filter((e) => e.event === 'accepted').length, 0, 'the human agent must not be rung while the bot has the conversation');

  await consumer.publishText(convId, 'transfer');
  await consumer.waitFor((c) => c.contentRecords().find((r) => r.event.message === 'Connecting you to a human.'), 'the bot\'s handoff message', 15000);

  // The human agent is rung, accepts, joins and reads the history.
  await agent.waitFor((e) => e.event === 'accepted' && e.convId === convId && e.ok, 'human agent accepted the ring', 15000);
  const joined = await agent.waitFor((e) => e.event === 'joined' && e.convId === convId, 'human agent joined');
  assert.equal(joined.myRole, 'ASSIGNED_AGENT');
  await consumer.waitFor((c) => c.conversationChanges().find((ch) =>
    ch.result.convId === convId && (ch.result.conversationDetails.participantsPId.ASSIGNED_AGENT || [])[0] === connected.agentId),
  'consumer sees the human agent assigned');

  const history = await agent.waitFor((e) => e.event === 'history' && Array.isArray(e.records) && e.records.some((r) => r.dialogId === convId), 'QueryMessages history');
  const handoffMsg = history.records.find((r) => r.event && r.event.type === 'ContentEvent' && r.event.message === 'Connecting you to a human.');
  assert.ok(handoffMsg, `the bot's handoff message is in the agent's history: ${JSON.stringify(history.records)}`);
  const md = Array.isArray(handoffMsg.metadata) ? handoffMsg.metadata : (handoffMsg.metadata ? [handoffMsg.metadata] : []);
  const botResponse = md.find((m) => m && m.type === 'BotResponse');
  assert.ok(botResponse, `BotResponse metadata on the bot's message as the agent sees it; record: ${JSON.stringify(handoffMsg)}`);
  assert.ok(Array.isArray(botResponse.intents) && botResponse.intents.length >= 1, JSON.stringify(botResponse));
  const intent = botResponse.intents[0];
  assert.equal(intent.id, 'billing', JSON.stringify(botResponse));
  assert.equal(intent.name, 'Billing question', JSON.stringify(botResponse));
  assert.equal(intent.confidence !== undefined ? intent.confidence : intent.confidenceScore, 0.93, JSON.stringify(botResponse));
  // The bot's earlier answer is in the history too, from a non-consumer originator.
  assert.ok(history.records.some((r) => r.event && r.event.message === 'bot heard: hello'), 'the bot\'s first answer is in the history');

  // The agent's echo reaches the consumer (it answers the consumer messages it has not answered).
  await consumer.waitFor((c) => c.contentRecords().find((r) => r.event.message === 'echo : transfer' && r.originatorId === connected.agentId),
    'the human agent\'s echo reaches the consumer', 15000);
  await consumer.publishText(convId, 'are you human?');
  await consumer.waitFor((c) => c.contentRecords().find((r) => r.event.message === 'echo : are you human?'), 'echo of a new message');
  assert.equal(consumer.contentRecords().filter((r) => r.event.message === 'bot heard: are you human?').length, 0, `the bot no longer answers: ${dump()}`);

  // #close closes it.
  await consumer.publishText(convId, '#close');
  await consumer.waitFor((c) => c.conversationChanges().find((ch) => ch.result.convId === convId && ch.result.conversationDetails.state === 'CLOSE'), 'state CLOSE');
  await agent.waitFor((e) => e.event === 'deleted' && e.convId === convId, 'DELETE on the agent subscription');
  const conv = await rest(srv, admin.bearer, 'GET', acc, `conversations/${convId}`);
  assert.equal(conv.json.state, 'CLOSE');
  assert.equal(conv.json.skillId, demo.skills.human, 'the conversation ended on the human skill');
  assert.deepEqual(agent.errors(), [], `agent reported errors: ${JSON.stringify(agent.errors())}`);
});
