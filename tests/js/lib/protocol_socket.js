'use strict';
// What the agent and consumer clients share, written on `ws` 8: the socket, request envelopes
// matched to their responses by id, the notifications received, and waiting for a condition on
// them.
const WebSocket = require('ws');

class ProtocolSocket {
  constructor(srv, account) {
    this.srv = srv;
    this.account = account;
    this.nextId = 1;
    this.pending = new Map();
    this.notifications = [];
    this.waiters = [];
    this.closed = null;
  }

  // Opens `url`; resolves when open, rejects with {status, body} when the upgrade is refused.
  _open(url, options) {
    this.ws = new WebSocket(url, Object.assign({ ca: this.srv.ca, maxPayload: 8 << 20 }, options));
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

  // Sends `text` (a request with id `id`); resolves with the whole response envelope.
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

  close() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
  }
}

module.exports = { ProtocolSocket };
