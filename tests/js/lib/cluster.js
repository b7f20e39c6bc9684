'use strict';
// tools/cluster.sh driven from the tests: start it (resolves once the demo line is out), read the
// lines it prints later, stop it.
const path = require('path');
const { spawn } = require('child_process');
const { tempDataDir, PARLEY_BIN } = require('./server');

const SCRIPT = path.resolve(__dirname, '../../../tools/cluster.sh');

// Starts the cluster; resolves {proc, dir, stderr(), events(), listening[], cluster, demo}.
function startCluster(n, timeoutMs = 240000, env = {}) {
  const dir = tempDataDir('cluster');
  const proc = spawn('bash', [SCRIPT, String(n)], {
    env: Object.assign({}, process.env, { PARLEY_BIN, PARLEY_CLUSTER_DIR: dir }, env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let parsed = [];
  proc.stderr.on('data', (d) => { stderr += d.toString(); });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGTERM');
      reject(new Error(`cluster did not start within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`cluster.sh exited early (${code})\n${stdout}\n${stderr}`));
    });
    proc.stdout.on('data', (d) => {
      stdout += d.toString();
      // Whole lines only (a chunk may end inside one).
      parsed = stdout.split('\n').slice(0, -1).filter((l) => l.trim()).map((l) => JSON.parse(l));
      const demo = parsed.find((o) => o.event === 'demo');
      if (!demo) return;
      clearTimeout(timer);
      proc.removeAllListeners('exit');
      resolve({
        proc,
        dir,
        stderr: () => stderr,
        // Every line printed so far (the later ones: {"event":"postgres",…} after SIGUSR1).
        events: () => parsed,
        listening: parsed.filter((o) => o.event === 'listening'),
        cluster: parsed.find((o) => o.event === 'cluster'),
        demo,
      });
    });
  });
}

function stopCluster(c) {
  return new Promise((resolve) => {
    if (c.proc.exitCode !== null) return resolve(c.proc.exitCode);
    c.proc.once('exit', (code) => resolve(code));
    c.proc.kill('SIGTERM');
  });
}

module.exports = { startCluster, stopCluster };
