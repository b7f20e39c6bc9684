'use strict';
// Failover time of a three-node cluster under load (tools/cluster.sh: PostgreSQL, NATS, HAProxy
// in front): N consumers talk to the demo echo bot through the balancer (wss, TLS passed through
// per connection) with a think time; one node is killed (SIGKILL) mid-run; every consumer whose
// socket went down reconnects through the balancer and goes on. Reports, per run:
//   - takeover: for each conversation the killed node owned (the lease table just before the
//     kill), the time from the kill until its bot answered again (p50, p99, max);
//   - the longest gap between two bot replies of one conversation, over the whole run, for the
//     killed node's conversations and for the others;
//   - acknowledged consumer messages missing from the store (must be 0), bot replies stored more
//     than once for one consumer message (must be 0), consumer messages stored twice because the
//     client sent them again (its socket closed before the answer and the replay after the
//     reconnection did not show them stored yet; must be 0 with idempotency keys), consumer
//     messages stored more often than the client sent them (must be 0), and the conversations
//     never answered after the kill;
//   - bot turns/s in the 10 s before the kill and in the last 10 s of the run.
//
//   node bench/cluster/failover.js [--conversations 300] [--think-ms 1000] [--before 15]
//        [--after 30] [--lease-ms 3000] [--runs 3] [--kill node2] [--signal KILL|TERM] [--json FILE]
//        [--keys on|off]
//
// Every publish carries an idempotency key (its text, unique per conversation: envelope metadata
// {"type":"IdempotencyKey"}), and a resend carries the same key, so a resend of a stored message
// is answered its sequence and stored once; --keys off sends none (what LivePerson clients do),
// to count the messages stored twice without them.
//
// --signal TERM stops the node as an operator would (it drains, then releases its leases) instead
// of killing it.
//
// PARLEY_BIN: the binary (default build/default/src/app/parley). Needs tests/js/node_modules (ws).
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');
const WebSocket = require('../../tests/js/node_modules/ws');
const { startCluster, stopCluster } = require('../../tests/js/lib/cluster');
const { request } = require('../../tests/js/lib/http');

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = args[i + 1];
  if (v === undefined) throw new Error(`--${name} needs a value`);
  return typeof def === 'number' ? Number(v) : v;
};
const cfg = {
  conversations: opt('conversations', 300),
  thinkMs: opt('think-ms', 1000),
  beforeS: opt('before', 15),
  afterS: opt('after', 30),
  leaseMs: opt('lease-ms', 3000),
  runs: opt('runs', 3),
  kill: opt('kill', 'node2'),
  json: opt('json', ''),
  signal: opt('signal', 'KILL'),
  keys: opt('keys', 'on'),
};
if (!['on', 'off'].includes(cfg.keys)) throw new Error(`failover: --keys is on or off (got ${cfg.keys})`);
if (!['KILL', 'TERM'].includes(cfg.signal)) throw new Error(`failover: --signal is KILL or TERM (got ${cfg.signal})`);
for (const k of ['conversations', 'thinkMs', 'beforeS', 'afterS', 'leaseMs', 'runs'])
  if (!Number.isFinite(cfg[k]) || cfg[k] <= 0) throw new Error(`failover: ${k} must be a positive number (got ${cfg[k]})`);
