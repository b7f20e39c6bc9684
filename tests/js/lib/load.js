'use strict';
// Consumers under load against the demo echo bot, for the crash and shutdown tests: each
// consumer has its own conversation and keeps `inFlight` publishes outstanding, each with a
// unique text, and records what the server acknowledged, refused or never answered.
const { Consumer } = require('./consumer');
const { rest } = require('./server');

class LoadConsumer {
  constructor(srv, account, tag) {
    this.c = new Consumer(srv, account);
    this.tag = tag;
    this.next = 0;
    this.acked = new Map(); // text -> sequence
    this.refused = new Map(); // text -> error response (the server answered with an error)
    this.unanswered = []; // [{text, sentAt}] the socket closed before any answer
    this.stopped = false;
  }

  async open(skill) {
    await this.c.signup();
    await this.c.connect();
    const r = await this.c.request('cm.ConsumerRequestConversation', { skillId: skill });
    if (r.code !== 200) throw new Error(`conversation request failed: ${JSON.stringify(r)}`);
    this.convId = r.body.conversationId;
  }

  // Keeps `inFlight` publishes outstanding until stop() or until the server refuses one or the
  // socket closes.
  run(inFlight) {
    const loops = [];
    for (let i = 0; i < inFlight; i++) loops.push(this._loop());
    this.done = Promise.all(loops);
    return this.done;
  }

  async _loop() {
    while (!this.stopped && this.c.closed === null) {
      const text = `${this.tag}-m${this.next++}`;
      const sentAt = Date.now();
      let r;
      try {
        r = await this.c.request('ms.PublishEvent', {
          dialogId: this.convId,
          event: { type: 'ContentEvent', contentType: 'text/plain', message: text },
        }, {});
      } catch (e) {
        this.unanswered.push({ text, sentAt });
        return;
      }
      if (r.code === 200) {
        this.acked.set(text, r.body.sequence);
      } else {
        this.refused.set(text, r);
        return;
      }
    }
  }

  stop() {
    this.stopped = true;
  }

  close() {
    this.c.close();
  }
}

// Starts `n` consumers on `skill`, each with its own conversation.
async function startConsumers(srv, account, skill, n, tag) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const lc = new LoadConsumer(srv, account, `${tag}-c${i}`);
    await lc.open(skill);
    out.push(lc);
  }
  return out;
}

// The stored messages of a conversation (REST, paged by fromSeq).
async function storedMessages(srv, bearer, account, convId) {
  const out = [];
  let from = 0;
  for (;;) {
    const r = await rest(srv, bearer, 'GET', account, `conversations/${convId}/messages?fromSeq=${from}&limit=1000`);
    if (r.status !== 200) throw new Error(`messages of ${convId}: ${r.status} ${r.text}`);
    if (r.json.length === 0) return out;
    out.push(...r.json);
    from = r.json[r.json.length - 1].sequence + 1;
  }
}

function textOf(m) {
  try {
    const ev = typeof m.event === 'string' ? JSON.parse(m.event) : m.event;
    return ev && ev.type === 'ContentEvent' ? ev.message : undefined;
  } catch (e) {
    return undefined;
  }
}

// What the store holds for the consumers' conversations: every consumer text with the number
// of echo replies the bot stored for it.
async function tally(srv, bearer, account, consumers) {
  const stored = new Map(); // consumer text -> echo count
  for (const lc of consumers) {
    for (const m of await storedMessages(srv, bearer, account, lc.convId)) {
      const text = textOf(m);
      if (text === undefined) continue;
      const role = m.role;
      if (role === 'CONSUMER') {
        if (!stored.has(text)) stored.set(text, 0);
      } else if (text.startsWith('echo : ')) {
        const t = text.slice('echo : '.length);
        stored.set(t, (stored.get(t) || 0) + 1);
      }
    }
  }
  return stored;
}

// Counts over a tally: acknowledged messages not answered, messages answered more than once,
// messages stored without an acknowledgement (and not refused: a refused one must not be stored).
function summarize(consumers, stored) {
  let acked = 0;
  let unansweredAcked = 0;
  let duplicated = 0;
  let storedUnacked = 0;
  let storedRefused = 0;
  let unansweredStored = 0;
  let lostAcked = 0;
  const examples = [];
  for (const lc of consumers) {
    for (const [text] of lc.acked) {
      acked++;
      if (!stored.has(text)) {
        lostAcked++;
        examples.push(`lost ${text}`);
      } else if (stored.get(text) === 0) {
        unansweredAcked++;
        if (examples.length < 10) examples.push(`unanswered ${text}`);
      }
    }
    for (const [text] of lc.refused) if (stored.has(text)) storedRefused++;
    for (const { text } of lc.unanswered) if (stored.has(text)) storedUnacked++;
  }
  for (const [text, n] of stored) {
    if (n > 1) {
      duplicated++;
      if (examples.length < 10) examples.push(`answered ${n} times: ${text}`);
    }
    if (n === 0) unansweredStored++;
  }
  return { acked, lostAcked, unansweredAcked, unansweredStored, duplicated, storedUnacked, storedRefused, examples };
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// Polls the tally until every stored consumer message is answered (or the time is up).
async function waitAnswered(srv, bearer, account, consumers, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let stored;
  for (;;) {
    stored = await tally(srv, bearer, account, consumers);
    let open = 0;
    for (const [, n] of stored) if (n === 0) open++;
    if (open === 0 || Date.now() > deadline) return stored;
    await sleep(500);
  }
}

module.exports = { LoadConsumer, startConsumers, tally, summarize, waitAnswered, storedMessages, sleep };
