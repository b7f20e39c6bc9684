'use strict';
// Cluster-wide agent routing (tools/cluster.sh, two nodes): a conversation owned by node 1 and
// waiting on a skill no bot serves is rung to an agent whose only socket is on node 2 (our echo
// agent on the unmodified node-agent-sdk 1.2.0, pinned to node 2); the agent accepts there, the
// owner assigns it, and the consumer (on node 1) and the agent (on node 2) exchange messages.
// Then the owner dies: node 2 takes the conversation over with the agent still assigned. And one
// agent logged in on two nodes is rung on both for a third node's conversation (ring_agent.js).
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const { Consumer } = require('./lib/consumer');
const { BotProcess } = require('./lib/bot');
const { rest } = require('./lib/server');
const {
  clusterForTest, conversationVia, publishOnce, conversationOnTwoNodes, consumerWithConversation,
} = require('./lib/cluster');

// The demo human agent (an echoing agent process) logged in and subscribed on the node at
// `host`; stopped after the test.
async function agentOn(t, c, acc, host) {
  const agent = new BotProcess({ httpsHost: host, caPath: c.listening[0].ca }, acc,
    c.demo.agent.username, c.demo.agent.password, 'echo', { PARLEY_AGENT_HOST: host });
  t.after(() => agent.stop());
  const connected = await agent.waitFor((e) => e.event === 'connected', `agent connected to ${host}`, 30000);
  await agent.waitFor((e) => e.event === 'subscribed', 'agent subscribed', 15000);
  return { agent, connected };
}

test('a conversation waiting on node 1 is offered to an agent on node 2, who accepts and talks with the consumer', { timeout: 600000 }, async (t) => {
  const { c, byName, acc, srv, bearer } = await clusterForTest(t, 2);
  const { node1, node2 } = byName;
  const node2Host = new URL(node2.https).host;

  // The demo human agent (skills "human" and "escalation"), logged in and connected on node 2.
  const { agent, connected } = await agentOn(t, c, acc, node2Host);

  // A consumer on node 1 asks for a conversation on "human": node 1 creates and owns it.
  const consumer = new Consumer(srv(node1), acc);
  await consumer.signup();
  await consumer.connect();
  t.after(() => consumer.close());
  await consumer.request('cqm.SubscribeExConversations', { minLastUpdatedTime: 0, convState: ['OPEN', 'CLOSE'] });
  const created = await consumer.request('cm.ConsumerRequestConversation',
    { skillId: c.demo.skills.human, channelType: 'MESSAGING', ttrDefName: 'NORMAL' });
  assert.equal(created.code, 200, JSON.stringify(created));
  const convId = created.body.conversationId;
  assert.equal((await consumer.request('ms.SubscribeMessagingEvents', { dialogId: convId, fromSeq: 0 })).code, 200);
  const conv = async () => {
    const r = await rest(srv(node1), bearer, 'GET', acc, `conversations/${convId}`);
    assert.equal(r.status, 200, r.text);
    return r.json;
  };
  assert.equal((await conv()).owner, 'node1');

  // Node 1 rings the agent through node 2; the accept on node 2 is applied by node 1.
  const accepted = await agent.waitFor((e) => e.event === 'accepted' && e.convId === convId,
    'the agent on node 2 is rung for node 1\'s conversation', 20000);
  assert.ok(accepted.ok, `accept through node 2: ${JSON.stringify(accepted)}`);
  const joined = await agent.waitFor((e) => e.event === 'joined' && e.convId === convId, 'the agent joins', 15000);
  assert.equal(joined.myRole, 'ASSIGNED_AGENT');
  await consumer.waitFor((s) => s.conversationChanges().find((ch) => ch.result.convId === convId &&
    (ch.result.conversationDetails.participantsPId.ASSIGNED_AGENT || [])[0] === connected.agentId),
  'the consumer on node 1 sees the agent assigned', 15000);

  // Both sides talk: the consumer's message reaches the agent on node 2, whose answer (published
  // through node 2, applied by node 1) reaches the consumer on node 1.
  await consumer.publishText(convId, 'hello from node 1');
  await consumer.waitFor((s) => s.contentRecords().find((r) => r.event.message === 'echo : hello from node 1' &&
    r.originatorId === connected.agentId), 'the agent\'s answer', 15000);
  await consumer.publishText(convId, 'and again');
  await consumer.waitFor((s) => s.contentRecords().find((r) => r.event.message === 'echo : and again'),
    'the agent\'s second answer', 15000);
  const after = await conv();
  assert.equal(after.owner, 'node1', 'still owned by node 1');
  const msgs = await rest(srv(node1), bearer, 'GET', acc, `conversations/${convId}/messages`);
  assert.equal(msgs.status, 200, msgs.text);
  const texts = msgs.json.filter((m) => m.event.type === 'ContentEvent').map((m) => m.event.message);
  assert.deepEqual(texts, ['hello from node 1', 'echo : hello from node 1', 'and again', 'echo : and again']);
  assert.deepEqual(agent.errors(), [], `agent errors: ${JSON.stringify(agent.errors())}`);
});

