'use strict';
// A node cut off from NATS while it keeps PostgreSQL (tools/cluster.sh, two nodes; node 1 reaches
// NATS through a TCP proxy this test closes): it gives its conversations up, node 2 takes them
// over, and the consumers' publishes reaching node 2 are answered there — every acknowledged
// message stored once and answered by the bot. While cut off node 1 creates no conversation and
// its /healthz answers 503 (the balancer's health check sends clients elsewhere); once the proxy
// is back it creates (and owns) conversations again and its /healthz answers 200.
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('net');
const { Consumer } = require('./lib/consumer');
const { rest } = require('./lib/server');
const { request } = require('./lib/http');
const { clusterForTest, botTexts, conversationVia, publishOnce } = require('./lib/cluster');

const freePort = () => new Promise((resolve, reject) => {
  const s = net.createServer();
  s.once('error', reject);
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

// A TCP proxy from `port` to NATS on `target`; close() refuses connections and cuts the open
// ones (the node's NATS client sees its connection closed), open() accepts again.
function natsProxy(port, target) {
  const socks = new Set();
  let server = null;
  const open = () => new Promise((resolve, reject) => {
    server = net.createServer((client) => {
      const up = net.connect(target, '127.0.0.1');
      socks.add(client); socks.add(up);
      const end = () => { client.destroy(); up.destroy(); socks.delete(client); socks.delete(up); };
      client.on('error', end); up.on('error', end); client.on('close', end); up.on('close', end);
      client.pipe(up); up.pipe(client);
    });
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const close = () => new Promise((resolve) => {
    for (const s of socks) s.destroy();
    socks.clear();
    if (!server) return resolve();
    server.close(() => resolve());
    server = null;
  });
  return { open, close };
}

test('a node cut off from NATS gives its conversations up to the node that has it, and comes back', { timeout: 600000 }, async (t) => {
  const leaseMs = 1500;
  const natsPort = await freePort();
  const proxyPort = await freePort();
  const proxy = natsProxy(proxyPort, natsPort);
  await proxy.open();
  t.after(() => proxy.close());
  const { c, byName, acc, srv, bearer, ca } = await clusterForTest(t, 2, {
    PARLEY_NODE_ARGS: `--lease-ms ${leaseMs}`,
    PARLEY_CLUSTER_NATS_PORT: String(natsPort),
    PARLEY_NODE_BUS_1: `nats://127.0.0.1:${proxyPort}`,
  });
  const { node1, node2 } = byName;
  const conv = (convId) => conversationVia(srv(node2), bearer, acc, convId);
  const publish = publishOnce;
  const ask = (sock) => sock.request('cm.ConsumerRequestConversation',
    { skillId: c.demo.skills.general, channelType: 'MESSAGING', ttrDefName: 'NORMAL' });
  const consumerOn = async (node, jwt) => {
    const s = new Consumer(srv(node), acc);
    if (jwt) s.jwt = jwt; else await s.signup();
    await s.connect();
    t.after(() => s.close());
    return s;
  };

  // Conversations made on node 1 (node 1's leases), each consumer's second socket on node 2.
  const convs = [];
  for (let i = 0; i < 4; i++) {
    const onA = await consumerOn(node1);
    const created = await ask(onA);
    assert.equal(created.code, 200, JSON.stringify(created));
    const convId = created.body.conversationId;
    const onB = await consumerOn(node2, onA.jwt);
    assert.equal((await onB.request('ms.SubscribeMessagingEvents', { dialogId: convId, fromSeq: 0 })).code, 200);
    assert.equal((await conv(convId)).owner, 'node1');
    const r = await publish(onB, convId, `before ${i}`, 15000);
    assert.equal(r.code, 200, JSON.stringify(r));
    await onB.waitFor(() => botTexts(onB).includes(`echo : before ${i}`), `answer ${i} through node 1`, 20000);
    convs.push({ onA, onB, convId, i });
  }

  // Cut node 1 off from NATS (PostgreSQL stays reachable). Publishes through node 2 at once:
  // forwarded to node 1, which no longer answers; they wait for the next owner (node 2, once
  // node 1 gave the leases up) and are acknowledged within the forwarder's 10 s.
  await proxy.close();
  const cutAt = Date.now();
  const during = await Promise.all(convs.map(({ onB, convId, i }) => publish(onB, convId, `during ${i}`, 15000)));
  const waited = Date.now() - cutAt;
  for (const r of during) assert.equal(r.code, 200, `publish after the cut: ${JSON.stringify(r)} after ${waited} ms`);
  t.diagnostic(`publishes after the cut acknowledged within ${waited} ms (lease ${leaseMs} ms)`);
  for (const { convId } of convs) assert.equal((await conv(convId)).owner, 'node2');
  for (const { onB, i } of convs)
    await onB.waitFor(() => botTexts(onB).includes(`echo : during ${i}`), `answer ${i} by node 2's bot`, 30000);
  // And on: a second message each, answered on node 2.
  for (const { onB, convId, i } of convs) {
    const r = await publish(onB, convId, `after ${i}`, 15000);
    assert.equal(r.code, 200, JSON.stringify(r));
    await onB.waitFor(() => botTexts(onB).includes(`echo : after ${i}`), `answer ${i} after`, 20000);
  }
  // Every acknowledged consumer message stored once, in order, and answered once.
  for (const { convId, i } of convs) {
    const msgs = await rest(srv(node2), bearer, 'GET', acc, `conversations/${convId}/messages`);
    assert.equal(msgs.status, 200, msgs.text);
    const text = (role) => msgs.json.filter((m) => m.event.type === 'ContentEvent' && m.role === role)
      .map((m) => String(m.event.message));
    assert.deepEqual(text('CONSUMER'), [`before ${i}`, `during ${i}`, `after ${i}`]);
    assert.deepEqual(text('ASSIGNED_AGENT').filter((x) => x.startsWith('echo : ')),
      [`echo : before ${i}`, `echo : during ${i}`, `echo : after ${i}`]);
  }

  // Still cut off: node 1 creates no conversation (it would own one nobody else can reach).
  const lone = await consumerOn(node1);
  const refused = await ask(lone);
  assert.equal(refused.code, 503, JSON.stringify(refused));
  assert.match(JSON.stringify(refused.body), /cut off from the cluster's bus/);
  const health = await request('GET', `${node1.https}/healthz`, { ca });
  assert.equal(health.status, 503, health.text);
  assert.equal(health.json.status, 'unavailable');
  assert.match(health.json.reason, /cut off from the cluster's bus/);
  assert.equal((await request('GET', `${node2.https}/healthz`, { ca })).status, 200);

  // NATS reachable again: node 1 reconnects and takes part again — a conversation asked on it is
  // created and owned by it (node 2 keeps what it took).
  await proxy.open();
  const deadline = Date.now() + 20000;
  let again;
  for (;;) {
    again = await ask(lone);
    if (again.code === 200 || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.equal(again.code, 200, JSON.stringify(again));
  const healthy = await request('GET', `${node1.https}/healthz`, { ca });
  assert.equal(healthy.status, 200, healthy.text);
  assert.equal((await conv(again.body.conversationId)).owner, 'node1');
  for (const { convId } of convs) assert.equal((await conv(convId)).owner, 'node2');
  assert.equal((await lone.request('ms.SubscribeMessagingEvents', { dialogId: again.body.conversationId, fromSeq: 0 })).code, 200);
  const r = await publish(lone, again.body.conversationId, 'back', 15000);
  assert.equal(r.code, 200, JSON.stringify(r));
  await lone.waitFor(() => botTexts(lone).includes('echo : back'), 'node 1\'s bot answers again', 20000);
});
