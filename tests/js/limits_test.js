'use strict';
// Memory a peer controls (label `slow`): a consumer that re-subscribes to a large history and
// never reads: the server's RSS stays within a bound and the reader is closed (1008, slow
// consumer).
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const WebSocket = require('ws');
const { startServer, login } = require('./lib/server');
const { Consumer } = require('./lib/consumer');
const { adminSession } = require('./lib/setup');
const { request } = require('./lib/http');
const { storedMessages, sleep } = require('./lib/load');

function rssMiB(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = status.match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) / 1024 : NaN;
}

// The documented bound (README, Limits): a connection holds at most its write queue (8 MiB)
// plus one page of history being sent; RSS may also move by the allocator's caching.
const RSS_BOUND_MIB = 64;

test('a consumer that does not read its history is closed and the server stays within its memory bound',
  { timeout: 300000 }, async (t) => {
    const srv = await startServer({ args: ['--metrics-token', 'limits-test-metrics'] });
    t.after(async () => {
      await srv.stop();
    });
    const admin = await adminSession(srv);
    const writer = new Consumer(srv, admin.account);
    await writer.signup();
    await writer.connect();
    const created = await writer.request('cm.ConsumerRequestConversation', { skillId: srv.demo.skills.general });
    const convId = created.body.conversationId;
    // 60 messages of 200 KB; the demo echo bot answers each with one of the same size.
    const big = 'x'.repeat(200 * 1024);
    for (let i = 0; i < 60; i++) await writer.publishText(convId, `${i} ${big}`);
    const deadline = Date.now() + 120000;
    for (;;) {
      const n = (await storedMessages(srv, admin.bearer, admin.account, convId)).length;
      if (n >= 120) break;
      if (Date.now() > deadline) throw new Error(`only ${n} of 120 messages stored`);
      await sleep(500);
    }
    writer.close();
    await sleep(1000);
    const before = rssMiB(srv.proc.pid);

    // The same consumer on a socket it never reads from, asking for the whole history again
    // and again (each answer is ~24 MB).
    const url = `wss://${srv.httpsHost}/ws_api/account/${admin.account}/messaging/consumer?v=3`;
    const ws = new WebSocket(url, { ca: srv.ca, headers: { Authorization: `jwt ${writer.jwt}` } });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws._socket.pause();
    let closed = null;
    ws.on('close', (code) => {
      closed = code;
    });
    ws.on('error', () => {});
    let peak = before;
    const start = Date.now();
    for (let i = 0; Date.now() - start < 45000; i++) {
      if (i < 30 && ws.readyState === WebSocket.OPEN) {
        ws.send(JSON.stringify({ kind: 'req', id: String(i), type: 'ms.SubscribeMessagingEvents', body: { dialogId: convId, fromSeq: 0 } }));
      }
      peak = Math.max(peak, rssMiB(srv.proc.pid));
      await sleep(250);
    }
    ws._socket.resume();
    await new Promise((resolve) => {
      if (closed !== null) return resolve();
      const timer = setTimeout(resolve, 20000);
      ws.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    const s = await login(srv, admin.account, srv.demo.admin.username, srv.demo.admin.password);
    const metrics = await request('GET', `${srv.https}/metrics`, { ca: srv.ca, headers: { Authorization: `Bearer limits-test-metrics` } });
    const slow = Number((metrics.text.match(/parley_ws_slow_consumer_closes_total (\d+)/) || [])[1] || 0);
    console.log(`slow reader: RSS ${before.toFixed(1)} MiB before, peak ${peak.toFixed(1)} MiB ` +
      `(+${(peak - before).toFixed(1)}), closed with ${closed}, slow-consumer closes ${slow}`);
    assert.ok(peak - before < RSS_BOUND_MIB, `RSS grew by ${(peak - before).toFixed(1)} MiB (bound ${RSS_BOUND_MIB})`);
    assert.ok(closed !== null, 'the reader was not closed');
    assert.ok(slow >= 1, 'no slow-consumer close was counted');
  });

