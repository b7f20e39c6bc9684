'use strict';
// Our own echo bot, written against node-agent-sdk 1.2.0's public API (run as a child process
// with NODE_EXTRA_CA_CERTS=<data>/tls/ca.pem). It reports what happens as JSON lines on stdout
// so the test can assert on them.
//
//   node echo_bot.js <account> <username> <password> <csdsHost> [prefix]
//   (environment PARLEY_AGENT_HOST=HOST:PORT: log in and connect there, whatever CSDS says)
//
// Behaviour: goes ONLINE, subscribes to its conversations and routing tasks, accepts WAITING
// rings, reads the history of each conversation it joins, marks consumer messages READ and
// answers "<prefix> : <text>" in order. "#close" closes the conversation; "#transfer <prefix>
// <skillId>" (addressed to this bot by its prefix) moves it back to the queue of that skill. On a
// dropped connection it reconnects.
const { Agent } = require('node-agent-sdk');

const [account, username, password, csdsDomain, prefix = 'echo'] = process.argv.slice(2);
const emit = (o) => process.stdout.write(JSON.stringify(Object.assign({ bot: username }, o)) + '\n');

// PARLEY_AGENT_HOST=HOST:PORT pins the login and the socket to that node (the SDK's own `domains`
// option, which overrides what CSDS answers: in a cluster CSDS names the balancer).
const pinned = process.env.PARLEY_AGENT_HOST;
const agent = new Agent(Object.assign({ accountId: account, username, password, csdsDomain, requestTimeout: 10000 },
  pinned ? { domains: { agentVep: pinned, asyncMessagingEnt: pinned } } : {}));
const joined = new Set(); // conversations whose history we requested
const handled = new Set(); // "<dialogId>:<sequence>" already answered
let connected = false;
let reconnectTimer = null;

function scheduleReconnect() {
  if (reconnectTimer) return;
  reconnectTimer = setTimeout(() => {
    reconnectTimer = null;
    if (!connected) {
      emit({ event: 'reconnecting' });
      agent.reconnect();
    }
  }, 500);
}

agent.on('connected', () => {
  connected = true;
  joined.clear();
  emit({ event: 'connected', agentId: agent.agentId });
  agent.setAgentState({ availability: 'ONLINE' }, (e) => e && emit({ event: 'error', where: 'setAgentState', message: JSON.stringify(e) }));
  agent.subscribeExConversations({ agentIds: [agent.agentId], convState: ['OPEN'] }, (e, resp) => {
    emit({ event: 'subscribed', subscriptionId: resp && resp.subscriptionId, error: e ? JSON.stringify(e) : undefined });
  });
  agent.subscribeRoutingTasks({}, (e) => e && emit({ event: 'error', where: 'subscribeRoutingTasks', message: JSON.stringify(e) }));
});

agent.on('routing.RoutingTaskNotification', (body) => {
  for (const change of body.changes) {
    if (change.type !== 'UPSERT') continue;
    for (const ring of change.result.ringsDetails) {
      if (ring.ringState !== 'WAITING') continue;
      agent.updateRingState({ ringId: ring.ringId, ringState: 'ACCEPTED' }, (e) => {
        emit({ event: 'accepted', convId: change.result.conversationId, ok: !e, error: e ? JSON.stringify(e) : undefined });
      });
    }
  }
});

agent.on('cqm.ExConversationChangeNotification', (body) => {
  for (const change of body.changes) {
    const convId = change.result.convId;
    const details = change.result.conversationDetails;
    if (change.type === 'DELETE') {
      joined.delete(convId);
      emit({ event: 'deleted', convId, state: details && details.state });
      continue;
    }
    if (joined.has(convId) || details.state !== 'OPEN') continue;
    joined.add(convId);
    const consumer = details.participants.find((p) => p.role === 'CONSUMER');
    emit({ event: 'joined', convId, myRole: details.getMyRole(), participants: details.participants });
    agent.getUserProfile(consumer && consumer.id, (e, sdes) => {
      emit({ event: 'profile', convId, ok: !e && Array.isArray(sdes) });
    });
    agent.subscribeMessagingEvents({ dialogId: convId, fromSeq: 0 }, (e) => {
      if (e) emit({ event: 'error', where: 'subscribeMessagingEvents', message: JSON.stringify(e) });
    });
  }
});

agent.on('ms.MessagingEventNotification', (body) => {
  for (const c of body.changes) {
    if (!c.event || c.event.type !== 'ContentEvent') continue;
    const key = `${c.dialogId}:${c.sequence}`;
    if (handled.has(key)) continue;
    handled.add(key);
    if (c.originatorId === agent.agentId || (c.isMe && c.isMe())) continue;
    // Answer consumers only (other agents' messages are not echoed).
    if (c.originatorMetadata && c.originatorMetadata.role && c.originatorMetadata.role !== 'CONSUMER') continue;
    const text = String(c.event.message);
    emit({ event: 'message', convId: c.dialogId, sequence: c.sequence, text, role: c.originatorMetadata && c.originatorMetadata.role });
    agent.publishEvent({ dialogId: c.dialogId, event: { type: 'AcceptStatusEvent', status: 'READ', sequenceList: [c.sequence] } });
    if (text === '#close') {
      agent.updateConversationField({ conversationId: c.dialogId, conversationField: [{ field: 'ConversationStateField', conversationState: 'CLOSE' }] },
        (e) => emit({ event: 'closed-conversation', convId: c.dialogId, ok: !e, error: e ? JSON.stringify(e) : undefined }));
    } else if (text.startsWith(`#transfer ${prefix} `)) {
      const skill = text.slice(`#transfer ${prefix} `.length).trim();
      agent.updateConversationField({
        conversationId: c.dialogId,
        conversationField: [
          { field: 'ParticipantsChange', type: 'REMOVE', role: 'ASSIGNED_AGENT' },
          { field: 'Skill', type: 'UPDATE', skill },
        ],
      }, (e) => emit({ event: 'transferred', convId: c.dialogId, skill, ok: !e, error: e ? JSON.stringify(e) : undefined }));
    } else {
      agent.publishEvent({ dialogId: c.dialogId, event: { type: 'ContentEvent', contentType: 'text/plain', message: `${prefix} : ${text}` } },
        (e, r) => emit({ event: 'echoed', convId: c.dialogId, text, sequence: r && r.sequence, error: e ? JSON.stringify(e) : undefined }));
    }
  }
});

agent.on('error', (err) => {
  emit({ event: 'error', message: String((err && err.message) || err) });
  if (!connected) scheduleReconnect();
});
agent.on('closed', (code) => {
  connected = false;
  emit({ event: 'socket-closed', code });
  scheduleReconnect();
});
process.on('SIGTERM', () => {
  agent.dispose();
  process.exit(0);
});
