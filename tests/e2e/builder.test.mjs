// End-to-end: the bot page's builder tools in headless Chromium against `parley serve --demo`.
// The Tester panel chats with the demo bot on MESSAGING and on CHAT (the WELCOME turn first),
// showing what the consumer sees; the Replay panel replays an exported transcript against a
// changed draft of the bot's function and shows the differences turn by turn, and against the
// deployed version shows none. Screenshots (desktop and phone width) go to
// tests/artifacts/builder/.
//
//   PARLEY_BIN=build/default/src/app/parley node --test tests/e2e/builder.test.mjs

import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ensureWebBuilt, repo, rest as restAt, startBrowser, startServer } from './harness.mjs';

const T = 20000;
const shots = resolve(repo, 'tests/artifacts/builder');

let server;
let browser;
let base;
let acc;
let bearer;
let bot;

const rest = (method, path, body) => restAt(base, method, `/api/v1/accounts/${acc}/${path}`, bearer, body);

// A full-page screenshot at desktop width and one at phone width.
async function shotBoth(page, name) {
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: join(shots, `${name}-phone.png`), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });
}

async function openBotPage() {
  const page = await browser.ctx.newPage();
  await page.goto(`${base}/login?account=${encodeURIComponent(acc)}&next=${encodeURIComponent(`/bots/${bot.id}`)}`);
  await page.getByLabel('Account id').fill(acc);
  await page.getByLabel('Username').fill(server.demo.admin.username);
  await page.getByLabel('Password').fill(server.demo.admin.password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL((u) => u.pathname === `/bots/${bot.id}`, { timeout: T });
  await page.locator('.tester-panel').waitFor({ timeout: T });
  return page;
}

before(async () => {
  ensureWebBuilt();
  rmSync(shots, { recursive: true, force: true });
  server = await startServer();
  base = server.listening.http;
  acc = server.demo.account;
  bearer = (await restAt(base, 'POST', `/api/account/${acc}/login?v=1.3`, null, server.demo.admin)).bearer;
  bot = (await rest('GET', 'bots'))[0];
  browser = await startBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

describe('builder tools', () => {
  test('the tester chats with the bot on messaging, turn by turn', async () => {
    const page = await openBotPage();
    const panel = page.locator('.tester-panel');
    await panel.getByLabel('Channel').selectOption('MESSAGING');
    await panel.getByRole('button', { name: 'Start conversation' }).click();
    await page.locator('.tester-info', { hasText: 'MESSAGING conversation' }).waitFor({ timeout: T });
    for (const [i, text] of ['hello', 'and again'].entries()) {
      await panel.getByLabel('Consumer message').fill(text);
      await panel.getByRole('button', { name: 'Send' }).click();
      await panel.locator('.tester-turn').nth(i).waitFor({ timeout: T });
    }
    const turns = panel.locator('.tester-turn');
    assert.equal(await turns.count(), 2);
    assert.equal(await turns.nth(0).getAttribute('data-verdict'), 'OK');
    assert.match(await turns.nth(0).locator('.consumer-sees').innerText(), /echo : hello/);
    assert.match(await turns.nth(1).innerText(), /Consumer: and again/);
    assert.match(await turns.nth(1).locator('.consumer-sees').innerText(), /echo : and again/);
    // The function input and raw response are there to read.
    await turns.nth(1).locator('summary', { hasText: 'Function input' }).click();
    assert.match(await turns.nth(1).locator('pre').first().innerText(), /"message": "and again"/);
    await panel.scrollIntoViewIfNeeded();
    await shotBoth(page, 'tester-messaging');
    await page.close();
  });

  test('the tester opens a chat with the bot’s WELCOME turn first', async () => {
    const page = await openBotPage();
    const panel = page.locator('.tester-panel');
    await panel.getByLabel('Channel').selectOption('CHAT');
    await panel.getByRole('button', { name: 'Start conversation' }).click();
    const first = panel.locator('.tester-turn').first();
    await first.waitFor({ timeout: T });
    assert.match(await first.innerText(), /WELCOME event/);
    assert.match(await first.locator('.consumer-sees').innerText(), /Hi! I am the demo echo bot/);
    await panel.getByLabel('Consumer message').fill('hi from chat');
    await panel.getByRole('button', { name: 'Send' }).click();
    await panel.locator('.tester-turn').nth(1).waitFor({ timeout: T });
    assert.match(await panel.locator('.tester-turn').nth(1).innerText(), /echo : hi from chat/);
    assert.match(await page.locator('.tester-info').innerText(), /CHAT conversation/);
    await panel.scrollIntoViewIfNeeded();
    await shotBoth(page, 'tester-chat');
    await page.close();
  });

  test('replay against a changed version shows the differences turn by turn', async () => {
    // An exported transcript: a tester session of the deployed echo function.
    const session = await rest('POST', `bots/${bot.id}/tester`, { functionVersion: 'deployed' });
    for (const text of ['one', 'two']) await rest('POST', `bots/${bot.id}/tester/${session.sessionId}/messages`, { text });
    const transcript = await rest('GET', `bots/${bot.id}/tester/${session.sessionId}`);
    // A changed draft: another text, and a close on "two".
    await rest('PUT', `functions/${bot.functionUuid}`, {
      code: `function lambda(input, callback) {
  const m = input.payload.message;
  if (m === 'two') return callback(null, { messages: ['Bye!'], context: { action: 'CLOSE_CONVERSATION' } });
  callback(null, { messages: ['You wrote: ' + m] });
}
`,
    });
    const page = await openBotPage();
    const panel = page.locator('.replay-panel');
    await panel.getByLabel('Function version').fill('draft');
    await page.setInputFiles('#replay-file', { name: 'transcript.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(transcript)) });
    await panel.getByRole('button', { name: 'Replay' }).click();
    const changed = panel.locator('.replay-turn[data-status="CHANGED"]');
    await changed.first().waitFor({ timeout: T });
    assert.equal(await changed.count(), 2);
    assert.match(await panel.locator('.replay-out .alert').first().innerText(), /2 of 2 turns replayed .*: 0 same, 2 changed/);
    const first = await changed.nth(0).locator('.replay-diff').innerText();
    assert.match(first, /texts\[0\]/);
    assert.match(first, /“echo : one”/);
    assert.match(first, /“You wrote: one”/);
    const second = await changed.nth(1).locator('.replay-diff').innerText();
    assert.match(second, /action/);
    assert.match(second, /CLOSE_CONVERSATION/);
    await panel.scrollIntoViewIfNeeded();
    await shotBoth(page, 'replay-differences');

    // Against the deployed version (what recorded the transcript) nothing differs.
    await panel.getByLabel('Function version').fill('deployed');
    await panel.getByRole('button', { name: 'Replay' }).click();
    await panel.locator('.replay-out .alert', { hasText: '0 changed' }).waitFor({ timeout: T });
    assert.equal(await panel.locator('.replay-turn').count(), 0);
    await page.close();
  });
});