// The owner dies while an agent on the other node holds its conversation: the surviving node
// takes the conversation over with the agent still assigned, and the agent goes on answering.
test('an agent on node 2 keeps node 1\'s conversation when node 1 is SIGKILLed', { timeout: 600000 }, async (t) => {
  const leaseMs = 1500;
  const { c, byName, acc, srv, bearer } =
    await clusterForTest(t, 2, { PARLEY_NODE_ARGS: `--lease-ms ${leaseMs}` });
  const { node1, node2 } = byName;
  const node2Host = new URL(node2.https).host;
  const { agent, connected } = await agentOn(t, c, acc, node2Host);

  // Created on node 1 (its owner); the consumer's second socket is on node 2.
  const { onB, convId } = await conversationOnTwoNodes(t, srv(node1), srv(node2), acc, c.demo.skills.human);
  const conv = () => conversationVia(srv(node2), bearer, acc, convId);
  assert.equal((await conv()).owner, 'node1');
  const accepted = await agent.waitFor((e) => e.event === 'accepted' && e.convId === convId,
    'the agent on node 2 is rung for node 1\'s conversation', 20000);
  assert.ok(accepted.ok, JSON.stringify(accepted));
  await agent.waitFor((e) => e.event === 'joined' && e.convId === convId, 'the agent joins', 15000);
  const agentAnswer = (text) => (s) => s.contentRecords().find((r) => r.event.message === `echo : ${text}` &&
    r.originatorId === connected.agentId);
  await onB.publishText(convId, 'before');
  await onB.waitFor(agentAnswer('before'), 'the agent\'s answer through node 1', 15000);
  const assignedBefore = (await conv()).participants.filter((p) => p.role === 'ASSIGNED_AGENT').map((p) => p.id);
  assert.equal(assignedBefore.length, 1);

  // Node 1 is SIGKILLed: node 2 takes the conversation with the agent still in it.
  process.kill(Number(fs.readFileSync(path.join(c.dir, 'node1.pid'), 'utf8')), 'SIGKILL');
  const killedAt = Date.now();
  const r = await publishOnce(onB, convId, 'after', 15000);
  assert.equal(r.code, 200, JSON.stringify(r));
  t.diagnostic(`publish after the kill acknowledged ${Date.now() - killedAt} ms after SIGKILL (lease ${leaseMs} ms)`);
  await onB.waitFor(agentAnswer('after'), 'the agent answers on the new owner', 20000);
  const after = await conv();
  assert.equal(after.owner, 'node2');
  assert.deepEqual(after.participants.filter((p) => p.role === 'ASSIGNED_AGENT').map((p) => p.id), assignedBefore,
    'the same agent assigned');
  await onB.publishText(convId, 'and on');
  await onB.waitFor(agentAnswer('and on'), 'the agent goes on', 15000);
  const msgs = await rest(srv(node2), bearer, 'GET', acc, `conversations/${convId}/messages`);
  assert.equal(msgs.status, 200, msgs.text);
  const texts = msgs.json.filter((m) => m.event.type === 'ContentEvent').map((m) => m.event.message);
  assert.deepEqual(texts, ['before', 'echo : before', 'after', 'echo : after', 'and on', 'echo : and on']);
  assert.deepEqual(agent.errors(), [], `agent errors: ${JSON.stringify(agent.errors())}`);
});

