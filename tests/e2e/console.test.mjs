// End-to-end: the web console in headless Chromium against a real `parley serve --demo`.
// The seed's whole flow: create a function from the custom-integration template, edit, deploy,
// create a bot, agree to the disclaimer, Test Connection, a consumer chats in the widget, clicks a
// quick reply, the bot transfers to a human skill, an agent accepts, sees the intent, replies,
// closes. Screenshots go to tests/artifacts/e2e/console/.
//
// Every page runs under the server's Content-Security-Policy; a policy violation reported by
// Chromium on any page fails the test (the console must need nothing the policy refuses).
//
//   PARLEY_BIN=build/default/src/app/parley node --test tests/e2e/console.test.mjs

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ensureWebBuilt, rest as restAt, shot, startBrowser, startServer } from './harness.mjs';

const T = 20000; // per-step wait

let server;
let browser;
let base;
let acc;
// Content-Security-Policy violations Chromium reported on any page of the test, with what was
// refused and where.
const violations = [];
async function watchViolations(ctx) {
  await ctx.exposeBinding('__parleyCspViolation', ({ page }, v) => violations.push({ page: page.url(), ...v }));
  await ctx.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      const el = e.target && e.target.outerHTML ? e.target.outerHTML.slice(0, 300) : String(e.target);
      window.__parleyCspViolation({ directive: e.violatedDirective, blocked: e.blockedURI, source: `${e.sourceFile}:${e.lineNumber}:${e.columnNumber}`, sample: e.sample, element: el });
    }, true);
  });
}

const rest = (method, path, bearer, body) => restAt(base, method, path, bearer, body);
const list = (v, k) => (Array.isArray(v) ? v : (v?.[k] ?? v?.items ?? []));

async function uiLogin(page, who, next = '') {
  await page.goto(`${base}/login?account=${encodeURIComponent(acc)}${next ? `&next=${encodeURIComponent(next)}` : ''}`);
  await page.getByLabel('Account id').fill(acc);
  await page.getByLabel('Username').fill(who.username);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL((u) => !u.pathname.startsWith('/login'), { timeout: T });
}

function botCode(humanSkill) {
  return `// Parley e2e bot: greets with quick replies, transfers "billing" to a human skill.
function lambda(input, callback) {
  const text = String((input.payload && input.payload.message) || '').trim().toLowerCase();
  console.info('turn', { text: text });
  if (text === 'billing') {
    return callback(null, {
      messages: ['Connecting you to our billing team.'],
      context: {
        intentId: 'billing', intentName: 'Billing question', confidenceScore: 0.93,
        action: 'TRANSFER', actionParameters: { skill: ${JSON.stringify(humanSkill)} }
      }
    });
  }
  callback(null, {
    messages: [
      { delay: 2, typing: true },
      { structuredContent: { message: 'Hi! What do you need help with?', quickReplies: {
        type: 'quickReplies', itemsPerRow: 8, replies: [
          { type: 'button', title: 'Billing', click: { actions: [{ type: 'publishText', text: 'billing' }] } },
          { type: 'button', title: 'Something else', click: { actions: [{ type: 'publishText', text: 'other' }] } }
        ] } } }
    ],
    context: { intentId: 'greeting', intentName: 'Greeting', confidenceScore: 0.8 }
  });
}
`;
}

