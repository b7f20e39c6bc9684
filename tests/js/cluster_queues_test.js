'use strict';
// What a manager and an agent see of the account on one node of a cluster (tools/cluster.sh,
// three nodes), through the unmodified node-agent-sdk 1.2.0 (watch_agent.js, pinned to a node):
// the open conversations owned by the other nodes, listed and then kept current
// (SubscribeExConversations, with the same fields and filters as the owner's own node shows
// them), and the agent's own state set through another node (SubscribeAgentsState).
const test = require('node:test');
const assert = require('node:assert/strict');
const { AgentSocket } = require('./lib/agent');
const { BotProcess } = require('./lib/bot');
const { login } = require('./lib/server');
const { clusterForTest, conversationVia, consumerWithConversation } = require('./lib/cluster');

// A watch_agent.js process of `user` on `node` with the ExConversations `filter` (and
// SubscribeAgentsState with `agentState`); stopped after the test.
async function watcherOn(t, c, acc, user, node, filter, { agentState = false } = {}) {
  const host = new URL(node.https).host;
  const w = new BotProcess({ httpsHost: host, caPath: c.listening[0].ca }, acc, user.username, user.password, '',
    Object.assign({ PARLEY_AGENT_HOST: host, PARLEY_WATCH_FILTER: JSON.stringify(filter) },
      agentState ? { PARLEY_WATCH_AGENT_STATE: '1' } : {}),
    'watch_agent.js');
  t.after(() => w.stop());
  await w.waitFor((e) => e.event === 'connected', `${user.username} connected to ${host}`, 30000);
  const sub = await w.waitFor((e) => e.event === 'subscribed', `${user.username} subscribed on ${host}`, 15000);
  assert.equal(sub.error, undefined, sub.error);
  return w;
}

// The last change `w` reported of `convId` satisfying `pred` (undefined when none).
const lastChange = (w, convId, pred = () => true) =>
  w.events.filter((e) => e.event === 'change' && e.convId === convId && pred(e)).at(-1);
const waitChange = (w, convId, pred, label) =>
  w.waitFor((e) => e.event === 'change' && e.convId === convId && pred(e), label, 15000);

