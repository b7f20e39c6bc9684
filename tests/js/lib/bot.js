'use strict';
// Runs echo_bot.js (or another script of tests/js taking the same arguments, e.g. ring_agent.js or
// watch_agent.js) as a child process with NODE_EXTRA_CA_CERTS and collects its JSON lines; send()
// writes a JSON line to its stdin.
const { spawn } = require('child_process');
const path = require('path');

class BotProcess {
  // `extraEnv`: more environment for the bot (echo_bot.js reads PARLEY_AGENT_HOST). `script`:
  // the file of tests/js to run.
  constructor(srv, account, username, password, prefix = 'echo', extraEnv = {}, script = 'echo_bot.js') {
    this.events = [];
    this.waiters = [];
    this.stderr = '';
    const env = Object.assign({}, process.env, {
      NODE_EXTRA_CA_CERTS: srv.caPath,
      NO_PROXY: '127.0.0.1,localhost',
      no_proxy: '127.0.0.1,localhost',
    }, extraEnv);
    delete env.HTTPS_PROXY;
    delete env.https_proxy;
    delete env.HTTP_PROXY;
    delete env.http_proxy;
    this.proc = spawn(process.execPath,
      [path.join(__dirname, '..', script), account, username, password, srv.httpsHost, prefix],
      { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let buf = '';
    this.proc.stdout.on('data', (d) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          this.events.push(JSON.parse(line));
        } catch (e) {
          this.events.push({ event: 'stdout', text: line });
        }
      }
      this._check();
    });
    this.proc.stderr.on('data', (d) => { this.stderr += d.toString(); });
  }

  _check() {
    this.waiters = this.waiters.filter((w) => {
      const hit = this.events.find(w.pred);
      if (hit) {
        clearTimeout(w.timer);
        w.resolve(hit);
        return false;
      }
      return true;
    });
  }

  waitFor(pred, label, timeoutMs = 10000) {
    const hit = this.events.find(pred);
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      w.timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`bot: timed out waiting for ${label}; events:\n${this.events.map((e) => JSON.stringify(e)).join('\n')}\n${this.stderr}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  send(obj) {
    this.proc.stdin.write(JSON.stringify(obj) + '\n');
  }

  errors() {
    return this.events.filter((e) => e.event === 'error');
  }

  stop() {
    return new Promise((resolve) => {
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) return resolve();
      this.proc.once('exit', () => resolve());
      this.proc.kill('SIGTERM');
    });
  }
}

module.exports = { BotProcess };
