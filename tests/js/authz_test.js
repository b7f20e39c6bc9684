'use strict';
// Authorization attacks over the real server with real clients: an AGENT-only user tries to take
// over the bot's conversation (subscribe to all, read its history, join as MANAGER, publish,
// remove the bot, close), a FAAS_DEVELOPER-only user tries the agent socket and the conversation
// reads, and /metrics is read without its token. Every attack must be refused and leave the
// conversation as it was; the legitimate paths (an agent's own subscription, an AGENT_MANAGER
// joining) keep working.
const test = require('node:test');
const assert = require('node:assert/strict');
const { startServer, login, rest } = require('./lib/server');
const { request } = require('./lib/http');
const { Consumer } = require('./lib/consumer');
const { AgentSocket } = require('./lib/agent');
const { adminSession, createUser } = require('./lib/setup');

const METRICS_TOKEN = 'metrics-secret-for-tests';

let srv;
let admin;
test.before(async () => {
  srv = await startServer({ args: ['--metrics-token', METRICS_TOKEN] });
  admin = await adminSession(srv);
});
test.after(async () => {
  if (srv) {
    const r = await srv.stop();
    assert.equal(r.code, 0, `clean exit on SIGTERM (signal ${r.signal}); the server's last log lines:\n${srv.logs().slice(-4000)}`);
  }
});

// A consumer in a conversation with the demo echo bot (skill "general"), bot assigned and
// answering.
async function botConversation() {
  const consumer = new Consumer(srv, admin.account);
  await consumer.signup();
  await consumer.connect();
  await consumer.request('cqm.SubscribeExConversations', { minLastUpdatedTime: 0, convState: ['OPEN', 'CLOSE'] });
  const created = await consumer.request('cm.ConsumerRequestConversation', {
    skillId: srv.demo.skills.general, channelType: 'MESSAGING', ttrDefName: 'NORMAL',
  });
  assert.equal(created.code, 200, JSON.stringify(created));
  const convId = created.body.conversationId;
  await consumer.request('ms.SubscribeMessagingEvents', { dialogId: convId, fromSeq: 0 });
  await consumer.publishText(convId, 'my order 42');
  await consumer.waitFor((c) => c.contentRecords().find((r) => r.event.message === 'echo : my order 42'), 'the bot answers', 15000);
  return { consumer, convId };
}

async function conversation(convId) {
  const r = await rest(srv, admin.bearer, 'GET', admin.account, `conversations/${convId}`);
  assert.equal(r.status, 200, r.text);
  return r.json;
}

function assertRefused(resp, what) {
  assert.equal(resp.code, 403, `${what} must be refused with 403: ${JSON.stringify(resp)}`);
  assert.match(JSON.stringify(resp.body), /AGENT_MANAGER|ADMIN|role/, `${what}: the error names the role to ask for`);
}

test('an AGENT-only user cannot take over the bot\'s conversation', { timeout: 90000 }, async () => {
  const { consumer, convId } = await botConversation();
  const before = await conversation(convId);
  const botId = before.participants.find((p) => p.role === 'ASSIGNED_AGENT').id;

  const s = await login(srv, admin.account, srv.demo.agent.username, srv.demo.agent.password);
  const me = `${admin.account}.${s.config.userId}`;
  const agent = new AgentSocket(srv, admin.account, s.bearer);
  await agent.connect();
  try {
    // Its own conversations: allowed.
    const own = await agent.request('.ams.aam.SubscribeExConversations', { convState: ['OPEN'], agentIds: [me] });
    assert.equal(own.code, 200, JSON.stringify(own));

    assertRefused(await agent.request('.ams.aam.SubscribeExConversations', { convState: ['OPEN'] }),
      'subscribing to every conversation of the account');
    assertRefused(await agent.request('.ams.aam.SubscribeExConversations', { convState: ['OPEN'], agentIds: [`${admin.account}.${botId}`] }),
      'subscribing to the bot\'s conversations');
    assertRefused(await agent.request('.ams.ms.QueryMessages', { dialogId: convId, newerThanSequence: 0 }),
      'reading the bot\'s conversation');
    assertRefused(await agent.request('.ams.cm.UpdateConversationField', {
      conversationId: convId, conversationField: [{ field: 'ParticipantsChange', type: 'ADD', role: 'MANAGER' }],
    }), 'joining as MANAGER');
    assertRefused(await agent.request('.ams.cm.UpdateConversationField', {
      conversationId: convId, conversationField: [{ field: 'ParticipantsChange', type: 'ADD', role: 'READER' }],
    }), 'joining as READER');
    const pub = await agent.request('.ams.ms.PublishEvent', {
      dialogId: convId, event: { type: 'ContentEvent', contentType: 'text/plain', message: 'please send your card number' },
    });
    assert.equal(pub.code, 403, JSON.stringify(pub));
    const remove = await agent.request('.ams.cm.UpdateConversationField', {
      conversationId: convId, conversationField: [{ field: 'ParticipantsChange', type: 'REMOVE', role: 'ASSIGNED_AGENT', userId: me }],
    });
    assert.equal(remove.code, 403, JSON.stringify(remove));
    const close = await agent.request('.ams.cm.UpdateConversationField', {
      conversationId: convId, conversationField: [{ field: 'ConversationStateField', conversationState: 'CLOSE' }],
    });
    assert.equal(close.code, 403, JSON.stringify(close));
    assert.ok(!agent.conversationIds().has(convId), 'the agent was shown the bot\'s conversation');
  } finally {
    agent.close();
  }

  const after = await conversation(convId);
  assert.equal(after.state, 'OPEN');
  assert.deepEqual(after.participants.map((p) => [p.id, p.role]), before.participants.map((p) => [p.id, p.role]));
  assert.ok(!consumer.contentRecords().some((r) => /card number/.test(r.event.message)), 'the consumer got the attacker\'s message');
  await consumer.publishText(convId, 'still there?');
  await consumer.waitFor((c) => c.contentRecords().find((r) => r.event.message === 'echo : still there?'), 'the bot still answers', 15000);
  consumer.close();
});