test('a manager on node 2 sees the open conversations of nodes 1 and 3, and their changes, as their owners show them', { timeout: 600000 }, async (t) => {
  const { c, byName, acc, srv, bearer } = await clusterForTest(t, 3);
  const { node1, node2, node3 } = byName;
  const skill = c.demo.skills.human; // no bot serves it and no agent is logged in: they wait

  const a = await consumerWithConversation(t, srv(node1), acc, skill);
  const b = await consumerWithConversation(t, srv(node3), acc, skill);
  assert.equal((await conversationVia(srv(node2), bearer, acc, a.convId)).owner, 'node1');
  assert.equal((await conversationVia(srv(node2), bearer, acc, b.convId)).owner, 'node3');

  // The manager (the demo admin: ADMIN, AGENT_MANAGER) on every node, every open conversation.
  const open = { convState: ['OPEN'] };
  const on1 = await watcherOn(t, c, acc, c.demo.admin, node1, open);
  const on2 = await watcherOn(t, c, acc, c.demo.admin, node2, open);
  const on3 = await watcherOn(t, c, acc, c.demo.admin, node3, open);
  const closedOn2 = await watcherOn(t, c, acc, c.demo.admin, node2, { convState: ['CLOSE'] });
  const upsert = (e) => e.type === 'UPSERT';

  // The list: node 2 shows both, exactly as their owners do.
  await waitChange(on1, a.convId, upsert, 'node 1 lists its own conversation');
  await waitChange(on3, b.convId, upsert, 'node 3 lists its own conversation');
  await waitChange(on2, a.convId, upsert, 'node 2 lists node 1\'s conversation');
  await waitChange(on2, b.convId, upsert, 'node 2 lists node 3\'s conversation');
  assert.deepEqual(lastChange(on2, a.convId).result, lastChange(on1, a.convId).result);
  assert.deepEqual(lastChange(on2, b.convId).result, lastChange(on3, b.convId).result);
  assert.equal(lastChange(closedOn2, a.convId), undefined, 'the CLOSE filter shows no open one');

  // Changes: a TTR change on node 3's conversation, a conversation created on node 3 after the
  // list, a close on node 1's.
  const urgent = await b.consumer.request('cm.UpdateConversationField', {
    conversationId: b.convId, conversationField: [{ field: 'TTRField', ttrType: 'URGENT' }],
  });
  assert.equal(urgent.code, 200, JSON.stringify(urgent));
  const isUrgent = (e) => upsert(e) && e.result.conversationDetails.ttr.ttrType === 'URGENT';
  await waitChange(on3, b.convId, isUrgent, 'node 3 shows the TTR change');
  await waitChange(on2, b.convId, isUrgent, 'node 2 shows node 3\'s TTR change');
  assert.deepEqual(lastChange(on2, b.convId).result, lastChange(on3, b.convId).result);

  const later = await consumerWithConversation(t, srv(node3), acc, skill);
  await waitChange(on3, later.convId, upsert, 'node 3 shows its new conversation');
  await waitChange(on2, later.convId, upsert, 'node 2 shows node 3\'s new conversation');
  assert.deepEqual(lastChange(on2, later.convId).result, lastChange(on3, later.convId).result);

  const close = await a.consumer.request('cm.UpdateConversationField', {
    conversationId: a.convId, conversationField: [{ field: 'ConversationStateField', conversationState: 'CLOSE' }],
  });
  assert.equal(close.code, 200, JSON.stringify(close));
  const deleted = (e) => e.type === 'DELETE';
  await waitChange(on1, a.convId, deleted, 'node 1 takes its closed conversation out of the OPEN list');
  await waitChange(on2, a.convId, deleted, 'node 2 takes node 1\'s closed conversation out of the OPEN list');
  await waitChange(closedOn2, a.convId, upsert, 'node 2\'s CLOSE list shows it');
  assert.equal(lastChange(closedOn2, b.convId), undefined, 'the CLOSE filter still shows no open one');
  assert.equal(lastChange(on2, b.convId).type, 'UPSERT', 'node 3\'s open conversation stays listed');
  for (const w of [on1, on2, on3, closedOn2]) assert.deepEqual(w.errors(), [], JSON.stringify(w.errors()));
});

test('an agent\'s socket on node 2 shows the state the agent set through node 1, and its changes', { timeout: 600000 }, async (t) => {
  const { c, byName, acc, srv } = await clusterForTest(t, 2);
  const { node1, node2 } = byName;

  // The demo agent sets ONLINE through a socket on node 1 only.
  const session = await login(srv(node1), acc, c.demo.agent.username, c.demo.agent.password);
  const sock = new AgentSocket(srv(node1), acc, session.bearer);
  await sock.connect();
  t.after(() => sock.close());
  const online = await sock.request('.ams.routing.SetAgentState', { availability: 'ONLINE', channels: ['MESSAGING'] });
  assert.equal(online.code, 200, JSON.stringify(online));

  // Its second socket, on node 2, subscribes to its state: ONLINE, as one node shows it.
  const on2 = await watcherOn(t, c, acc, c.demo.agent, node2, { convState: ['OPEN'], agentIds: ['@self'] }, { agentState: true });
  const stateIs = (s) => (e) => e.event === 'agent-state' && e.availability === s;
  await on2.waitFor(stateIs('ONLINE'), 'node 2 shows the state set on node 1', 15000);

  // AWAY through node 1: node 2's socket is told.
  const away = await sock.request('.ams.routing.SetAgentState', { availability: 'AWAY', channels: ['MESSAGING'] });
  assert.equal(away.code, 200, JSON.stringify(away));
  await on2.waitFor(stateIs('AWAY'), 'node 2 shows the change made on node 1', 15000);
  assert.deepEqual(on2.errors(), [], JSON.stringify(on2.errors()));
});
