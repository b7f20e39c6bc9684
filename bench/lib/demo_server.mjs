// Starts `parley serve --demo` for a whole-server benchmark: $PARLEY_BIN, a temporary data folder
// (named after `prefix`), plain HTTP on 127.0.0.1 port 0, no TLS listener, warnings only. Resolves
// once the server has printed its `listening` and `demo` lines, with the child process, the
// data folder and those lines by event name.
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import readline from 'node:readline';

export async function startDemoServer(prefix) {
  const bin = process.env.PARLEY_BIN;
  if (!bin) throw new Error('set PARLEY_BIN to the parley binary');
  const data = mkdtempSync(join(tmpdir(), prefix));
  const proc = spawn(bin, ['serve', '--demo', '--data', data, '--listen', '127.0.0.1:0',
    '--tls-listen', '', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: proc.stdout });
  const events = {};
  await new Promise((resolve, reject) => {
    lines.on('line', (l) => { try { const o = JSON.parse(l); events[o.event] = o; } catch { return; }
      if (events.listening && events.demo) resolve(); });
    proc.on('exit', (c) => reject(new Error(`parley exited with ${c}`)));
  });
  return { proc, data, events };
}
