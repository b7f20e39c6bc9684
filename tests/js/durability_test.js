'use strict';
// Crash and shutdown under load (label `slow`): consumers talk to the demo echo bot with two
// publishes in flight each while the server is killed (SIGKILL) or stopped (SIGTERM), then
// restarted on the same data. Every acknowledged consumer message must be answered by the bot
// exactly once after the restart; on SIGTERM every publish sent before the signal must get an
// answer (acknowledged, or refused with an error), and nothing may be stored that was neither
// acknowledged nor refused... i.e. no publish the client could not account for is committed.
//
// Sizes: PARLEY_DURABILITY_CONSUMERS (default 40), PARLEY_DURABILITY_CYCLES (default 3).
const test = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('./lib/server');
const { adminSession } = require('./lib/setup');
const { startConsumers, summarize, waitAnswered, sleep } = require('./lib/load');

const CONSUMERS = Number(process.env.PARLEY_DURABILITY_CONSUMERS || 40);
const CYCLES = Number(process.env.PARLEY_DURABILITY_CYCLES || 3);
const IN_FLIGHT = 2;

function report(label, s) {
  // One line per cycle, for the record of the run.
  console.log(`${label}: acknowledged ${s.acked}, lost ${s.lostAcked}, unanswered ${s.unansweredAcked} ` +
    `(stored and unanswered ${s.unansweredStored}), duplicated ${s.duplicated}, ` +
    `stored without acknowledgement ${s.storedUnacked}, stored although refused ${s.storedRefused}` +
    (s.examples.length ? `\n  ${s.examples.join('\n  ')}` : ''));
}

async function restart(srv) {
  return startServer({ dataDir: srv.dataDir, listen: new URL(srv.http).host, tlsListen: srv.httpsHost });
}

test('SIGKILL under load: every acknowledged message is answered exactly once after a restart',
  { timeout: 600000 }, async (t) => {
    let srv = await startServer();
    t.after(async () => {
      if (srv) await srv.stop();
    });
    const all = [];
    const totals = { acked: 0, unanswered: 0, duplicated: 0 };
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      const admin = await adminSession(srv);
      const consumers = await startConsumers(srv, admin.account, srv.demo.skills.general, CONSUMERS, `kill${cycle}`);
      all.push(...consumers);
      const runs = consumers.map((c) => c.run(IN_FLIGHT));
      await sleep(1500 + Math.floor(Math.random() * 1500));
      const killed = srv.kill();
      await Promise.all(runs);
      const r = await killed;
      assert.equal(r.signal, 'SIGKILL');
      for (const c of consumers) c.close();
      srv = await restart(srv);
      const after = await adminSession(srv);
      // The bot answers what was pending; then give a late duplicate time to show.
      let stored = await waitAnswered(srv, after.bearer, after.account, all, 90000);
      await sleep(2000);
      stored = await waitAnswered(srv, after.bearer, after.account, all, 1000);
      const s = summarize(all, stored);
      report(`SIGKILL cycle ${cycle + 1}/${CYCLES} (all conversations so far)`, s);
      assert.equal(s.lostAcked, 0, 'acknowledged messages lost');
      assert.equal(s.unansweredAcked, 0, 'acknowledged messages the bot never answered');
      assert.equal(s.unansweredStored, 0, 'stored consumer messages the bot never answered');
      assert.equal(s.duplicated, 0, 'consumer messages answered more than once');
      totals.acked = s.acked;
    }
    console.log(`SIGKILL total: ${CYCLES} kills, ${totals.acked} acknowledged publishes, 0 unanswered, 0 duplicated`);
  });

test('SIGTERM under load: publishes in flight are answered, nothing is committed unacknowledged',
  { timeout: 600000 }, async (t) => {
    let srv = await startServer();
    t.after(async () => {
      if (srv) await srv.stop();
    });
    const all = [];
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      const admin = await adminSession(srv);
      const consumers = await startConsumers(srv, admin.account, srv.demo.skills.general, CONSUMERS, `term${cycle}`);
      all.push(...consumers);
      const runs = consumers.map((c) => c.run(IN_FLIGHT));
      await sleep(1500 + Math.floor(Math.random() * 1500));
      const signalAt = Date.now();
      const stopped = srv.stop();
      await Promise.all(runs);
      const r = await stopped;
      assert.equal(r.code, 0, `clean exit on SIGTERM; last log lines:\n${srv.logs().slice(-3000)}`);
      let sentBeforeUnanswered = 0;
      for (const c of consumers) {
        sentBeforeUnanswered += c.unanswered.filter((u) => u.sentAt < signalAt).length;
        assert.ok(c.c.closed === null || c.c.closed.code === 1001, `closed with ${JSON.stringify(c.c.closed)}`);
        c.close();
      }
      srv = await restart(srv);
      const after = await adminSession(srv);
      let stored = await waitAnswered(srv, after.bearer, after.account, all, 90000);
      await sleep(2000);
      stored = await waitAnswered(srv, after.bearer, after.account, all, 1000);
      const s = summarize(all, stored);
      const refused = consumers.reduce((n, c) => n + c.refused.size, 0);
      report(`SIGTERM cycle ${cycle + 1}/${CYCLES} (refused during the drain ${refused}, ` +
        `sent before the signal and never answered ${sentBeforeUnanswered})`, s);
      assert.equal(sentBeforeUnanswered, 0, 'publishes sent before the signal that got no answer');
      assert.equal(s.storedUnacked, 0, 'publishes committed without an acknowledgement');
      assert.equal(s.storedRefused, 0, 'publishes committed although refused');
      assert.equal(s.lostAcked, 0, 'acknowledged messages lost');
      assert.equal(s.unansweredStored, 0, 'stored consumer messages the bot never answered');
      assert.equal(s.duplicated, 0, 'consumer messages answered more than once');
    }
  });
