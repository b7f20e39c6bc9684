'use strict';
// A manager's (or agent's) view of the account's conversations through node-agent-sdk 1.2.0's
// public API, as JSON lines on stdout: it logs in, subscribes to ExConversations with the filter
// in PARLEY_WATCH_FILTER (JSON; default: every open conversation of the account;
// "@self" in agentIds stands for the user's own id) and reports
// every change it is sent. Run as a child process with NODE_EXTRA_CA_CERTS=<data>/tls/ca.pem
// (tests/js/lib/bot.js, `script` 'watch_agent.js').
//
//   node watch_agent.js <account> <username> <password> <csdsHost>
//   (environment PARLEY_AGENT_HOST=HOST:PORT: log in and connect there, whatever CSDS says;
//   PARLEY_WATCH_AGENT_STATE=1: also subscribe to the user's own agent state and report it)
const { Agent } = require('node-agent-sdk');

const [account, username, password, csdsDomain] = process.argv.slice(2);
const emit = (o) => process.stdout.write(JSON.stringify(Object.assign({ watcher: username }, o)) + '\n');
const filter = JSON.parse(process.env.PARLEY_WATCH_FILTER || '{"convState":["OPEN"]}');
const pinned = process.env.PARLEY_AGENT_HOST;
const agent = new Agent(Object.assign({ accountId: account, username, password, csdsDomain, requestTimeout: 10000 },
  pinned ? { domains: { agentVep: pinned, asyncMessagingEnt: pinned } } : {}));

agent.on('connected', () => {
  emit({ event: 'connected', agentId: agent.agentId });
  // "@self" in agentIds: this user's own id (an agent may subscribe to its own conversations).
  const f = Object.assign({}, filter);
  if (Array.isArray(f.agentIds)) f.agentIds = f.agentIds.map((id) => (id === '@self' ? agent.agentId : id));
  agent.subscribeExConversations(f, (e, resp) => {
    emit({ event: 'subscribed', subscriptionId: resp && resp.subscriptionId, error: e ? JSON.stringify(e) : undefined });
  });
  if (process.env.PARLEY_WATCH_AGENT_STATE === '1') {
    agent.subscribeAgentsState({}, (e) => e && emit({ event: 'error', where: 'subscribeAgentsState', message: JSON.stringify(e) }));
  }
});

agent.on('routing.AgentStateNotification', (body) => {
  for (const change of body.changes) emit({ event: 'agent-state', type: change.type, availability: change.result.availability });
});

agent.on('cqm.ExConversationChangeNotification', (body) => {
  for (const change of body.changes) {
    emit({ event: 'change', type: change.type, convId: change.result.convId, result: change.result });
  }
});

agent.on('error', (err) => emit({ event: 'error', message: String((err && err.message) || err) }));
agent.on('closed', (code) => emit({ event: 'socket-closed', code }));
process.on('SIGTERM', () => {
  agent.dispose();
  process.exit(0);
});
