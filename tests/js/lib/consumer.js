'use strict';
// A consumer client over the consumer socket (Messaging Window API, v=3).
const { request } = require('./http');
const { ProtocolSocket } = require('./protocol_socket');

class Consumer extends ProtocolSocket {
  async signup() {
    const r = await request('POST', `${this.srv.https}/api/account/${this.account}/signup`, { ca: this.srv.ca });
    if (r.status !== 200 || !r.json || !r.json.jwt) throw new Error(`signup failed: ${r.status} ${r.text}`);
    this.jwt = r.json.jwt;
    this.consumerId = JSON.parse(Buffer.from(this.jwt.split('.')[1], 'base64url').toString()).sub;
    return this.jwt;
  }

  // Resolves when open; rejects with {status, body} when the upgrade is refused.
  connect({ header = true } = {}) {
    const url = `wss://${this.srv.httpsHost}/ws_api/account/${this.account}/messaging/consumer?v=3`;
    return this._open(url, { headers: header && this.jwt ? { Authorization: `jwt ${this.jwt}` } : {} });
  }

  // Sends a request; resolves with the whole response envelope.
  request(type, body, extra = {}) {
    const id = String(this.nextId++);
    const msg = Object.assign({ kind: 'req', id, type, body }, extra);
    return this.sendRaw(JSON.stringify(msg), id);
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
}

module.exports = { Consumer };