if (cfg.afterS < 12) throw new Error('failover: --after must be at least 12 s (the last 10 s are the "after" window)');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => Number(process.hrtime.bigint() / 1000n) / 1000;  // ms, monotonic
const pct = (xs, p) => {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const pgBin = () => {
  const dirs = fs.readdirSync('/usr/lib/postgresql').sort((a, b) => Number(a) - Number(b));
  return path.join('/usr/lib/postgresql', dirs[dirs.length - 1], 'bin', 'psql');
};
const psqlJson = (store, sql) => JSON.parse(execFileSync(pgBin(), [store, '-tAXc', sql], { encoding: 'utf8', maxBuffer: 1 << 30 }).trim() || 'null');

// One consumer: its socket through the balancer, reconnected when it drops, and its closed loop
// with a think time. Keeps what it saw: the bot's replies (time received, text) by sequence, its
// own messages stored, the texts acknowledged.
class Talker {
  constructor(run, i, jwt) {
    Object.assign(this, { run, i, jwt });
    this.seq = -1;
    this.nextId = 1;
    this.pending = new Map();
    this.sent = 0;
    this.acked = new Set();
    this.sends = new Map();  // text -> times sent
    this.mine = new Set();  // its own texts seen stored (notifications)
    this.replies = [];      // [{at, text}] in arrival order, one per bot message sequence
    this.seen = new Set();  // sequences seen
    this.waiting = null;    // {text, since}
    this.reconnects = 0;
    this.stopped = false;
  }

  open() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`wss://${this.run.host}/ws_api/account/${this.run.acc}/messaging/consumer?v=3`,
        { ca: this.run.ca, headers: { Authorization: `jwt ${this.jwt}` }, maxPayload: 8 << 20 });
      ws.once('open', () => { this.ws = ws; resolve(); });
      ws.once('error', reject);
      ws.once('unexpected-response', (req, res) => reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)));
      ws.on('message', (d) => this.onMessage(d.toString()));
      ws.on('close', () => {
        for (const [, p] of this.pending) p.reject(new Error('socket closed'));
        this.pending.clear();
        if (this.ws === ws) {
          this.ws = null;
          if (!this.stopped) this.reconnect();
        }
      });
    });
  }

  req(type, body, timeoutMs = 20000, metadata = undefined) {
    const id = String(this.nextId++);
    return new Promise((resolve, reject) => {
      if (!this.ws) return reject(new Error('not connected'));
      const timer = setTimeout(() => { this.pending.delete(id); reject(new Error(`${type}: no answer in ${timeoutMs} ms`)); }, timeoutMs);
      this.pending.set(id, { resolve: (m) => { clearTimeout(timer); resolve(m); }, reject: (e) => { clearTimeout(timer); reject(e); } });
      const msg = { kind: 'req', id, type, body };
      if (metadata) msg.metadata = metadata;
      this.ws.send(JSON.stringify(msg));
    });
  }

  onMessage(text) {
    const m = JSON.parse(text);
    if (m.kind === 'resp' && this.pending.has(String(m.reqId))) {
      const p = this.pending.get(String(m.reqId));
      this.pending.delete(String(m.reqId));
      return p.resolve(m);
    }
    if (m.type !== 'ms.MessagingEventNotification') return;
    for (const c of m.body.changes || []) {
      if (this.seen.has(c.sequence)) continue;
      this.seen.add(c.sequence);
      this.seq = Math.max(this.seq, c.sequence);
      if (!c.event || c.event.type !== 'ContentEvent') continue;
      const msg = String(c.event.message);
      if (c.originatorMetadata && c.originatorMetadata.role === 'CONSUMER') {
        this.mine.add(msg);
      } else {
        const at = now();
        this.replies.push({ at, text: msg });
        this.run.replyTimes.push(at);
        if (this.waiting && msg === `echo : ${this.waiting.text}`) {
          this.waiting = null;
          this.schedule((0.5 + Math.random()) * this.run.cfg.thinkMs);
        }
      }
    }
  }

  async start() {
    await this.open();
    const r = await this.req('cm.ConsumerRequestConversation', { skillId: this.run.skill, channelType: 'MESSAGING', ttrDefName: 'NORMAL' });
    if (r.code !== 200) throw new Error(`consumer ${this.i}: conversation refused: ${JSON.stringify(r)}`);
    this.conv = r.body.conversationId;
    const s = await this.req('ms.SubscribeMessagingEvents', { dialogId: this.conv, fromSeq: 0 });
    if (s.code !== 200) throw new Error(`consumer ${this.i}: subscribe refused: ${JSON.stringify(s)}`);
  }

  schedule(ms) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.send(), ms);
  }

  // Sends its next text, or sends again the one not yet acknowledged (unless it is stored).
  async send(again = false) {
    if (this.stopped) return;
    if (!again) this.waiting = { text: `c${this.i}-${++this.sent}`, since: now() };
    if (!this.waiting) return;  // answered meanwhile
    const text = this.waiting.text;
    if (this.acked.has(text) || this.mine.has(text)) return;  // stored: its reply will come
    if (!this.ws) return;  // the reconnection sends it again
    this.sends.set(text, (this.sends.get(text) || 0) + 1);
    try {
      // The text is unique in its conversation: it is the key, the same on every resend.
      const metadata = this.run.cfg.keys === 'on' ? [{ type: 'IdempotencyKey', key: text }] : undefined;
      const r = await this.req('ms.PublishEvent', { dialogId: this.conv, event: { type: 'ContentEvent', contentType: 'text/plain', message: text } },
        20000, metadata);
      if (r.code === 200) {
        this.acked.add(text);
        this.run.acked++;
        return;
      }
      this.run.refused++;
    } catch (e) {
      this.run.unanswered++;
    }
    if (!this.stopped && this.ws && this.waiting && this.waiting.text === text) setTimeout(() => this.send(true), 250);
  }

  async reconnect() {
    this.reconnects++;
    this.run.reconnects++;
    for (let k = 0; !this.stopped; k++) {
      try {
        await this.open();
        const s = await this.req('ms.SubscribeMessagingEvents', { dialogId: this.conv, fromSeq: this.seq + 1 });
        if (s.code !== 200) throw new Error(`subscribe: ${s.code}`);
        await sleep(300);  // the replay of what was stored meanwhile (its own text, if stored)
        if (this.waiting) this.send(true);
        return;
      } catch (e) {
        if (this.ws) this.ws.terminate();
        this.ws = null;
        await sleep(200);
      }
    }
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close();
  }
}

