// Starts `parley serve --demo` on port 0 and a headless Debian Chromium; calls its REST API.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, '../..');
export const artifacts = resolve(repo, 'tests/artifacts/e2e');
// PARLEY_E2E_WEB serves another build of the console (e.g. an older one, to see a test fail).
export const webDist = process.env.PARLEY_E2E_WEB ? resolve(process.env.PARLEY_E2E_WEB) : resolve(repo, 'web/dist');

export function ensureWebBuilt() {
  if (existsSync(join(webDist, 'index.html')) && !process.env.PARLEY_E2E_REBUILD) return;
  const web = join(repo, 'web');
  if (!existsSync(join(web, 'node_modules'))) {
    const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: web, stdio: 'inherit' });
    if (r.status !== 0) throw new Error('npm ci in web/ failed');
  }
  const r = spawnSync('npm', ['run', 'build'], { cwd: web, stdio: 'inherit' });
  if (r.status !== 0) throw new Error('npm run build in web/ failed');
}

// One JSON REST call to the server at `base` (e.g. http://127.0.0.1:port); the parsed answer,
// or a thrown Error naming the call and the status when it is not 2xx.
export async function rest(base, method, path, bearer, body) {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: { 'Content-Type': 'application/json', ...(bearer ? { Authorization: `Bearer ${bearer}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path} → ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

// Resolves with {proc, listening, demo, dataDir, stop()} once both JSON lines were printed.
export async function startServer({ timeoutMs = 60000 } = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), 'parley-e2e-'));
  const cmd = process.env.PARLEY_BIN;
  if (!cmd || !existsSync(cmd)) throw new Error(`PARLEY_BIN is not set to the parley binary (got ${cmd ?? 'nothing'})`);
  const args = ['serve', '--demo', '--data', dataDir, '--listen', '127.0.0.1:0', '--tls-listen', '127.0.0.1:0', '--web', webDist];
  if (process.env.PARLEY_E2E_EXTRA_ARGS) args.push(...process.env.PARLEY_E2E_EXTRA_ARGS.split(' ').filter(Boolean));
  const proc = spawn(cmd, args, { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PARLEY_WEB_DIR: webDist } });
  const stderr = [];
  proc.stderr.on('data', (d) => {
    stderr.push(String(d));
    if (process.env.PARLEY_E2E_VERBOSE) process.stderr.write(d);
  });
  const lines = createInterface({ input: proc.stdout });
  const out = {};
  await new Promise((resolveP, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server printed no listening/demo lines in ${timeoutMs} ms; stderr:\n${stderr.join('').slice(-3000)}`)), timeoutMs);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited with ${code} before it was ready; stderr:\n${stderr.join('').slice(-3000)}`));
    });
    lines.on('line', (line) => {
      let j;
      try {
        j = JSON.parse(line);
      } catch {
        return;
      }
      if (j.event === 'listening') out.listening = j;
      if (j.event === 'demo') out.demo = j;
      if (out.listening && out.demo) {
        clearTimeout(timer);
        proc.removeAllListeners('exit');
        resolveP();
      }
    });
  });
  return {
    proc,
    ...out,
    dataDir,
    stderr: () => stderr.join(''),
    async stop() {
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        await new Promise((r) => {
          const t = setTimeout(() => {
            proc.kill('SIGKILL');
            r();
          }, 10000);
          proc.on('exit', () => {
            clearTimeout(t);
            r();
          });
        });
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function startBrowser() {
  const profile = mkdtempSync(join(tmpdir(), 'parley-chromium-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    ignoreHTTPSErrors: true,
    viewport: { width: 1280, height: 800 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-dev-shm-usage'],
  });
  return {
    ctx,
    async close() {
      await ctx.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

// Each test file writes its screenshots to its own folder (tests/artifacts/e2e/<file>/), emptied
// at its first shot, so test files run at once don't remove each other's.
const shotDir = join(artifacts, basename(process.argv[1] ?? 'e2e').replace(/\.test\.mjs$/, ''));
let shotNo = 0;
export async function shot(page, name) {
  if (shotNo === 0) rmSync(shotDir, { recursive: true, force: true });
  mkdirSync(shotDir, { recursive: true });
  shotNo += 1;
  const file = join(shotDir, `${String(shotNo).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