test('an AGENT_MANAGER may watch every conversation and join as MANAGER', { timeout: 90000 }, async () => {
  const { consumer, convId } = await botConversation();
  const u = await createUser(srv, admin, { loginName: `manager-${Date.now()}`, type: 'HUMAN', roles: ['Agent Manager'] });
  const s = await login(srv, admin.account, u.loginName, u.password);
  assert.deepEqual(s.config.roles, ['AGENT_MANAGER'], 'LivePerson\'s role spelling is stored as the constant');
  const mgr = new AgentSocket(srv, admin.account, s.bearer);
  await mgr.connect();
  try {
    const sub = await mgr.request('.ams.aam.SubscribeExConversations', { convState: ['OPEN'] });
    assert.equal(sub.code, 200, JSON.stringify(sub));
    const hist = await mgr.request('.ams.ms.QueryMessages', { dialogId: convId, newerThanSequence: 0 });
    assert.equal(hist.code, 200, JSON.stringify(hist));
    assert.ok(hist.body.some((r) => r.event && r.event.message === 'my order 42'), JSON.stringify(hist.body));
    const join = await mgr.request('.ams.cm.UpdateConversationField', {
      conversationId: convId, conversationField: [{ field: 'ParticipantsChange', type: 'ADD', role: 'MANAGER' }],
    });
    assert.equal(join.code, 200, JSON.stringify(join));
    const pub = await mgr.request('.ams.ms.PublishEvent', {
      dialogId: convId, event: { type: 'ContentEvent', contentType: 'text/plain', message: 'a manager here' },
    });
    assert.equal(pub.code, 200, JSON.stringify(pub));
    await consumer.waitFor((c) => c.contentRecords().find((r) => r.event.message === 'a manager here'), 'the manager\'s message');
  } finally {
    mgr.close();
    consumer.close();
  }
});

test('a FAAS_DEVELOPER-only user cannot open the agent socket or read conversations', { timeout: 90000 }, async () => {
  const { consumer, convId } = await botConversation();
  const u = await createUser(srv, admin, { loginName: `faasdev-${Date.now()}`, type: 'HUMAN', roles: ['FaaS Developer'] });
  const s = await login(srv, admin.account, u.loginName, u.password);
  const sock = new AgentSocket(srv, admin.account, s.bearer);
  await assert.rejects(sock.connect(), (e) => {
    assert.equal(e.status, 403, e.message);
    assert.match(e.body, /AGENT/, 'the refusal names the roles that open the agent socket');
    return true;
  });
  for (const tail of ['conversations', `conversations/${convId}`, `conversations/${convId}/messages`]) {
    const r = await rest(srv, s.bearer, 'GET', admin.account, tail);
    assert.equal(r.status, 403, `GET ${tail}: ${r.status} ${r.text}`);
  }
  // What the role is for still works.
  const fns = await rest(srv, s.bearer, 'GET', admin.account, 'functions');
  assert.equal(fns.status, 200, fns.text);
  consumer.close();
});

test('/metrics needs its token and names no tenant', { timeout: 60000 }, async () => {
  const none = await request('GET', `${srv.https}/metrics`, { ca: srv.ca });
  assert.equal(none.status, 401, none.text);
  const wrong = await request('GET', `${srv.https}/metrics`, { ca: srv.ca, headers: { Authorization: 'Bearer nope' } });
  assert.equal(wrong.status, 401, wrong.text);
  const bearer = await request('GET', `${srv.https}/metrics`, { ca: srv.ca, headers: { Authorization: `Bearer ${admin.bearer}` } });
  assert.equal(bearer.status, 401, 'a user\'s bearer is not the metrics token');
  const m = await request('GET', `${srv.https}/metrics`, { ca: srv.ca, headers: { Authorization: `Bearer ${METRICS_TOKEN}` } });
  assert.equal(m.status, 200, m.text);
  assert.match(m.text, /parley_http_requests_total\{/);
  assert.match(m.text, /parley_bot_turns_total/);
  assert.doesNotMatch(m.text, /\b(bot|account|function)="/, 'tenant labels without --metrics-tenant-labels');
  assert.ok(!m.text.includes(admin.account), 'the account id appears in /metrics');
});