let current = null;  // the running cluster, stopped on any exit
async function oneRun(n) {
  const c = await startCluster(3, 240000, { PARLEY_NODE_ARGS: `--lease-ms ${cfg.leaseMs} --log-level warn` });
  current = c;
  const run = { cfg, replyTimes: [], acked: 0, refused: 0, unanswered: 0, reconnects: 0 };
  try {
    const ca = fs.readFileSync(c.listening[0].ca);
    Object.assign(run, { ca, host: new URL(c.cluster.https).host, acc: c.demo.account, skill: c.demo.skills.general });
    // Consumers, 20 at a time, through the balancer.
    const talkers = [];
    for (let b = 0; b < cfg.conversations; b += 20) {
      await Promise.all(Array.from({ length: Math.min(20, cfg.conversations - b) }, async (_, k) => {
        const r = await request('POST', `${c.cluster.https}/api/account/${run.acc}/signup`, { ca });
        if (r.status !== 200) throw new Error(`signup: ${r.status} ${r.text}`);
        const t = new Talker(run, b + k, r.json.jwt);
        await t.start();
        talkers.push(t);
      }));
    }
    const byConv = new Map(talkers.map((t) => [t.conv, t]));
    for (const t of talkers) t.schedule(Math.random() * cfg.thinkMs);
    await sleep(cfg.beforeS * 1000);

    // The killed node's conversations: the lease table just before the kill.
    const leases = psqlJson(c.cluster.store, "SELECT coalesce(json_agg(json_build_array(conversation, node)), '[]') FROM conversation_leases WHERE epoch > 0");
    const owned = new Set(leases.filter(([conv, node]) => node === cfg.kill && byConv.has(conv)).map(([conv]) => conv));
    const pid = Number(fs.readFileSync(path.join(c.dir, `${cfg.kill}.pid`), 'utf8'));
    const killAt = now();
    process.kill(pid, `SIG${cfg.signal}`);
    const before = run.replyTimes.filter((x) => x >= killAt - 10000 && x < killAt).length / 10;
    await sleep(cfg.afterS * 1000);
    const endAt = now();
    const after = run.replyTimes.filter((x) => x >= endAt - 10000 && x < endAt).length / 10;
    for (const t of talkers) t.stop();
    await sleep(3000);  // writes in flight land

    // What the store holds.
    const rows = psqlJson(c.cluster.store, "SELECT coalesce(json_agg(json_build_array(conversation, originator_role, event_json::json->>'message')), '[]') FROM messages WHERE event_json::json->>'type' = 'ContentEvent'");
    const stored = new Map();  // conv -> Map(text -> {consumer, bot})
    for (const [conv, role, msg] of rows) {
      if (!stored.has(conv)) stored.set(conv, new Map());
      const m = stored.get(conv);
      const key = role === 'CONSUMER' ? msg : msg.replace(/^echo : /, '');
      if (!m.has(key)) m.set(key, { consumer: 0, bot: 0 });
      m.get(key)[role === 'CONSUMER' ? 'consumer' : 'bot']++;
    }
    let lost = 0;
    let dupReplies = 0;
    let dupConsumer = 0;
    let dupServer = 0;
    for (const t of talkers) {
      const m = stored.get(t.conv) || new Map();
      for (const text of t.acked) if (!m.has(text) || m.get(text).consumer === 0) lost++;
      for (const [, v] of m) {
        if (v.bot > Math.max(1, v.consumer)) dupReplies += v.bot - Math.max(1, v.consumer);
      }
      for (const [text, v] of m) {
        if (v.consumer <= 1) continue;
        // Sent again by the client after an unknown outcome, or stored twice from one send.
        if ((t.sends.get(text) || 0) >= v.consumer) dupConsumer += v.consumer - 1;
        else dupServer += v.consumer - Math.max(1, t.sends.get(text) || 0);
      }
    }
    const takeover = [];
    let neverAnswered = 0;
    const gapsDead = [];
    const gapsLive = [];
    for (const t of talkers) {
      let last = null;
      let longest = 0;
      for (const r of t.replies) {
        if (last !== null) longest = Math.max(longest, r.at - last);
        last = r.at;
      }
      (owned.has(t.conv) ? gapsDead : gapsLive).push(longest);
      if (!owned.has(t.conv)) continue;
      const first = t.replies.find((r) => r.at > killAt);
      if (first) takeover.push(first.at - killAt);
      else neverAnswered++;
    }
    const sum = (xs) => ({ p50: pct(xs, 50), p99: pct(xs, 99), max: xs.length ? Math.max(...xs) : null });
    return {
      run: n,
      conversations: talkers.length,
      killed: cfg.kill,
      signal: cfg.signal,
      idempotencyKeys: cfg.keys,
      killedNodeConversations: owned.size,
      takeoverMs: sum(takeover),
      neverAnsweredAfterKill: neverAnswered,
      longestGapMs: { killedNode: sum(gapsDead), otherNodes: sum(gapsLive) },
      ackedLost: lost,
      duplicatedBotReplies: dupReplies,
      consumerResendsStoredTwice: dupConsumer,
      consumerMessagesStoredMoreThanSent: dupServer,
      acked: run.acked,
      publishesRefused: run.refused,
      publishesUnanswered: run.unanswered,
      reconnects: run.reconnects,
      turnsPerSecondBefore: before,
      turnsPerSecondAfter: after,
    };
  } finally {
    current = null;
    await stopCluster(c);
    fs.rmSync(c.dir, { recursive: true, force: true });
  }
}

