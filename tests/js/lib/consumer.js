'use strict';
// A consumer client over the consumer socket (Messaging Window API, v=3), written on `ws` 8.
const WebSocket = require('ws');
const { request } = require('./http');

class Consumer {
  constructor(srv, account) {
    this.srv = srv;
    this.account = account;
    this.nextId = 1;
    this.pending = new Map();
    this.notifications = [];
    this.waiters = [];
    this.closed = null;
  }

  async signup() {
    const r = await request('POST', `${this.srv.https}/api/account/${this.account}/signup`, { ca: this.srv.ca });
    if (r.status !== 200 || !r.json || !r.json.jwt) throw new Error(`signup failed: ${r.status} ${r.text}`);
    this.jwt = r.json.jwt;
    this.consumerId = JSON.parse(Buffer.from(this.jwt.split('.')[1], 'base64url').toString()).sub;
    return this.jwt;
  }

  connect({ header = true } = {}) {
    const url = `wss://${this.srv.httpsHost}/ws_api/account/${this.account}/messaging/consumer?v=3`;
    const headers = header && this.jwt ? { Authorization: `jwt ${this.jwt}` } : {};
    this.ws = new WebSocket(url, { ca: this.srv.ca, headers, maxPayload: 8 << 20 });
    this.closed = null;
    this.ws.on('message', (data) => this._onMessage(data.toString()));
    this.ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      for (const [, p] of this.pending) p.reject(new Error(`socket closed (${code}) before the response`));
      this.pending.clear();
      this._check();
    });
    return new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
      this.ws.once('unexpected-response', (req, res) => reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)));
    });
  }

  _onMessage(text) {
    let m;
    try {
      m = JSON.parse(text);
    } catch (e) {
      this.notifications.push({ kind: 'garbage', text });
      return;
    }
    if (m.kind === 'resp' && this.pending.has(String(m.reqId))) {
      const p = this.pending.get(String(m.reqId));
      this.pending.delete(String(m.reqId));
      p.resolve(m);
    } else {
      this.notifications.push(m);
    }
    this._check();
  }

  _check() {
    this.waiters = this.waiters.filter((w) => {
      const hit = w.pred(this);
      if (hit) {
        clearTimeout(w.timer);
        w.resolve(hit);
        return false;
      }
      return true;
    });
  }

  // Sends a request; resolves with the whole response envelope.
  request(type, body, extra = {}) {
    const id = String(this.nextId++);
    const msg = Object.assign({ kind: 'req', id, type, body }, extra);
    return this.sendRaw(JSON.stringify(msg), id);
  }

  sendRaw(text, id, timeoutMs = 5000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no response to request ${id} within ${timeoutMs} ms: ${text.slice(0, 200)}`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (m) => { clearTimeout(timer); resolve(m); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      this.ws.send(text);
    });
  }

  // Waits until pred(this) returns a truthy value.
  waitFor(pred, label, timeoutMs = 8000) {
    const hit = pred(this);
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      w.timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`timed out waiting for ${label}; notifications so far:\n` +
          this.notifications.map((n) => JSON.stringify(n).slice(0, 400)).join('\n')));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  // All message records seen on ms.MessagingEventNotification.
  records() {
    const out = [];
    for (const n of this.notifications)
      if (n.type === 'ms.MessagingEventNotification') for (const c of n.body.changes) out.push(c);
    return out;
  }

  contentRecords() {
    const seen = new Set();
    return this.records().filter((r) => {
      if (r.event.type !== 'ContentEvent') return false;
      if (seen.has(r.sequence)) return false;
      seen.add(r.sequence);
      return true;
    });
  }

  conversationChanges() {
    const out = [];
    for (const n of this.notifications)
      if (n.type === 'cqm.ExConversationChangeNotification') for (const c of n.body.changes) out.push(c);
    return out;
  }

  async publishText(convId, text) {
    const r = await this.request('ms.PublishEvent', {
      dialogId: convId,
      event: { type: 'ContentEvent', contentType: 'text/plain', message: text },
    });
    if (r.code !== 200) throw new Error(`publish failed: ${JSON.stringify(r)}`);
    return r.body.sequence;
  }

  close() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
  }
}

module.exports = { Consumer };
