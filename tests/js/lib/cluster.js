// tools/cluster.sh from a test: PostgreSQL, nats-server, HAProxy and N nodes, each in its own
// temporary folder, stopped with SIGTERM.

const path = require('path');
const { spawn } = require('child_process');
const { tempDataDir, PARLEY_BIN } = require('./server');

const SCRIPT = path.resolve(__dirname, '../../../tools/cluster.sh');

// Starts the cluster; resolves {proc, dir, lines: {listening[], cluster, demo}}.
function startCluster(n, timeoutMs = 240000, env = {}) {
  const dir = tempDataDir('cluster');
  const proc = spawn('bash', [SCRIPT, String(n)], {
    env: Object.assign({}, process.env, { PARLEY_BIN, PARLEY_CLUSTER_DIR: dir }, env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
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
      const parsed = stdout.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
      const demo = parsed.find((o) => o.event === 'demo');
      if (!demo) return;
      clearTimeout(timer);
      proc.removeAllListeners('exit');
      resolve({
        proc,
        dir,
        stderr: () => stderr,
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
