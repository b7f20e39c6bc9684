'use strict';
// Forwarding in a cluster (tools/cluster.sh, three nodes): a consumer whose socket is on a node
// that does not hold its conversation publishes and changes it as if it did (the node forwards
// to the owner over NATS), and a publish made while the owner is SIGKILLed is answered once the
// next owner has taken the conversation, within the API's 10 s, without the client retrying.
// A publish with an idempotency key is stored once whichever node it is sent (again) through,
// also when it is resent through another node after its owner was SIGKILLed.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const { rest } = require('./lib/server');
const { clusterForTest, botTexts, conversationVia, publishOnce, conversationOnTwoNodes } = require('./lib/cluster');

test('publishes and changes reaching a node that does not own the conversation go to its owner, also during a takeover', { timeout: 600000 }, async (t) => {
  const leaseMs = 1500;
  const { c, byName, acc, srv, bearer } =
    await clusterForTest(t, 3, { PARLEY_NODE_ARGS: `--lease-ms ${leaseMs}` });
  const { node1, node2 } = byName;
  const owner = (convId) => conversationVia(srv(node2), bearer, acc, convId);
  const publish = publishOnce;

  // A conversation made on node 1 (node 1's lease), and the same consumer's socket on node 2.
  const open = async () => {
    const { onA, onB, convId } =
      await conversationOnTwoNodes(t, srv(node1), srv(node2), acc, c.demo.skills.general);
    assert.equal((await owner(convId)).owner, 'node1');
    return { onA, onB, convId };
  };

  // 1. Published through node 2 into node 1's conversation: acknowledged with its sequence and
  // answered by the bot (running on node 1), the answer relayed to node 2's socket.
  const first = await open();
  const r1 = await publish(first.onB, first.convId, 'via node 2', 15000);
  assert.equal(r1.code, 200, JSON.stringify(r1));
  assert.equal(typeof r1.body.sequence, 'number', JSON.stringify(r1));
  await first.onB.waitFor(() => botTexts(first.onB).includes('echo : via node 2'), 'the bot\'s answer on node 2', 20000);
  assert.equal((await owner(first.convId)).owner, 'node1');
  // A change through node 2 (a TTR change, then the close) is applied by node 1.
  const ttr = await first.onB.request('cm.UpdateConversationField', {
    conversationId: first.convId, conversationField: [{ field: 'TTRField', ttrType: 'URGENT' }],
  });
  assert.equal(ttr.code, 200, JSON.stringify(ttr));
  const closed = await first.onB.request('cm.UpdateConversationField', {
    conversationId: first.convId, conversationField: [{ field: 'ConversationStateField', conversationState: 'CLOSE' }],
  });
  assert.equal(closed.code, 200, JSON.stringify(closed));
  assert.equal((await owner(first.convId)).state, 'CLOSE');

  // 1b. Idempotency keys: a publish through node 1 (the owner) sent again with its key through
  // node 2 (forwarded), and one through node 2 sent again through node 1, are stored once each
  // and each resend is answered the first one's sequence; the bot answers each once.
  const keyed = await open();
  const k1 = await publish(keyed.onA, keyed.convId, 'keyed on node 1', 15000, 'fwd-key-1');
  assert.equal(k1.code, 200, JSON.stringify(k1));
  const k1again = await publish(keyed.onB, keyed.convId, 'keyed on node 1', 15000, 'fwd-key-1');
  assert.equal(k1again.code, 200, JSON.stringify(k1again));
  assert.equal(k1again.body.sequence, k1.body.sequence, 'the resend through node 2 gets the first sequence');
  const k2 = await publish(keyed.onB, keyed.convId, 'keyed on node 2', 15000, 'fwd-key-2');
  assert.equal(k2.code, 200, JSON.stringify(k2));
  const k2again = await publish(keyed.onA, keyed.convId, 'keyed on node 2', 15000, 'fwd-key-2');
  assert.equal(k2again.code, 200, JSON.stringify(k2again));
  assert.equal(k2again.body.sequence, k2.body.sequence, 'the resend through node 1 gets the first sequence');
  const k3 = await publish(keyed.onB, keyed.convId, 'keyed last', 15000, 'fwd-key-3');
  assert.equal(k3.code, 200, JSON.stringify(k3));
  await keyed.onB.waitFor(() => botTexts(keyed.onB).includes('echo : keyed last'), 'the answer to the last one', 20000);
  const keyedMsgs = await rest(srv(node2), bearer, 'GET', acc, `conversations/${keyed.convId}/messages`);
  assert.equal(keyedMsgs.status, 200, keyedMsgs.text);
  assert.deepEqual(keyedMsgs.json.filter((m) => m.event.type === 'ContentEvent' && m.role === 'CONSUMER')
    .map((m) => m.event.message), ['keyed on node 1', 'keyed on node 2', 'keyed last'], 'stored once each');
  assert.deepEqual(botTexts(keyed.onB).filter((x) => x.startsWith('echo : keyed on')),
    ['echo : keyed on node 1', 'echo : keyed on node 2'], 'answered once each');

  // 2. Node 1 is SIGKILLed; a publish through node 2 at once waits for the next owner (node 2
  // or 3, after the lease expired) and is acknowledged within 10 s, then answered by the bot.
  // The publish before the kill (stored by node 1) is sent again with its key after it: the
  // next owner answers its sequence and stores nothing.
  const second = await open();
  const r0 = await publish(second.onB, second.convId, 'before', 15000, 'fwd-before');
  assert.equal(r0.code, 200, JSON.stringify(r0));
  await second.onB.waitFor(() => botTexts(second.onB).includes('echo : before'), 'the first answer', 20000);
  const pid = Number(fs.readFileSync(path.join(c.dir, 'node1.pid'), 'utf8'));
  process.kill(pid, 'SIGKILL');
  const killedAt = Date.now();
  const r2 = await publish(second.onB, second.convId, 'during', 15000);
  const waited = Date.now() - killedAt;
  assert.equal(r2.code, 200, `publish during the takeover: ${JSON.stringify(r2)} after ${waited} ms`);
  assert.ok(waited < 10000 + 1000, `acknowledged ${waited} ms after the kill`);
  t.diagnostic(`publish during the takeover acknowledged ${waited} ms after SIGKILL (lease ${leaseMs} ms)`);
  const resent = await publish(second.onB, second.convId, 'before', 15000, 'fwd-before');
  assert.equal(resent.code, 200, JSON.stringify(resent));
  assert.equal(resent.body.sequence, r0.body.sequence, 'the resend after the failover gets the first sequence');
  const newOwner = (await owner(second.convId)).owner;
  assert.ok(newOwner === 'node2' || newOwner === 'node3', `owned by ${newOwner}`);
  await second.onB.waitFor(() => botTexts(second.onB).some((x) => x.split(/\s+/).includes('during')),
    'the new owner\'s bot answers', 30000);
  const msgs = await rest(srv(node2), bearer, 'GET', acc, `conversations/${second.convId}/messages`);
  assert.equal(msgs.status, 200, msgs.text);
  const fromConsumer = msgs.json.filter((m) => m.event.type === 'ContentEvent' && m.role === 'CONSUMER')
    .map((m) => m.event.message);
  assert.deepEqual(fromConsumer, ['before', 'during'], 'stored once each, in order');
});
