'use strict';
// Erasing a conversation's content (a GDPR erasure request) over the real server: a consumer
// talks with the demo echo bot, giving personal data in its messages and its conversation
// context; erasing is refused while the conversation is open and to non-admins; once closed an
// ADMIN erases it, and the conversation read back over REST and over the messaging protocol keeps
// its sequences, times, participants and close reason while the content is gone (tombstones),
// the bot's turn records no longer hold the text, and erasing again changes nothing.
const test = require('node:test');
const assert = require('node:assert/strict');
const { startServer, login, rest } = require('./lib/server');
const { Consumer } = require('./lib/consumer');
const { AgentSocket } = require('./lib/agent');
const { adminSession, createUser } = require('./lib/setup');

const SECRET = 'my card is 4111-1111';

let srv;
let admin;
test.before(async () => {
  srv = await startServer();
  admin = await adminSession(srv);
});
test.after(async () => {
  if (srv) {
    const r = await srv.stop();
    assert.equal(r.code, 0, `clean exit on SIGTERM (signal ${r.signal}); the server's last log lines:\n${srv.logs().slice(-4000)}`);
  }
});

const erase = (bearer, convId) => rest(srv, bearer, 'DELETE', admin.account, `conversations/${convId}/content`);

// Waits (up to 10 s) until some bot of the account has a turn record for the conversation.
async function turnRecordOf(convId) {
  const deadline = Date.now() + 10000;
  for (;;) {
    const bots = await rest(srv, admin.bearer, 'GET', admin.account, 'bots');
    assert.equal(bots.status, 200, bots.text);
    for (const b of bots.json) {
      const turns = await rest(srv, admin.bearer, 'GET', admin.account, `bots/${b.id}/turns?limit=500`);
      assert.equal(turns.status, 200, turns.text);
      if (turns.json.some((t) => t.conversationId === convId)) return;
    }
    if (Date.now() > deadline) assert.fail(`no turn record for conversation ${convId} after 10 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('an ADMIN erases a closed conversation; what is read back keeps only its metadata', { timeout: 90000 }, async () => {
  const consumer = new Consumer(srv, admin.account);
  await consumer.signup();
  await consumer.connect();
  await consumer.request('cqm.SubscribeExConversations', { minLastUpdatedTime: 0, convState: ['OPEN', 'CLOSE'] });
  const created = await consumer.request('cm.ConsumerRequestConversation', {
    skillId: srv.demo.skills.general, channelType: 'MESSAGING', ttrDefName: 'NORMAL',
    conversationContext: { type: 'SharkContext', visitorId: 'v-9', sessionId: 's-9',
      engagementAttributes: [{ type: 'personal', personal: { firstname: 'Ann', contacts: [{ email: 'ann@example.com' }] } }] },
  });
  assert.equal(created.code, 200, JSON.stringify(created));
  const convId = created.body.conversationId;
  await consumer.request('ms.SubscribeMessagingEvents', { dialogId: convId, fromSeq: 0 });
  await consumer.publishText(convId, SECRET);
  await consumer.waitFor((c) => c.contentRecords().find((r) => r.event.message === `echo : ${SECRET}`), 'the bot answers', 15000);

  // Open: refused, naming the conversation; nothing changed.
  const open = await erase(admin.bearer, convId);
  assert.equal(open.status, 409, open.text);
  assert.match(open.json.error.message, new RegExp(`conversation ${convId} is open`));

  const close = await consumer.request('cm.UpdateConversationField', {
    conversationId: convId, conversationField: [{ field: 'ConversationStateField', conversationState: 'CLOSE' }],
  });
  assert.equal(close.code, 200, JSON.stringify(close));
  consumer.close();
  const before = await rest(srv, admin.bearer, 'GET', admin.account, `conversations/${convId}/messages`);
  assert.equal(before.status, 200, before.text);
  assert.ok(before.text.includes(SECRET), before.text);

  // Not an ADMIN: refused.
  const agentLogin = await login(srv, admin.account, srv.demo.agent.username, srv.demo.agent.password);
  const byAgent = await erase(agentLogin.bearer, convId);
  assert.equal(byAgent.status, 403, byAgent.text);
  assert.match(byAgent.json.error.message, /needs the ADMIN role/);

  // The bot's turn record is stored after its reply goes out: wait for it, so that the erasure
  // below has it to erase.
  await turnRecordOf(convId);
  const ok = await erase(admin.bearer, convId);
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.json.conversationId, convId);
  assert.ok(ok.json.erased.messages >= 2, ok.text);
  assert.equal(ok.json.erased.context, true, ok.text);
  assert.ok(ok.json.erased.turnRecords >= 1, ok.text);

  // REST: the same sequences and originators, no content.
  const after = await rest(srv, admin.bearer, 'GET', admin.account, `conversations/${convId}/messages`);
  assert.equal(after.status, 200, after.text);
  assert.ok(!after.text.includes('4111'), after.text);
  assert.deepEqual(after.json.map((m) => m.sequence), before.json.map((m) => m.sequence));
  for (const [i, m] of after.json.entries()) {
    assert.equal(m.serverTimestamp, before.json[i].serverTimestamp);
    assert.equal(m.originatorId, before.json[i].originatorId);
    assert.equal(m.role, before.json[i].role);
    assert.deepEqual(m.metadata, []);
    if (before.json[i].event.type === 'AcceptStatusEvent') assert.deepEqual(m.event, before.json[i].event);
    else assert.deepEqual(m.event, { type: 'ContentEvent', contentType: 'text/plain', message: '', erased: true });
  }
  const conv = await rest(srv, admin.bearer, 'GET', admin.account, `conversations/${convId}`);
  assert.equal(conv.status, 200, conv.text);
  assert.equal(conv.json.state, 'CLOSE');
  assert.equal(conv.json.closeReason, 'CONSUMER');
  assert.ok(conv.json.participants.length >= 2, conv.text);
  assert.deepEqual(conv.json.unAuthSdes.events, [], conv.text);
  assert.ok(!conv.text.includes('ann@example.com'), conv.text);

  // The messaging protocol: a manager reading the history gets the tombstones.
  const u = await createUser(srv, admin, { loginName: `eraser-mgr-${Date.now()}`, type: 'HUMAN', roles: ['AGENT_MANAGER'] });
  const s = await login(srv, admin.account, u.loginName, u.password);
  const mgr = new AgentSocket(srv, admin.account, s.bearer);
  await mgr.connect();
  try {
    const hist = await mgr.request('.ams.ms.QueryMessages', { dialogId: convId, newerThanSequence: 0 });
    assert.equal(hist.code, 200, JSON.stringify(hist));
    const text = JSON.stringify(hist.body);
    assert.ok(!text.includes('4111'), text);
    assert.ok(hist.body.some((r) => r.event && r.event.erased === true), text);
  } finally {
    mgr.close();
  }

  // The bot's turn records keep no text of the conversation.
  const bots = await rest(srv, admin.bearer, 'GET', admin.account, 'bots');
  assert.equal(bots.status, 200, bots.text);
  for (const b of bots.json) {
    const turns = await rest(srv, admin.bearer, 'GET', admin.account, `bots/${b.id}/turns`);
    assert.equal(turns.status, 200, turns.text);
    assert.ok(!turns.text.includes('4111'), turns.text);
  }

  // Idempotent.
  const again = await erase(admin.bearer, convId);
  assert.equal(again.status, 200, again.text);
  assert.equal(again.json.erased.messages, 0, again.text);
  assert.equal(again.json.erased.context, false, again.text);
});

test('an unknown conversation is 404', async () => {
  const r = await erase(admin.bearer, 'no-such-conversation');
  assert.equal(r.status, 404, r.text);
});
