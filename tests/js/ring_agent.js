'use strict';
// An agent on the unmodified node-agent-sdk 1.2.0 that answers rings only when told (run as a
// child process with NODE_EXTRA_CA_CERTS=<data>/tls/ca.pem, like echo_bot.js). It reports on
// stdout, as JSON lines, its connection, its routing subscription, every ring of every
// RoutingTaskNotification change, and the answer to each command.
//
//   node ring_agent.js <account> <username> <password> <csdsHost>
//   (environment PARLEY_AGENT_HOST=HOST:PORT: log in and connect there, whatever CSDS says)
//
// Commands, one JSON line each on stdin: {"id":..., "ringId":..., "ringState":"ACCEPTED"|"REJECTED"}
// (routing.UpdateRingState); reported as {"event":"answered", id, ok, error?}.
const readline = require('readline');
const { Agent } = require('node-agent-sdk');

const [account, username, password, csdsDomain] = process.argv.slice(2);
const emit = (o) => process.stdout.write(JSON.stringify(Object.assign({ agent: username }, o)) + '\n');

const pinned = process.env.PARLEY_AGENT_HOST;
const agent = new Agent(Object.assign({ accountId: account, username, password, csdsDomain, requestTimeout: 10000 },
  pinned ? { domains: { agentVep: pinned, asyncMessagingEnt: pinned } } : {}));

agent.on('connected', () => {
  emit({ event: 'connected', agentId: agent.agentId });
  agent.setAgentState({ availability: 'ONLINE' }, (e) => {
    if (e) return emit({ event: 'error', where: 'setAgentState', message: JSON.stringify(e) });
    agent.subscribeRoutingTasks({}, (e2) => {
      if (e2) return emit({ event: 'error', where: 'subscribeRoutingTasks', message: JSON.stringify(e2) });
      emit({ event: 'subscribed' });
    });
  });
});

agent.on('routing.RoutingTaskNotification', (body) => {
  for (const change of body.changes)
    for (const ring of change.result.ringsDetails || [])
      emit({ event: 'ring', type: change.type, convId: change.result.conversationId, ringId: ring.ringId,
        ringState: ring.ringState });
});

agent.on('error', (err) => emit({ event: 'error', message: String((err && err.message) || err) }));

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    return emit({ event: 'error', where: 'stdin', message: `not JSON: ${line}` });
  }
  agent.updateRingState({ ringId: cmd.ringId, ringState: cmd.ringState }, (e) =>
    emit({ event: 'answered', id: cmd.id, ok: !e, error: e ? JSON.stringify(e) : undefined }));
});
