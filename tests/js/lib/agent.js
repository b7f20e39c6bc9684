'use strict';
// A raw agent/bot client over the brand socket (`/messaging/brand/{bearer}`, v=2.1): it sends
// request envelopes with LivePerson's internal names and collects responses and notifications,
// without the SDK's own checks in between.
const { ProtocolSocket } = require('./protocol_socket');

class AgentSocket extends ProtocolSocket {
  constructor(srv, account, bearer) {
    super(srv, account);
    this.bearer = bearer;
  }

  // Resolves when open; rejects with {status, body} when the upgrade is refused.
  connect() {
    return this._open(
      `wss://${this.srv.httpsHost}/ws_api/account/${this.account}/messaging/brand/${this.bearer}?v=2.1`, {});
  }

  // Sends a request; resolves with the whole response envelope.
  request(type, body, timeoutMs = 5000) {
    const id = String(this.nextId++);
    return this.sendRaw(JSON.stringify({ kind: 'req', id, type, body }), id, timeoutMs);
  }

  // Conversation ids seen in ExConversationChange UPSERTs so far.
  conversationIds() {
    const out = new Set();
    for (const n of this.notifications)
      if (n.type === '.ams.aam.ExConversationChangeNotification')
        for (const c of n.body.changes) if (c.type === 'UPSERT') out.add(c.result.convId);
    return out;
  }
}

module.exports = { AgentSocket };