(async () => {
  const results = [];
  for (let r = 1; r <= cfg.runs; r++) {
    const x = await oneRun(r);
    results.push(x);
    const f = (v) => (v === null ? '-' : v.toFixed(0));
    console.log(`run ${r}: ${x.killedNodeConversations}/${x.conversations} conversations on ${x.killed} (keys ${x.idempotencyKeys}); ` +
      `takeover p50 ${f(x.takeoverMs.p50)} ms p99 ${f(x.takeoverMs.p99)} ms max ${f(x.takeoverMs.max)} ms; ` +
      `longest gap (killed node's) p50 ${f(x.longestGapMs.killedNode.p50)} p99 ${f(x.longestGapMs.killedNode.p99)} max ${f(x.longestGapMs.killedNode.max)} ms, ` +
      `(others) max ${f(x.longestGapMs.otherNodes.max)} ms; never answered ${x.neverAnsweredAfterKill}; ` +
      `acked lost ${x.ackedLost}; duplicated bot replies ${x.duplicatedBotReplies}; client resends stored twice ${x.consumerResendsStoredTwice}, stored more often than sent ${x.consumerMessagesStoredMoreThanSent}; ` +
      `turns/s ${x.turnsPerSecondBefore.toFixed(0)} before, ${x.turnsPerSecondAfter.toFixed(0)} after; reconnects ${x.reconnects}`);
  }
  const out = JSON.stringify({ config: cfg, runs: results });
  console.log(out);
  if (cfg.json) fs.writeFileSync(cfg.json, out + '\n');
  const bad = results.some((x) => x.ackedLost || x.duplicatedBotReplies || x.neverAnsweredAfterKill ||
    x.consumerMessagesStoredMoreThanSent || (x.idempotencyKeys === 'on' && x.consumerResendsStoredTwice));
  process.exit(bad ? 3 : 0);
})().catch(fatal);
process.on('uncaughtException', fatal);
process.on('SIGINT', () => fatal(new Error('interrupted')));
async function fatal(e) {
  console.error(`failover: ${e.stack || e}`);
  if (current) {
    const c = current;
    current = null;
    await stopCluster(c);
    fs.rmSync(c.dir, { recursive: true, force: true });
  }
  process.exit(1);
}