before(async () => {
  ensureWebBuilt();
  server = await startServer();
  base = server.listening.http;
  acc = server.demo.account;
  browser = await startBrowser();
  await watchViolations(browser.ctx);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

describe('console', () => {
  test('login validates the form and shows the API error', async () => {
    const page = await browser.ctx.newPage();
    await page.goto(`${base}/login`);
    await page.getByLabel('Account id').fill('');
    await page.getByRole('button', { name: 'Log in' }).click();
    assert.match(await page.locator('#' + (await page.getByLabel('Account id').getAttribute('id')) + '-err').innerText(), /account id/i);
    await page.getByLabel('Account id').fill(acc);
    await page.getByLabel('Username').fill(server.demo.admin.username);
    await page.getByLabel('Password').fill('definitely-wrong');
    await page.getByRole('button', { name: 'Log in' }).click();
    const alert = page.locator('.login-card .alert-error');
    await alert.waitFor({ timeout: T });
    assert.match(await alert.innerText(), /HTTP 401|password|credential|unauthor/i);
    await shot(page, 'login-error');
    await page.close();
  });

  test('structured content: errors with paths, valid card rendered by json-pollock', async () => {
    const page = await browser.ctx.newPage();
    await uiLogin(page, server.demo.admin, '/richcontent');
    await page.waitForURL(/\/richcontent/);
    await page.locator('[data-editor="sc"] .cm-content').waitFor();
    const set = async (text) => {
      await page.locator('[data-editor="sc"] .cm-content').click();
      await page.keyboard.press('Control+A');
      await page.keyboard.insertText(text);
    };
    await set(JSON.stringify({ type: 'bogus', elements: [{ type: 'button', title: 'x', click: { actions: [{ type: 'publishText' }] } }] }));
    await page.getByRole('button', { name: 'Validate and preview' }).click();
    await page.locator('.sc-errors').waitFor({ timeout: T });
    assert.match(await page.locator('.sc-errors').innerText(), /\/structuredContent|type/);
    await shot(page, 'richcontent-invalid');
    await set(JSON.stringify({ type: 'vertical', elements: [{ type: 'text', text: 'Hello from the e2e test' }, { type: 'button', title: 'Press me', click: { actions: [{ type: 'publishText', text: 'pressed' }] } }] }));
    await page.getByRole('button', { name: 'Validate and preview' }).click();
    await page.locator('.sc-valid').waitFor({ timeout: T });
    await page.locator('.sc-preview .lp-json-pollock').waitFor({ timeout: T });
    assert.match(await page.locator('.sc-preview').innerText(), /Hello from the e2e test/);
    await shot(page, 'richcontent-valid');
    await page.close();
  });

  test('the seed flow: function → bot → widget → quick reply → transfer → agent → close', async () => {
    // Discovery over REST: the demo agent's skill is the human skill the bot transfers to.
    const login = await rest('POST', `/api/account/${acc}/login?v=1.3`, null, server.demo.admin);
    const bearer = login.bearer;
    const users = list(await rest('GET', `/api/v1/accounts/${acc}/users`, bearer), 'users');
    const skillsBefore = list(await rest('GET', `/api/v1/accounts/${acc}/skills`, bearer), 'skills');
    const agentUser = users.find((u) => (u.loginName ?? u.username) === server.demo.agent.username);
    assert.ok(agentUser, 'the demo agent is listed');
    const agentSkillId = String((agentUser.skills ?? [])[0] ?? '');
    const humanSkill = skillsBefore.find((s) => String(s.id) === agentSkillId);
    assert.ok(humanSkill, `the demo agent has a skill (skills: ${JSON.stringify(agentUser.skills)})`);

    const admin = await browser.ctx.newPage();
    await uiLogin(admin, server.demo.admin);

    // 1. A skill for the bot, through the Skills page.
    const botSkillName = `e2e-bot-${Date.now() % 100000}`;
    await admin.goto(`${base}/skills`);
    await admin.getByLabel('New skill name').fill(botSkillName);
    await admin.getByRole('button', { name: 'Add skill' }).click();
    await admin.locator(`tr[data-skill="${botSkillName}"]`).waitFor({ timeout: T });
    const botSkill = list(await rest('GET', `/api/v1/accounts/${acc}/skills`, bearer), 'skills').find((s) => s.name === botSkillName);
    assert.ok(botSkill);

    // 2. Bot form → "Create function" shortcut (custom-integration event preselected).
    await admin.goto(`${base}/bots/new`);
    await admin.getByLabel('Name', { exact: true }).fill('E2E bot');
    await admin.getByRole('link', { name: 'Create function' }).click();
    await admin.waitForURL(/\/functions\/new\?event=bot_connectors_custom_integration/);
    assert.equal(await admin.getByLabel('Event').inputValue(), 'bot_connectors_custom_integration');
    await admin.locator('.sample-payload').waitFor({ timeout: T });
    await shot(admin, 'function-new-template');
    const fnName = `e2e_bot_${Date.now() % 100000}`;
    await admin.getByLabel('Name').fill(fnName);
    await admin.getByRole('button', { name: 'Create function' }).click();
    await admin.waitForURL((u) => /^\/functions\/[^/]+$/.test(u.pathname) && u.pathname !== '/functions/new', { timeout: T });
    const fnUuid = new URL(admin.url()).pathname.split('/')[2];
    assert.notEqual(fnUuid, 'new');

    // 3. Edit the code in CodeMirror, save, deploy.
    const cm = admin.locator('[data-editor="code"] .cm-content');
    await cm.waitFor({ timeout: T });
    const doc = await admin.evaluate(() => document.querySelector('[data-editor="code"]').cmView.state.doc.toString());
    assert.match(doc, /function lambda/, 'the editor holds the template code');
    const replaceCode = async (code) => {
      await cm.click();
      await admin.keyboard.press('Control+A');
      await admin.keyboard.insertText(code);
    };
    // First a broken edit: the deploy's build error is shown in place.
    await replaceCode('function lambda(input, callback) {\n  callback(null, { messages: [\n}\n');
    await admin.getByRole('button', { name: 'Deploy', exact: true }).click(); // saves, then deploys
    const deployError = admin.locator('.deploy-error');
    await deployError.waitFor({ timeout: 60000 });
    assert.match(await deployError.innerText(), /error|unexpected|syntax/i);
    await shot(admin, 'function-deploy-error');
    await replaceCode(botCode(humanSkill.name));
    await admin.getByRole('button', { name: 'Save', exact: true }).click();
    await admin.locator('.dirty', { hasText: 'Saved' }).waitFor({ timeout: T });
    await admin.getByRole('button', { name: 'Deploy', exact: true }).click();
    await admin.locator('.fn-state[data-state="Productive"]').waitFor({ timeout: 60000 });
    await shot(admin, 'function-deployed');

    // Test-invoke with the sample payload edited to "billing".
    await admin.getByRole('tab', { name: 'Test' }).click();
    const pl = admin.locator('[data-editor="payload"] .cm-content');
    await pl.click();
    await admin.keyboard.press('Control+A');
    await admin.keyboard.insertText(JSON.stringify({ headers: [], payload: { message: 'billing', convId: 'e2e', context: { lpEvent: {}, lpSdes: {} } } }, null, 2));
    await admin.getByRole('button', { name: 'Invoke' }).click();
    await admin.locator('.invoke-result').waitFor({ timeout: T });
    const inv = await admin.locator('.invoke-result').innerText();
    assert.match(inv, /TRANSFER/);
    assert.match(inv, /Duration [\d.]+ ms/);
    await shot(admin, 'function-test-invoke');

    // 4. Back to the bot form (draft kept), pick the function, agree, create, test, start.
    await admin.getByRole('link', { name: 'Back to bot' }).click();
    await admin.waitForURL(/\/bots\/new/);
    assert.equal(await admin.getByLabel('Name', { exact: true }).inputValue(), 'E2E bot');
    await admin.getByRole('button', { name: 'Refresh' }).click();
    await admin.locator(`#bot-function option[value="${fnUuid}"]`).waitFor({ state: 'attached', timeout: T });
    await admin.locator('#bot-function').selectOption(fnUuid);
    await admin.getByRole('button', { name: 'Create bot' }).click();
    assert.match(await admin.locator('#bot-disclaimer-err').innerText(), /Data Disclaimer/, 'the disclaimer is required');
    await admin.getByLabel('I agree to the Data Disclaimer').check();
    await admin.getByLabel(botSkillName).check();
    await admin.locator('#esc-skill').selectOption(humanSkill.name);
    // Test Connection on the unsaved form: the form's values are tested, nothing is saved.
    await admin.getByRole('button', { name: 'Test Connection' }).click();
    const unsaved = admin.locator('.connection-result');
    await unsaved.waitFor({ timeout: 40000 });
    assert.equal(await unsaved.getAttribute('data-ok'), 'true', await unsaved.innerText());
    assert.match(await unsaved.innerText(), /latency \d+ ms · tested the form’s values \(not saved\)/);
    assert.match(new URL(admin.url()).pathname, /^\/bots\/new$/);
    const botsBefore = list(await rest('GET', `/api/v1/accounts/${acc}/bots`, bearer), 'bots');
    assert.ok(!botsBefore.some((b) => b.name === 'E2E bot'), 'testing the form saved no bot');
    await shot(admin, 'bot-form-test-unsaved');
    await shot(admin, 'bot-form');
    await admin.getByRole('button', { name: 'Create bot' }).click();
    await admin.waitForURL(/\/bots\/[^/]+\?created=1/, { timeout: T });
    await admin.getByRole('button', { name: 'Test Connection' }).click();
    const result = admin.locator('.connection-result');
    await result.waitFor({ timeout: 40000 });
    assert.equal(await result.getAttribute('data-ok'), 'true', await result.innerText());
    assert.match(await result.innerText(), /latency \d+ ms/);
    assert.doesNotMatch(await result.innerText(), /not saved/, 'an unchanged saved bot is tested as stored');
    // An edited (unsaved) form is tested with its values, not the stored ones.
    await admin.locator('#esc-timeout').fill('100');
    await admin.getByRole('button', { name: 'Test Connection' }).click();
    await admin.locator('.connection-result .tested-form').waitFor({ timeout: 40000 });
    await admin.locator('#esc-timeout').fill('10000');
    await admin.getByRole('button', { name: 'Save', exact: true }).click();
    await admin.locator('.alert', { hasText: 'Saved.' }).waitFor({ timeout: T });
    await admin.getByRole('button', { name: 'Start', exact: true }).click();
    await admin.locator('.bot-state[data-state="ONLINE"]').waitFor({ timeout: T });
    assert.match(await admin.locator('.status-help').innerText(), /Answering/);
    await shot(admin, 'bot-online');

    // 5. The consumer widget: chat, typing indicator, quick reply.
    const widget = await browser.ctx.newPage();
    await widget.goto(`${base}/widget?account=${encodeURIComponent(acc)}&skill=${encodeURIComponent(botSkill.id)}`);
    await widget.locator('.conn-status[data-state="open"]').waitFor({ timeout: T });
    await widget.getByRole('textbox', { name: 'Message' }).fill('hello');
    await widget.getByRole('button', { name: 'Send' }).click();
    await widget.locator('.typing:not([hidden])').waitFor({ timeout: T });
    await shot(widget, 'widget-typing');
    const chip = widget.locator('.quick-replies .chip', { hasText: 'Billing' });
    await chip.waitFor({ timeout: T });
    assert.ok(await widget.locator('.typing').isHidden(), 'the typing indicator hides when the reply arrives');
    await shot(widget, 'widget-quick-replies');
    await chip.click();
    await widget.locator('.bubble.mine', { hasText: 'billing' }).waitFor({ timeout: T });
    await widget.locator('.bubble.theirs', { hasText: 'Connecting you to our billing team.' }).waitFor({ timeout: T });
    // The bot's messages say who wrote them; after the transfer the consumer sees it is waiting.
    assert.equal(await widget.locator('.bubble.theirs', { hasText: 'Connecting you' }).locator('.who').innerText(), 'Bot');
    await widget.locator('.widget-wait[data-state="waiting"]').waitFor({ timeout: T });
    assert.match(await widget.locator('.widget-wait').innerText(), /Waiting for the next available agent/);
    await shot(widget, 'widget-transferred');

    // 6. The agent workspace: queue → accept → intent → reply → close.
    const agent = await browser.ctx.newPage();
    await uiLogin(agent, server.demo.agent, '/agent');
    await agent.waitForURL(/\/agent/);
    await agent.locator('.conn-status[data-state="open"]').waitFor({ timeout: T });
    // Roles: the agent has no Functions/Bots/Users entries in the menu.
    assert.equal(await agent.locator('.nav-list a', { hasText: 'Functions' }).count(), 0);
    assert.equal(await agent.locator('.nav-list a', { hasText: 'Users' }).count(), 0);
    const item = agent.locator('.queue-item').filter({ has: agent.getByRole('button', { name: 'Accept' }) }).first();
    await item.waitFor({ timeout: 30000 });
    assert.match(await item.locator('.ttr').innerText(), /left|overdue|unknown/);
    await shot(agent, 'agent-queue');
    await item.getByRole('button', { name: 'Accept' }).click();
    await agent.locator('.transcript .bubble', { hasText: 'hello' }).waitFor({ timeout: T });
    // The time to response stays in sight after the accept.
    assert.match(await agent.locator('.conv-ttr .ttr').innerText(), /left|overdue/);
    await agent.locator('.insight-pane .intent-item', { hasText: 'Billing question' }).first().waitFor({ timeout: T });
    await shot(agent, 'agent-conversation');
    await agent.getByRole('textbox', { name: 'Reply' }).fill('Hi, Alex from billing here. How can I help?');
    await agent.getByRole('button', { name: 'Send' }).click();
    await widget.locator('.bubble.theirs', { hasText: 'Alex from billing' }).waitFor({ timeout: T });
    assert.equal(await widget.locator('.bubble.theirs', { hasText: 'Alex from billing' }).locator('.who').innerText(), 'Agent');
    assert.match(await widget.locator('.widget-wait[data-state="answered"]').innerText(), /talking to: Agent/);
    await shot(widget, 'widget-agent-reply');
    // An in-page confirmation (never the browser's dialog).
    agent.once('dialog', () => assert.fail('the console used a native browser dialog'));
    await agent.getByRole('button', { name: 'Close conversation' }).click();
    const confirmClose = agent.locator('dialog.confirm-dialog[open]');
    await confirmClose.waitFor({ timeout: T });
    assert.match(await confirmClose.innerText(), /consumer is told/);
    await shot(agent, 'agent-confirm-close');
    await confirmClose.locator('[data-confirm="yes"]').click();
    // Once closed, the conversation's actions stay disabled.
    await agent.waitForFunction(() => [...document.querySelectorAll('button')].some((b) => b.textContent === 'Close conversation' && b.disabled && !b.getAttribute('aria-busy')), null, { timeout: T });
    await widget.locator('.system', { hasText: 'closed' }).waitFor({ timeout: T });
    await shot(agent, 'agent-closed');
    await shot(widget, 'widget-closed');

    // 7. The bot's turns are listed with timings.
    await admin.reload();
    await admin.locator('.turns .turn').first().waitFor({ timeout: T });
    await shot(admin, 'bot-turns');

    // 8. Phone width.
    for (const p of [widget, agent, admin]) await p.setViewportSize({ width: 375, height: 740 });
    await shot(widget, 'narrow-widget');
    await shot(agent, 'narrow-agent');
    await admin.goto(`${base}/functions/${fnUuid}`);
    await admin.locator('[data-editor="code"] .cm-content').waitFor({ timeout: T });
    await shot(admin, 'narrow-function');
    for (const p of [widget, agent, admin]) await p.close();
  });

  test('a live chat in the widget: the bot greets first, the consumer ends the conversation', async () => {
    const widget = await browser.ctx.newPage();
    await widget.goto(`${base}/widget?account=${encodeURIComponent(acc)}&skill=${encodeURIComponent(server.demo.skills.general)}&channel=CHAT`);
    await widget.locator('.conn-status[data-state="open"]').waitFor({ timeout: T });
    assert.equal(await widget.locator('.widget-head h1').innerText(), 'Live chat');
    const greeting = widget.locator('.bubble.theirs', { hasText: 'demo echo bot' });
    await greeting.waitFor({ timeout: 30000 });
    assert.equal(await greeting.locator('.who').innerText(), 'Bot');
    await widget.locator('.widget-wait[data-state="answered"]', { hasText: 'Bot' }).waitFor({ timeout: T });
    await widget.getByRole('textbox', { name: 'Message' }).fill('ping');
    await widget.getByRole('button', { name: 'Send' }).click();
    await widget.locator('.bubble.theirs', { hasText: 'echo : ping' }).waitFor({ timeout: T });
    await shot(widget, 'widget-chat');
    // On a phone, a long exchange keeps the newest message and the composer in view.
    await widget.setViewportSize({ width: 390, height: 844 });
    for (let i = 1; i <= 8; i++) {
      await widget.getByRole('textbox', { name: 'Message' }).fill(`line ${i}`);
      await widget.getByRole('button', { name: 'Send' }).click();
      await widget.locator('.bubble.theirs', { hasText: `echo : line ${i}` }).waitFor({ timeout: T });
    }
    await widget.waitForFunction(() => {
      const s = document.querySelector('.widget-scroll');
      return s && s.scrollHeight > s.clientHeight && s.scrollTop + s.clientHeight >= s.scrollHeight - 2;
    }, null, { timeout: T });
    const composerBox = await widget.locator('.widget .composer').boundingBox();
    assert.ok(composerBox && composerBox.y + composerBox.height <= 844 + 1, `the composer is in view: ${JSON.stringify(composerBox)}`);
    await shot(widget, 'widget-chat-phone');
    await widget.setViewportSize({ width: 1280, height: 800 });
    await widget.getByRole('button', { name: 'End conversation' }).click();
    await widget.locator('.system', { hasText: 'closed' }).waitFor({ timeout: T });
    assert.ok(await widget.getByRole('button', { name: 'Start a new conversation' }).isVisible());
    assert.ok(await widget.locator('.end-conv').isHidden());
    await widget.close();
  });

  test('the bot form warns when another bot or human agents share the skills it picks', async () => {
    const page = await browser.ctx.newPage();
    await uiLogin(page, server.demo.admin, '/bots/new');
    await page.waitForURL(/\/bots\/new/);
    const warnings = page.locator('.routing-warnings');
    await page.getByLabel('general', { exact: true }).waitFor({ timeout: T });
    assert.equal(await warnings.innerText(), '', 'no skill picked, no warning');
    // The demo bot serves "general" alone (the demo agent holds "human" and "escalation").
    await page.getByLabel('general', { exact: true }).check();
    await warnings.locator('.alert').first().waitFor({ timeout: T });
    const onGeneral = await warnings.innerText();
    assert.match(onGeneral, /also served by bot “demo-echo-bot”/);
    assert.doesNotMatch(onGeneral, /human agent/);
    await page.getByLabel('human', { exact: true }).check();
    await warnings.locator('.alert', { hasText: 'human agent' }).waitFor({ timeout: T });
    assert.match(await warnings.innerText(), /“human” is held by human agent “agent”/);
    await shot(page, 'bot-form-routing-warning');
    await page.getByLabel('general', { exact: true }).uncheck();
    await page.getByLabel('human', { exact: true }).uncheck();
    assert.equal(await warnings.innerText(), '');
    await page.close();
  });

  test('the test invoke shows what the connector would do, with problems and warnings by path', async () => {
    const login = await rest('POST', `/api/account/${acc}/login?v=1.3`, null, server.demo.admin);
    // Quick replies on the first message, then an invalid card, then a legacy card: the connector
    // drops the invalid one, and the legacy card (sent last) hides the chips.
    const code = `function lambda(input, callback) {
  callback(null, {
    messages: [
      { structuredContent: { message: 'Pick one', quickReplies: { type: 'quickReplies', itemsPerRow: 2, replies: [
        { type: 'button', title: 'Yes', click: { actions: [{ type: 'publishText', text: 'yes' }] } }] } } },
      { structuredContent: { type: 'vertical', elements: [{ type: 'no-such-element' }] } }
    ],
    context: { structuredContent: { type: 'vertical', elements: [{ type: 'text', text: 'A card' }] } }
  });
}
`;
    const fn = await rest('POST', `/api/v1/accounts/${acc}/functions`, login.bearer, { name: `e2e_review_${Date.now() % 100000}`, event: 'bot_connectors_custom_integration', code });
    const page = await browser.ctx.newPage();
    await uiLogin(page, server.demo.admin, `/functions/${fn.uuid}`);
    await page.getByRole('tab', { name: 'Test' }).click();
    await page.getByRole('button', { name: 'Invoke' }).click();
    const review = page.locator('.connector-review');
    await review.waitFor({ timeout: T });
    assert.equal(await review.getAttribute('data-verdict'), 'PARTIAL');
    const problems = await page.locator('.review-problems').innerText();
    assert.match(problems, /\/messages\/1\/structuredContent/);
    const warnings = await page.locator('.review-warnings').innerText();
    assert.match(warnings, /\/messages\/0/);
    assert.match(warnings, /quick-replies-hidden/);
    assert.match(await review.innerText(), /Pick one/);
    await shot(page, 'function-test-connector-review');
    await page.setViewportSize({ width: 390, height: 844 });
    await shot(page, 'function-test-connector-review-phone');
    await page.setViewportSize({ width: 1280, height: 800 });

    // Unsaved edits are not dropped by leaving the page: the console asks first.
    await page.getByRole('tab', { name: 'Code' }).click();
    await page.locator('[data-editor="code"] .cm-content').click();
    await page.keyboard.press('Control+End');
    await page.keyboard.insertText('\n// an unsaved edit\n');
    await page.locator('.dirty', { hasText: 'Unsaved' }).waitFor({ timeout: T });
    await page.getByRole('link', { name: 'All functions' }).click();
    const leave = page.locator('dialog.confirm-dialog[open]');
    await leave.waitFor({ timeout: T });
    assert.match(await leave.innerText(), /not saved/);
    await shot(page, 'function-unsaved-guard');
    await leave.locator('[data-confirm="no"]').click();
    assert.match(new URL(page.url()).pathname, new RegExp(`/functions/${fn.uuid}$`));
    assert.match(await page.locator('[data-editor="code"] .cm-content').innerText(), /an unsaved edit/);
    await page.getByRole('tab', { name: 'Test' }).click();

    // On Chat the quick replies themselves are refused.
    // The WELCOME preset: the first turn of a chat, checked for CHAT.
    await page.getByRole('button', { name: 'Chat start (WELCOME)' }).click();
    assert.equal(await page.locator('#test-channel').inputValue(), 'CHAT');
    assert.match(await page.locator('[data-editor="payload"] .cm-content').innerText(), /"WELCOME"/);
    await page.getByRole('button', { name: 'Invoke' }).click();
    await page.locator('.connector-review h3', { hasText: 'Chat' }).waitFor({ timeout: T });
    assert.match(await page.locator('.review-problems').innerText(), /quick-replies-not-supported/);
    await page.close();
  });

  test('no page of the console needed what the Content-Security-Policy refuses', () => {
    // One exception, made by the browser and not by the console: text typed into a CodeMirror
    // editor with Input.insertText (as an input method commits it) makes Chromium's editing
    // code insert markup with a style attribute into the editor (no script source), which the
    // policy refuses; CodeMirror redraws the line from its own state, so nothing is lost.
    const fromEditing = (v) => v.directive === 'style-src-attr' && v.source === ':0:0' && /data-editor=/.test(v.element);
    assert.deepEqual(violations.filter((v) => !fromEditing(v)), []);
  });
});