// One agent logged in twice (two node-agent-sdk clients, pinned to node 1 and to node 2) and a
// conversation owned by node 3: both sockets get the one ring; the accept from node 2 assigns
// the agent; node 1's socket sees the ring end (UPSERT ACCEPTED, as a second socket on one node
// does), and its own accept then gets what a second accept gets on one node (200, the answer of
// a retried accept), leaving one assigned agent.
test('an agent logged in on nodes 1 and 2 is rung on both for node 3\'s conversation; the accept on node 2 wins', { timeout: 600000 }, async (t) => {
  const { c, byName, acc, srv, bearer } = await clusterForTest(t, 3);
  const { node1, node2, node3 } = byName;
  const ringAgentOn = async (node) => {
    const host = new URL(node.https).host;
    const a = new BotProcess({ httpsHost: host, caPath: c.listening[0].ca }, acc, c.demo.agent.username,
      c.demo.agent.password, '', { PARLEY_AGENT_HOST: host }, 'ring_agent.js');
    t.after(() => a.stop());
    await a.waitFor((e) => e.event === 'subscribed', `the agent subscribed on ${host}`, 30000);
    return a;
  };
  const on1 = await ringAgentOn(node1);
  const on2 = await ringAgentOn(node2);

  const { convId } = await consumerWithConversation(t, srv(node3), acc, c.demo.skills.human);
  assert.equal((await conversationVia(srv(node3), bearer, acc, convId)).owner, 'node3');

  const waiting = (e) => e.event === 'ring' && e.convId === convId && e.type === 'UPSERT' && e.ringState === 'WAITING';
  const [r1, r2] = await Promise.all([
    on1.waitFor(waiting, 'the agent\'s socket on node 1 rung for node 3\'s conversation', 20000),
    on2.waitFor(waiting, 'the agent\'s socket on node 2 rung for node 3\'s conversation', 20000)]);
  assert.equal(r1.ringId, r2.ringId, 'one ring');

  on2.send({ id: 'accept-on-2', ringId: r2.ringId, ringState: 'ACCEPTED' });
  const a2 = await on2.waitFor((e) => e.event === 'answered' && e.id === 'accept-on-2', 'the accept on node 2', 15000);
  assert.ok(a2.ok, `accept through node 2: ${JSON.stringify(a2)}`);
  const endOf = (e) => e.event === 'ring' && e.ringId === r1.ringId && e.ringState === 'ACCEPTED';
  for (const [a, n] of [[on1, 1], [on2, 2]]) {
    const end = await a.waitFor(endOf, `the ring's end on node ${n}'s socket`, 15000);
    assert.equal(end.type, 'UPSERT');
  }
  const assigned = async () => (await conversationVia(srv(node3), bearer, acc, convId)).participants
    .filter((p) => p.role === 'ASSIGNED_AGENT' && p.state === 'ACTIVE').map((p) => p.id);
  const once = await assigned();
  assert.equal(once.length, 1, JSON.stringify(once));

  on1.send({ id: 'accept-on-1', ringId: r1.ringId, ringState: 'ACCEPTED' });
  const a1 = await on1.waitFor((e) => e.event === 'answered' && e.id === 'accept-on-1', 'the second accept, on node 1', 15000);
  assert.ok(a1.ok, `the second accept gets a retried accept's answer: ${JSON.stringify(a1)}`);
  assert.deepEqual(await assigned(), once, 'still the one assigned agent');
  for (const a of [on1, on2]) assert.deepEqual(a.errors(), [], `agent errors: ${JSON.stringify(a.errors())}`);
});
