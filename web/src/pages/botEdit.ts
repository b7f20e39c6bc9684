import { api, asList, describeError } from '../lib/api';
import { busy, field, fmtDateTime, h, uid } from '../lib/h';
import { botOf, CUSTOM_INTEGRATION_EVENT, fnOf, isRefused, routingWarnings, skillsOf, turnsOf, usersOf, type Bot, type Fn, type Skill, type User } from '../lib/models';
import { alertBox, badge, confirmDialog, MessageSlot, pre, stateBadge, toast } from '../lib/ui';
import { botBodyOf, testConnectionCall, validateBot, type BotForm } from '../lib/validate';
import { replayPanel, testerPanel } from './botTools';
import type { PageContext } from '../main';

const DRAFT_KEY = 'parley.botDraft';


// Problems that block saving, keyed by field.

function actionLabel(a: Record<string, unknown>): string {
  const main = String(a.action ?? a.kind ?? a.type ?? 'action');
  return a.kind === 'STEP' || a.kind === 'SEND' ? String(a.type ?? main) : main;
}

export default async function botEditPage(root: HTMLElement, ctx: PageContext): Promise<() => void> {
  const isNew = !ctx.params.id;
  let bot: Bot | null = null;
  let stopped = false;
  const canSave = isNew ? ctx.can('bots.create') : ctx.can('bots.manage');
  root.append(h('p', { class: 'loading' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' Loading…'));
  let skills: Skill[] = [];
  try {
    if (!isNew) bot = botOf(await api('GET', `bots/${encodeURIComponent(ctx.params.id)}`));
  } catch (e) {
    root.replaceChildren(h('h1', null, 'Bot'), alertBox('error', describeError(e)), h('a', { href: '/bots' }, 'Back to bots'));
    return () => {};
  }
  try {
    skills = skillsOf(await api('GET', 'skills'));
  } catch {
    skills = [];
  }
  // Who else serves the bot's skills (for the routing warning); roles that can't list them see none.
  let otherBots: Bot[] = [];
  let users: User[] = [];
  try {
    otherBots = asList(await api('GET', 'bots'), 'bots').map(botOf);
  } catch {
    otherBots = [];
  }
  try {
    users = usersOf(await api('GET', 'users'));
  } catch {
    users = [];
  }
  root.replaceChildren();

  let draft: Partial<BotForm> = {};
  if (isNew) {
    try {
      draft = JSON.parse(sessionStorage.getItem(DRAFT_KEY) ?? '{}');
    } catch {
      draft = {};
    }
  }
  const init: BotForm = bot
    ? { name: bot.name, functionUuid: bot.functionUuid, disclaimerAccepted: bot.disclaimerAccepted, conversationTypes: bot.conversationTypes, skills: bot.skills, escalation: bot.escalation }
    : {
        name: draft.name ?? '',
        functionUuid: ctx.query.get('function') ?? draft.functionUuid ?? '',
        disclaimerAccepted: draft.disclaimerAccepted ?? false,
        conversationTypes: draft.conversationTypes ?? ['MESSAGING'],
        skills: draft.skills ?? [],
        escalation: draft.escalation ?? { skill: '', message: 'Let me connect you to an agent.', retries: 0, turnTimeoutMs: 10000 },
      };

  const msg = new MessageSlot();
  const errSlot = (id: string) => h('small', { class: 'field-error', id: `${id}-err` });
  const dis = !canSave;

  // --- Name and vendor
  const name = h('input', { id: 'bot-name', value: init.name, required: true, disabled: dis, autocomplete: 'off' });
  const nameErr = errSlot('bot-name');

  // --- AI connection: function picker
  const fnSelect = h('select', { id: 'bot-function', disabled: dis });
  const fnErr = errSlot('bot-function');
  const fnRefresh = h('button', { type: 'button', class: 'btn' }, 'Refresh');
  const saveDraft = () => sessionStorage.setItem(DRAFT_KEY, JSON.stringify(read()));
  const createFn = h(
    'a',
    {
      class: 'btn',
      href: `/functions/new?event=${CUSTOM_INTEGRATION_EVENT}&return=${encodeURIComponent(isNew ? '/bots/new' : `/bots/${ctx.params.id}`)}`,
      onclick: () => {
        if (isNew) saveDraft();
      },
    },
    'Create function',
  );
  const fnHint = h('small', { class: 'hint', id: 'bot-function-hint' });
  let fns: Fn[] = [];
  async function loadFunctions(): Promise<void> {
    const keep = fnSelect.value || init.functionUuid;
    fnSelect.replaceChildren(h('option', { value: '' }, 'Loading…'));
    try {
      fns = asList(await api('GET', 'functions'), 'functions').map(fnOf).filter((f) => f.event === CUSTOM_INTEGRATION_EVENT || f.uuid === keep);
      fnSelect.replaceChildren(
        h('option', { value: '' }, fns.length ? '— choose a function —' : '— no Custom Integration functions —'),
        ...fns.map((f) => h('option', { value: f.uuid, selected: f.uuid === keep }, `${f.name} (${f.state})`)),
      );
      updateFnHint();
    } catch (e) {
      fnSelect.replaceChildren(h('option', { value: '' }, '— could not load —'));
      fnHint.textContent = describeError(e);
    }
  }
  function updateFnHint(): void {
    const f = fns.find((x) => x.uuid === fnSelect.value);
    fnHint.textContent = !f ? 'Only functions of the Third-Party Bots Custom Integration event are listed.' : /productive|modified/i.test(f.state) ? `Deployed (${f.state}).` : `Not deployed (${f.state}): deploy it before testing the connection.`;
  }
  fnSelect.setAttribute('aria-describedby', 'bot-function-hint');
  fnSelect.addEventListener('change', updateFnHint);
  fnRefresh.addEventListener('click', () => void busy(fnRefresh, loadFunctions));

  const disclaimer = h('input', { type: 'checkbox', id: 'bot-disclaimer', checked: init.disclaimerAccepted, disabled: dis, required: true });
  const disclaimerErr = errSlot('bot-disclaimer');

  const testBtn = h('button', { type: 'button', class: 'btn', disabled: dis && isNew }, 'Test Connection');
  const testOut = h('div', { class: 'test-connection', 'aria-live': 'polite' });

  // --- Conversation types
  const ctBoxes = ['MESSAGING', 'CHAT'].map((t) => h('input', { type: 'checkbox', value: t, id: `ct-${t}`, checked: init.conversationTypes.includes(t), disabled: dis }));
  const ctErr = errSlot('ct');

  // --- Skills
  const skillBoxes = skills.map((s) => h('input', { type: 'checkbox', value: s.id, id: `sk-${s.id}`, checked: init.skills.includes(s.id) || init.skills.includes(s.name), disabled: dis }));
  const routingOut = h('div', { class: 'routing-warnings', 'aria-live': 'polite' });
  const renderRouting = () => {
    const warnings = routingWarnings(skillBoxes.filter((b) => b.checked).map((b) => b.value), skills, bot ? bot.id : null, otherBots, users);
    routingOut.replaceChildren(...warnings.map((w) => alertBox('warn', w)));
  };
  skillBoxes.forEach((b) => b.addEventListener('change', renderRouting));
  renderRouting();

  // --- Escalation
  const escSkill = h(
    'select',
    { id: 'esc-skill', disabled: dis },
    h('option', { value: '' }, '— none (escalate to the bot itself) —'),
    ...skills.map((s) => h('option', { value: s.name, selected: init.escalation.skill === s.id || init.escalation.skill === s.name }, s.name)),
  );
  const escMsg = h('input', { id: 'esc-message', value: init.escalation.message, disabled: dis });
  const escAgentMsg = h('input', { id: 'esc-agent-message', value: init.escalation.agentMessage ?? '', disabled: dis });
  const escFailMsg = h('input', { id: 'esc-failure-message', value: init.escalation.failureMessage ?? '', disabled: dis });
  const escRetries = h('input', { id: 'esc-retries', type: 'number', min: '0', max: '5', step: '1', value: String(init.escalation.retries), disabled: dis });
  const escTimeout = h('input', { id: 'esc-timeout', type: 'number', min: '100', max: '30000', step: '100', value: String(init.escalation.turnTimeoutMs), disabled: dis });
  const retriesErr = errSlot('esc-retries');
  const timeoutErr = errSlot('esc-timeout');

  const saveBtn = h('button', { type: 'submit', class: 'btn primary', disabled: dis, title: dis ? 'Your role cannot change bots' : '' }, isNew ? 'Create bot' : 'Save');

  // The saved bot's form values (JSON of read()), to tell an edited form from the stored bot.
  let savedForm = '';
  function read(): BotForm {
    return {
      name: name.value.trim(),
      functionUuid: fnSelect.value,
      disclaimerAccepted: disclaimer.checked,
      conversationTypes: ctBoxes.filter((b) => b.checked).map((b) => b.value),
      skills: skillBoxes.filter((b) => b.checked).map((b) => b.value),
      escalation: { skill: escSkill.value, message: escMsg.value, agentMessage: escAgentMsg.value, failureMessage: escFailMsg.value, retries: Number(escRetries.value), turnTimeoutMs: Number(escTimeout.value) },
    };
  }
  function showErrors(errs: Record<string, string>): boolean {
    const map: [string, HTMLElement, HTMLElement][] = [
      ['name', nameErr, name],
      ['functionUuid', fnErr, fnSelect],
      ['disclaimerAccepted', disclaimerErr, disclaimer],
      ['conversationTypes', ctErr, ctBoxes[0]],
      ['retries', retriesErr, escRetries],
      ['turnTimeoutMs', timeoutErr, escTimeout],
    ];
    let first: HTMLElement | null = null;
    for (const [k, slot, input] of map) {
      slot.textContent = errs[k] ?? '';
      if (errs[k]) {
        input.setAttribute('aria-invalid', 'true');
        input.setAttribute('aria-errormessage', slot.id);
        first ??= input;
      } else input.removeAttribute('aria-invalid');
    }
    first?.focus();
    return !first;
  }

  async function save(): Promise<boolean> {
    const f = read();
    if (!showErrors(validateBot(f))) {
      msg.show(alertBox('error', 'Fix the highlighted fields.'));
      return false;
    }
    const body = botBodyOf(f);
    try {
      if (isNew && !bot) {
        const created = botOf(await api('POST', 'bots', body));
        sessionStorage.removeItem(DRAFT_KEY);
        bot = created;
        toast('Bot created', 'ok');
        ctx.navigate(`/bots/${encodeURIComponent(created.id)}?created=1`, true);
        return true;
      }
      bot = botOf(await api('PUT', `bots/${encodeURIComponent(bot!.id)}`, body));
      savedForm = JSON.stringify(f);
      msg.ok('Saved.');
      renderStatus();
      return true;
    } catch (e) {
      msg.error(e);
      return false;
    }
  }

  async function testConnection(): Promise<void> {
    if (!disclaimer.checked) {
      showErrors({ disclaimerAccepted: 'You must agree to the Data Disclaimer before testing the connection.' });
      return;
    }
    const f = read();
    const call = testConnectionCall(bot ? bot.id : null, JSON.stringify(f) !== savedForm, f);
    if (call.unsaved && !showErrors(validateBot(f))) {
      testOut.replaceChildren(alertBox('error', 'Fix the highlighted fields to test the connection.'));
      return;
    }
    testOut.replaceChildren(h('p', { class: 'loading' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' Invoking the function…'));
    try {
      const r = (await api('POST', call.path, call.body)) as { ok?: boolean; latencyMs?: number; errors?: unknown[] };
      const errs = (r.errors ?? []).map((x) => (typeof x === 'string' ? x : JSON.stringify(x)));
      testOut.replaceChildren(
        h(
          'div',
          { class: `alert ${r.ok ? 'alert-ok' : 'alert-error'} connection-result`, role: r.ok ? 'status' : 'alert', 'data-ok': String(Boolean(r.ok)) },
          h('strong', null, r.ok ? 'Connection OK' : 'Connection failed'),
          typeof r.latencyMs === 'number' ? ` · latency ${r.latencyMs.toFixed(0)} ms` : '',
          call.unsaved ? h('span', { class: 'muted small tested-form' }, ' · tested the form’s values (not saved)') : null,
          errs.length ? h('ul', null, errs.map((x) => h('li', null, x))) : null,
        ),
      );
    } catch (e) {
      testOut.replaceChildren(alertBox('error', `Test Connection failed: ${describeError(e)}`));
    }
  }
  testBtn.addEventListener('click', () => void busy(testBtn, testConnection));

  // --- Status and turns
  const statusEl = h('div', { class: 'bot-status' });
  const turnsOut = h('div');
  const openTurns = new Set<string>();
  const turnsRefresh = h('button', { type: 'button', class: 'btn' }, 'Refresh turns');
  function renderStatus(): void {
    if (!bot) {
      statusEl.replaceChildren(h('span', { class: 'muted' }, 'Not created yet.'));
      return;
    }
    const online = /online|interruption/i.test(bot.status);
    const start = h('button', { type: 'button', class: 'btn primary', disabled: !ctx.can('bots.create') || online, title: ctx.can('bots.create') ? '' : 'Starting a bot needs the Admin role' }, 'Start');
    const stop = h('button', { type: 'button', class: 'btn', disabled: !ctx.can('bots.manage') || !online }, 'Stop');
    const act = (verb: 'start' | 'stop', btn: HTMLButtonElement) =>
      void busy(btn, async () => {
        try {
          const r = await api('POST', `bots/${encodeURIComponent(bot!.id)}/${verb}`, {});
          const nb = r && typeof r === 'object' && ('status' in (r as object) || 'id' in (r as object)) ? botOf(r) : null;
          bot = nb && nb.id ? nb : botOf(await api('GET', `bots/${encodeURIComponent(bot!.id)}`));
          renderStatus();
          toast(`Bot ${verb === 'start' ? 'started' : 'stopped'}`, 'ok');
        } catch (e) {
          msg.error(e);
        }
      });
    start.addEventListener('click', () => act('start', start));
    stop.addEventListener('click', () => act('stop', stop));
    const del = h('button', { type: 'button', class: 'btn danger', disabled: !ctx.can('bots.manage') }, 'Delete bot');
    del.addEventListener('click', () =>
      void busy(del, async () => {
        if (!(await confirmDialog('Delete bot', `Delete bot “${bot!.name}”? It stops answering at once; its conversations stay.`, 'Delete bot'))) return;
        try {
          await api('DELETE', `bots/${encodeURIComponent(bot!.id)}`);
          toast('Bot deleted', 'ok');
          ctx.navigate('/bots');
        } catch (e) {
          msg.error(e);
        }
      }),
    );
    if (/interruption/i.test(bot.status)) start.title = 'The bot is running; it leaves this state by itself (see below) or when stopped.';
    statusEl.replaceChildren(
      h('div', { class: 'row' }, h('span', null, 'Status: '), h('span', { class: 'bot-state', 'data-state': bot.status }, stateBadge(bot.status)), start, stop, del),
      h('p', { class: 'small status-help' }, statusHelp(bot.status)),
    );
  }

  async function loadTurns(): Promise<void> {
    if (!bot) return;
    try {
      const turns = turnsOf(await api('GET', `bots/${encodeURIComponent(bot.id)}/turns`));
      if (!turns.length) {
        turnsOut.replaceChildren(h('p', { class: 'muted' }, 'No turns yet. Chat with the bot in the consumer widget.'));
        return;
      }
      turnsOut.replaceChildren(
        h(
          'ol',
          { class: 'turns' },
          turns.map((t) => {
            const refused = t.actions.filter(isRefused);
            const timings = Object.entries(t.timings)
              .filter(([, v]) => typeof v === 'number')
              .map(([k, v]) => `${k} ${(v as number).toFixed(1)} ms`);
            return h(
              'li',
              { class: `turn ${refused.length || /error|discard/i.test(t.outcome) ? 'turn-bad' : ''}` },
              h(
                'details',
                { open: openTurns.has(t.id), ontoggle: (ev: Event) => ((ev.target as HTMLDetailsElement).open ? openTurns.add(t.id) : openTurns.delete(t.id)) },
                h(
                  'summary',
                  null,
                  h('span', { class: 'nowrap' }, fmtDateTime(t.ts)),
                  ' ',
                  stateBadge(t.outcome),
                  ' ',
                  h('span', { class: 'muted small' }, `conv ${t.conversation.slice(0, 8)}`),
                  ' ',
                  h('span', { class: 'timings' }, timings.join(' · ')),
                  ...t.actions.map((a) => [' ', badge(actionLabel(a), isRefused(a) ? 'bad' : 'neutral')]),
                  refused.length ? [' ', badge(`${refused.length} refused`, 'bad')] : null,
                ),
                t.error ? alertBox('error', t.error) : null,
                refused.length ? h('div', { class: 'alert alert-warn' }, h('strong', null, 'Refused: '), refused.map((a) => h('div', null, `${actionLabel(a)} ${a.status ?? ''}: ${a.message ?? a.reason ?? a.error ?? ''} ${a.code ? `(${a.code})` : ''}${a.path ? ` at ${a.path}` : ''}`))) : null,
                h('div', { class: 'grid-3' }, h('div', null, h('h4', null, 'Input'), pre(t.input)), h('div', null, h('h4', null, 'Response'), pre(t.response)), h('div', null, h('h4', null, 'Actions'), pre(t.actions))),
              ),
            );
          }),
        ),
      );
    } catch (e) {
      turnsOut.replaceChildren(alertBox('error', describeError(e)));
    }
  }
  turnsRefresh.addEventListener('click', () => void busy(turnsRefresh, loadTurns));

  const legend = (t: string) => h('legend', null, t);
  const form = h(
    'form',
    { class: 'form bot-form', novalidate: true },
    h('fieldset', { class: 'card' }, legend('Bot'), h('div', { class: 'field' }, h('label', { for: 'bot-name' }, 'Name'), name, nameErr), h('p', null, 'Vendor: ', h('strong', null, 'Custom Integration'), h('span', { class: 'muted' }, ' (LivePerson Functions)'))),
    h(
      'fieldset',
      { class: 'card' },
      legend('Connect to AI'),
      h('div', { class: 'field' }, h('label', { for: 'bot-function' }, 'Function'), h('div', { class: 'row' }, fnSelect, fnRefresh, createFn), fnHint, fnErr),
      h('div', { class: 'field checkbox' }, disclaimer, h('label', { for: 'bot-disclaimer' }, 'I agree to the Data Disclaimer'), disclaimerErr),
      h('p', { class: 'muted small' }, 'Conversation content is sent to the function you choose, which runs in this Parley installation and may call allowlisted outside services.'),
      h('div', { class: 'row' }, testBtn),
      testOut,
    ),
    h(
      'fieldset',
      { class: 'card' },
      legend('Conversation types'),
      h('div', { class: 'row' }, ctBoxes.map((b) => h('span', { class: 'checkbox' }, b, h('label', { for: b.id }, b.value === 'MESSAGING' ? 'Messaging' : 'Chat')))),
      ctErr,
    ),
    h(
      'fieldset',
      { class: 'card' },
      legend('Skills'),
      skills.length
        ? h('div', { class: 'chips-select' }, skillBoxes.map((b, i) => h('span', { class: 'checkbox' }, b, h('label', { for: b.id }, skills[i].name))))
        : h('p', { class: 'muted' }, 'No skills in this account. ', ctx.can('skills.write') ? h('a', { href: '/skills' }, 'Create skills') : ''),
      h('small', { class: 'hint' }, 'Who answers: a new conversation on one of these skills is offered to the least-loaded online agent serving the skill, bots and human agents alike; a bot alone on its skills answers all of them.'),
      routingOut,
    ),
    h(
      'fieldset',
      { class: 'card' },
      legend('Escalation policy'),
      field('Transfer to skill', escSkill, { hint: 'Where conversations go when the function fails or times out.' }),
      field('Transfer message to customer', escMsg, { hint: 'Sent to the consumer before an error escalation.' }),
      field('Transfer message to agent', escAgentMsg, { hint: 'A private note for the agent who receives the conversation.' }),
      field('Transfer failure message', escFailMsg, { hint: 'Sent to the consumer if the escalation itself fails.' }),
      h('div', { class: 'grid-2' }, h('div', { class: 'field' }, h('label', { for: 'esc-retries' }, 'Retries'), escRetries, retriesErr), h('div', { class: 'field' }, h('label', { for: 'esc-timeout' }, 'Turn timeout (ms)'), escTimeout, timeoutErr)),
    ),
    msg.el,
    h('div', { class: 'row' }, saveBtn, h('a', { class: 'btn', href: '/bots' }, 'Cancel')),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void busy(saveBtn, save);
  });

  const aside = h(
    'aside',
    { class: 'bot-aside' },
    h('section', { class: 'card', 'aria-labelledby': 'status-h' }, h('h2', { id: 'status-h' }, 'Status'), statusEl),
    bot && ctx.can('bots.tester') ? testerPanel(bot.id, bot.conversationTypes) : null,
    bot && ctx.can('bots.replay') ? replayPanel(bot.id) : null,
    bot ? h('section', { class: 'card', 'aria-labelledby': 'turns-h' }, h('div', { class: 'row between' }, h('h2', { id: 'turns-h' }, 'Recent turns'), turnsRefresh), turnsOut) : null,
  );
  root.append(h('div', { class: 'page-head' }, h('h1', null, isNew ? 'Add bot' : `Bot: ${bot!.name}`), h('div', { class: 'actions' })));
  if (!canSave) root.append(alertBox('info', 'Read-only: your role cannot change this bot.'));
  root.append(h('div', { class: 'bot-layout' }, form, aside));
  if (ctx.query.get('created')) msg.ok('Bot created. Test the connection, then start it.');
  renderStatus();
  await loadFunctions();
  if (bot) savedForm = JSON.stringify(read());
  if (bot) await loadTurns();
  if (isNew) name.focus();
  const timer = setInterval(() => {
    if (!stopped && bot && document.visibilityState === 'visible') void loadTurns();
  }, 10000);
  void uid;
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}

// What a bot state means and what to do about it.
export function statusHelp(status: string): string {
  switch (status.toUpperCase()) {
    case 'ONLINE':
      return 'Answering the conversations routed to its skills.';
    case 'OFFLINE':
      return 'Stopped: it answers nothing and gets no new conversations; its open ones go to its escalation skill. Start it to take conversations.';
    case 'VENDOR_INTERRUPTION':
      return 'Several turns in a row failed in the function or its response. It keeps answering; failed turns are escalated without retries. It is back ONLINE after the next successful turn: check Recent turns and the function’s logs.';
    case 'SERVICE_INTERRUPTION':
      return 'The platform cannot run its function (undeployed, deleted, or the runtime overloaded). It gets no new conversations and its consumers’ messages are escalated. Parley tries the function once a minute and puts the bot back ONLINE when it runs; deploy the function to fix it now.';
    default:
      return '';
  }
}
