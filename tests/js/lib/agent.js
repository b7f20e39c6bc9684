'use strict';
// A raw agent/bot client over the brand socket (`/messaging/brand/{bearer}`, v=2.1), written on
// `ws` 8: it sends request envelopes with LivePerson's internal names and collects responses and
// notifications, without the SDK's own checks in between.
const WebSocket = require('ws');

class AgentSocket {
  constructor(srv, account, bearer) {
    this.srv = srv;
    this.account = account;
    this.bearer = bearer;
    this.nextId = 1;
    this.pending = new Map();
    this.notifications = [];
    this.closed = null;
  }

  // Resolves when open; rejects with {status} when the upgrade is refused.
  connect() {
    const url = `wss://${this.srv.httpsHost}/ws_api/account/${this.account}/messaging/brand/${this.bearer}?v=2.1`;
    this.ws = new WebSocket(url, { ca: this.srv.ca, maxPayload: 8 << 20 });
    this.ws.on('message', (data) => this._onMessage(data.toString()));
    this.ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      for (const [, p] of this.pending) p.reject(new Error(`socket closed (${code}) before the response`));
      this.pending.clear();
    });
    return new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('unexpected-response', (req, res) => {
        let body = '';
        res.on('data', (d) => { body += d.toString(); });
        res.on('end', () => {
          const e = new Error(`upgrade refused: HTTP ${res.statusCode} ${body}`);
          e.status = res.statusCode;
          e.body = body;
          reject(e);
        });
      });
      this.ws.once('error', reject);
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
  }

  // Sends a request; resolves with the whole response envelope.
  request(type, body, timeoutMs = 5000) {
    const id = String(this.nextId++);
    const text = JSON.stringify({ kind: 'req', id, type, body });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no response to ${type} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (m) => { clearTimeout(timer); resolve(m); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      this.ws.send(text);
    });
  }

  // Conversation ids seen in ExConversationChange UPSERTs so far.
  conversationIds() {
    const out = new Set();
    for (const n of this.notifications)
      if (n.type === '.ams.aam.ExConversationChangeNotification')
        for (const c of n.body.changes) if (c.type === 'UPSERT') out.add(c.result.convId);
    return out;
  }

  close() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
  }
}

module.exports = { AgentSocket };
