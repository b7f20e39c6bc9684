'use strict';
// A bot stopped through one node of a cluster (tools/cluster.sh, two nodes): its open
// conversations on every node are handed to its escalation skill, each by the node that owns it,
// as on a single node — not only the stopping node's own.
const test = require('node:test');
const assert = require('node:assert/strict');
const { Consumer } = require('./lib/consumer');
const { rest } = require('./lib/server');
const { clusterForTest, botTexts, conversationVia } = require('./lib/cluster');

test('POST bots/{id}/stop on node 1 hands the bot\'s conversations on both nodes to its escalation skill', { timeout: 600000 }, async (t) => {
  const { c, byName, acc, srv, bearer } = await clusterForTest(t, 2);
  const { node1, node2 } = byName;
  const conv = (convId) => conversationVia(srv(node2), bearer, acc, convId);
  const assigned = (cv) => cv.participants.filter((p) => p.role === 'ASSIGNED_AGENT').map((p) => p.id);

  // One conversation owned by each node, each answered by the bot there.
  const convs = [];
  for (const node of [node1, node2, node2]) {
    const s = new Consumer(srv(node), acc);
    await s.signup();
    await s.connect();
    t.after(() => s.close());
    const created = await s.request('cm.ConsumerRequestConversation',
      { skillId: c.demo.skills.general, channelType: 'MESSAGING', ttrDefName: 'NORMAL' });
    assert.equal(created.code, 200, JSON.stringify(created));
    const convId = created.body.conversationId;
    assert.equal((await s.request('ms.SubscribeMessagingEvents', { dialogId: convId, fromSeq: 0 })).code, 200);
    await s.publishText(convId, 'hello');
    await s.waitFor(() => botTexts(s).includes('echo : hello'), `the bot answers on ${node.node}`, 20000);
    const cv = await conv(convId);
    assert.equal(cv.owner, node.node);
    assert.equal(assigned(cv).length, 1, JSON.stringify(cv));
    convs.push({ s, convId, node: node.node, bot: assigned(cv)[0] });
  }

  const bots = await rest(srv(node1), bearer, 'GET', acc, 'bots');
  assert.equal(bots.status, 200, bots.text);
  const bot = bots.json.find((b) => b.functionUuid === c.demo.function || b.name === 'demo-echo-bot');
  assert.ok(bot, bots.text);
  const stopped = await rest(srv(node1), bearer, 'POST', acc, `bots/${bot.id}/stop`, {});
  assert.equal(stopped.status, 200, stopped.text);

  // The stop answers once the hand-off is done: every conversation is in the escalation skill's
  // queue, the bot no longer assigned, still owned by the node that had it.
  for (const { convId, node, bot: botUser } of convs) {
    const cv = await conv(convId);
    assert.equal(cv.state, 'OPEN', JSON.stringify(cv));
    assert.equal(cv.skillId, c.demo.skills.escalation, `${node}'s conversation: ${JSON.stringify(cv)}`);
    assert.ok(!assigned(cv).includes(botUser), `${node}'s conversation still has the bot: ${JSON.stringify(cv)}`);
    assert.equal(cv.owner, node);
  }
  // The bot does not answer them any more.
  for (const { s, convId } of convs) await s.publishText(convId, 'still there?');
  await new Promise((r) => setTimeout(r, 1500));
  for (const { s } of convs) assert.ok(!botTexts(s).some((x) => x.includes('still there?')), botTexts(s).join(' | '));
});
