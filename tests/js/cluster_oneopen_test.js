'use strict';
// One open conversation per consumer across nodes (tools/cluster.sh, two nodes, and a third
// node started here without --node): the same consumer connected to two different nodes asks
// for a conversation on both at once, round after round; at most one is ever open, and each
// socket is told that conversation's id, or the error naming it. The node started without
// --node is named "<host name>:<port>" (its `listening` line and the leases it takes).
// Then, on the same cluster: failed logins spread over the nodes count towards one throttle.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const { Consumer } = require('./lib/consumer');
const { rest, startServer } = require('./lib/server');
const { clusterForTest } = require('./lib/cluster');
const { request } = require('./lib/http');

const ROUNDS = 12;
const METRICS_TOKEN = 'cluster-limits-metrics';
const OPEN_ERROR = /^consumer already has an open conversation (\S+)$/;

test('a consumer on two nodes asking for a conversation on both at once gets one', { timeout: 600000 }, async (t) => {
  const { c, byName, acc, srv, bearer } = await clusterForTest(t, 2, { PARLEY_METRICS_TOKEN: METRICS_TOKEN });
  // A third node of the same cluster, without --node.
  const unnamed = await startServer({
    args: ['--store', c.cluster.store, '--bus', c.cluster.bus, '--public-url', c.cluster.https],
    timeoutMs: 120000,
  });
  t.after(async () => {
    await unnamed.stop();
    fs.rmSync(unnamed.dataDir, { recursive: true, force: true });
  });
  const expectedName = `${os.hostname()}:${new URL(unnamed.http).port}`;
  assert.equal(unnamed.node, expectedName, 'the default node name is host:port of its listener');
  const unnamedSrv = { https: unnamed.https, httpsHost: unnamed.httpsHost, ca: unnamed.ca };

  const onA = new Consumer(srv(byName.node1), acc);
  await onA.signup();
  await onA.connect();
  t.after(() => onA.close());
  const onB = new Consumer(unnamedSrv, acc);
  onB.jwt = onA.jwt;
  await onB.connect();
  t.after(() => onB.close());

  // A request with a generous timeout (the machine may be loaded).
  const send = (sock, type, body) => {
    const id = String(sock.nextId++);
    return sock.sendRaw(JSON.stringify({ kind: 'req', id, type, body }), id, 20000);
  };
  const ask = (sock) => send(sock, 'cm.ConsumerRequestConversation',
    { skillId: c.demo.skills.general, channelType: 'MESSAGING', ttrDefName: 'NORMAL' }).then((r) => ({ sock, r }));
  const openOnes = async () => {
    const r = await rest(srv(byName.node2), bearer, 'GET', acc,
      `conversations?consumer=${encodeURIComponent(onA.consumerId)}&state=OPEN`);
    assert.equal(r.status, 200, r.text);
    return r.json.map((x) => x.id);
  };
  const close = async (sock, convId) => {
    const r = await send(sock, 'cm.UpdateConversationField', {
      conversationId: convId, conversationField: [{ field: 'ConversationStateField', conversationState: 'CLOSE' }],
    });
    assert.equal(r.code, 200, JSON.stringify(r));
  };

  let wonByA = 0;
  let wonByB = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const answers = await Promise.all([ask(onA), ask(onB)]);
    const open = await openOnes();
    assert.equal(open.length, 1, `round ${round}: open conversations ${JSON.stringify(open)}, answers ${JSON.stringify(answers.map((a) => a.r))}`);
    const winners = answers.filter((a) => a.r.code === 200);
    assert.equal(winners.length, 1, `round ${round}: ${JSON.stringify(answers.map((a) => a.r))}`);
    for (const { r } of answers) {
      if (r.code === 200) {
        assert.equal(r.body.conversationId, open[0], `round ${round}`);
      } else {
        // The refusal a node alone gives, naming the open conversation (made on the other node).
        assert.equal(r.code, 409, `round ${round}: ${JSON.stringify(r)}`);
        const m = OPEN_ERROR.exec(String(r.body));
        assert.ok(m, `round ${round}: a clear error: ${JSON.stringify(r)}`);
        assert.equal(m[1], open[0], `round ${round}: the error names the open conversation`);
      }
    }
    if (winners[0].sock === onA) wonByA++; else wonByB++;
    await close(winners[0].sock, open[0]);
    assert.deepEqual(await openOnes(), [], `round ${round}: closed`);
  }
  t.diagnostic(`${ROUNDS} rounds: node1 created ${wonByA}, the unnamed node ${wonByB}`);

  // A conversation made on the unnamed node is leased under its host:port name.
  const { r: made } = await ask(onB);
  assert.equal(made.code, 200, JSON.stringify(made));
  const shown = await rest(srv(byName.node2), bearer, 'GET', acc, `conversations/${made.body.conversationId}`);
  assert.equal(shown.status, 200, shown.text);
  assert.equal(shown.json.owner, expectedName);
  // And node1, which does not hold it, refuses a second one naming it.
  const { r: refused } = await ask(onA);
  assert.equal(refused.code, 409, JSON.stringify(refused));
  assert.equal(String(refused.body), `consumer already has an open conversation ${made.body.conversationId}`);

  await t.test('failed logins on one node throttle the user on the others', async () => {
    const ca = fs.readFileSync(c.listening[0].ca);
    const login = (node, password) => request('POST', `${node.https}/api/account/${acc}/login?v=1.3`,
      { ca, body: { username: c.demo.agent.username, password } });
    const heard = async () => {
      const m = await request('GET', `${byName.node2.https}/metrics`,
        { ca, headers: { Authorization: `Bearer ${METRICS_TOKEN}` } });
      assert.equal(m.status, 200, m.text);
      const x = /^parley_cluster_limit_events_received_total (\d+)$/m.exec(m.text);
      return x ? Number(x[1]) : 0;
    };
    const before = await heard();
    // The login throttle's 5 free failures per user, spent on node 1 (the attacker's balancer
    // sent them there) ...
    for (let i = 0; i < 5; i++) {
      const r = await login(byName.node1, `wrong-${i}`);
      assert.equal(r.status, 401, `guess ${i} on node 1: ${r.text}`);
    }
    // ... leave none on node 2, once it has heard of them (a broadcast: milliseconds). The guess
    // must come within the 1 s backoff the fifth failure started.
    for (let tries = 0; tries < 250 && (await heard()) < before + 5; tries++)
      await new Promise((res) => setTimeout(res, 20));
    const r = await login(byName.node2, 'wrong-5');
    assert.equal(r.status, 429, `the sixth guess, on node 2: ${r.text}`);
    assert.ok(Number(r.headers['retry-after']) >= 1, JSON.stringify(r.headers));
  });
});
