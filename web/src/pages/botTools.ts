// The bot page's builder tools: the conversation tester (REST bots/{id}/tester…) and replay
// (POST bots/{id}/replay). Everything a function or a transcript sends is shown as text.

import { api, describeError } from '../lib/api';
import { busy, h } from '../lib/h';
import { alertBox, badge, pre } from '../lib/ui';

type Obj = Record<string, unknown>;

const obj = (v: unknown): Obj => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : {});
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string => (typeof v === 'string' ? v : v === undefined || v === null ? '' : JSON.stringify(v));

// A version typed by the user: digits go as a number.
function versionValue(v: string): string | number {
  const t = v.trim();
  return /^\d{1,15}$/.test(t) ? Number(t) : t || 'draft';
}

function versionText(v: unknown): string {
  const o = obj(v);
  return `${str(o.label)} (version ${str(o.version)})`;
}

function seenItem(item: unknown): HTMLElement {
  const o = obj(item);
  const kind = str(o.kind);
  let what: string;
  if (kind === 'DELAY') what = `typing… ${str(o.delaySeconds)} s`;
  else if (typeof o.text === 'string') what = o.text;
  else what = `[${kind === 'RICH_CONTENT' ? 'card' : kind.toLowerCase()}${o.contentType ? ` ${str(o.contentType)}` : ''}]`;
  return h(
    'li',
    { class: 'seen' },
    what,
    typeof o.quickReplies === 'number' ? [' ', badge(`${o.quickReplies} quick replies`, 'neutral')] : null,
    h('small', { class: 'muted' }, ` ${str(o.source)}`),
  );
}

// One tester turn: what the consumer wrote, what each side sees, the action, problems, warnings.
export function testerTurn(turn: unknown): HTMLElement {
  const t = obj(turn);
  const review = obj(t.review);
  const verdict = str(review.verdict) || (t.error ? 'FAILED' : '');
  const problems = list(review.problems).map(obj);
  const warnings = list(review.warnings).map(obj);
  const escalation = t.escalation ? obj(t.escalation) : null;
  const error = t.error ? obj(t.error) : null;
  return h(
    'li',
    { class: `tester-turn ${verdict === 'OK' ? '' : 'turn-bad'}`, 'data-verdict': verdict },
    h(
      'div',
      { class: 'row between' },
      h('strong', { class: 'consumer-says' }, str(t.consumerMessage) === 'WELCOME' ? 'WELCOME event' : `Consumer: ${str(t.consumerMessage)}`),
      h('span', null, badge(verdict || '—', verdict === 'OK' ? 'ok' : 'bad'), ' ', h('small', { class: 'muted' }, `turn ${str(t.turn)} · ${Number(t.durationMs ?? 0).toFixed(0)} ms`)),
    ),
    error ? alertBox('error', `The function failed: ${str(error.code)}: ${str(error.message)}`) : null,
    list(review.consumerSees).length ? h('div', null, h('h4', null, 'The consumer sees'), h('ul', { class: 'seen-list consumer-sees' }, list(review.consumerSees).map(seenItem))) : null,
    list(review.agentSees).length ? h('div', null, h('h4', null, 'Agents see'), h('ul', { class: 'seen-list agent-sees' }, list(review.agentSees).map(seenItem))) : null,
    review.action ? h('p', { class: 'tester-action' }, h('strong', null, 'Action: '), str(obj(review.action).action), ' ', h('code', null, JSON.stringify(review.action))) : null,
    problems.length
      ? h('div', { class: 'alert alert-error tester-problems', role: 'alert' }, h('strong', null, 'Refused: '), problems.map((p) => h('div', null, h('code', null, str(p.path) || '/'), ` ${str(p.message)} (${str(p.code)})`)))
      : null,
    warnings.length
      ? h('div', { class: 'alert alert-warn tester-warnings' }, h('strong', null, 'Warnings: '), warnings.map((w) => h('div', null, h('code', null, str(w.path) || '/'), ` ${str(w.message)}`)))
      : null,
    escalation
      ? h(
          'div',
          { class: 'alert alert-warn tester-escalation' },
          h('strong', null, 'Escalation: '),
          `${str(escalation.code)} — after ${str(escalation.retries)} retries the connector sends `,
          list(escalation.consumerSees).length ? `“${list(escalation.consumerSees).map(str).join(' ')}”` : 'nothing',
          ' to the consumer',
          escalation.transferToSkill ? ` and transfers to skill ${str(escalation.transferToSkill)}` : '',
          '.',
        )
      : null,
    h('details', null, h('summary', null, 'Function input and raw response'), h('div', { class: 'grid-2' }, h('div', null, h('h4', null, 'Input'), pre(t.input)), h('div', null, h('h4', null, 'Response'), pre(t.response)))),
  );
}

export function testerPanel(botId: string, channels: string[]): HTMLElement {
  const base = `bots/${encodeURIComponent(botId)}/tester`;
  let session: Obj | null = null;
  const channel = h('select', { id: 'tester-channel' }, (channels.length ? channels : ['MESSAGING']).map((c) => h('option', { value: c }, c === 'CHAT' ? 'Chat (WELCOME first)' : 'Messaging')));
  const version = h('input', { id: 'tester-version', value: 'draft', autocomplete: 'off', size: 10, 'aria-describedby': 'tester-version-hint' });
  const start = h('button', { type: 'button', class: 'btn primary', id: 'tester-start' }, 'Start conversation');
  const info = h('p', { class: 'muted small tester-info', 'aria-live': 'polite' }, 'Chat with the bot without a real consumer: nothing reaches a real conversation.');
  const turns = h('ol', { class: 'tester-turns', 'aria-live': 'polite' });
  const text = h('input', { id: 'tester-text', placeholder: 'Type as the consumer…', autocomplete: 'off', disabled: true, 'aria-label': 'Consumer message' });
  const send = h('button', { type: 'submit', class: 'btn', id: 'tester-send', disabled: true }, 'Send');
  const out = h('div');

  function setState(state: string, endedBy: unknown): void {
    const open = state === 'OPEN';
    text.disabled = !open;
    send.disabled = !open;
    info.textContent = session
      ? `${str(session.channel)} conversation ${str(session.conversationId)} · function ${versionText(session.functionVersion)} · ${open ? 'the bot owns it' : `ended: ${str(endedBy)}`}`
      : '';
  }
  function addTurn(t: unknown): void {
    const li = testerTurn(t);
    turns.append(li);
    li.scrollIntoView({ block: 'nearest' });
  }
  async function startSession(): Promise<void> {
    out.replaceChildren();
    turns.replaceChildren();
    if (session) void api('DELETE', `${base}/${encodeURIComponent(str(session.sessionId))}`).catch(() => {});
    session = null;
    try {
      session = obj(await api('POST', base, { channel: channel.value, functionVersion: versionValue(version.value) }));
      list(session.turns).forEach(addTurn);
      setState(str(session.state), session.endedBy);
      if (!text.disabled) text.focus();
    } catch (e) {
      setState('', null);
      out.replaceChildren(alertBox('error', describeError(e)));
    }
  }
  async function sendText(): Promise<void> {
    if (!session || !text.value.trim()) return;
    const value = text.value;
    out.replaceChildren();
    try {
      const r = obj(await api('POST', `${base}/${encodeURIComponent(str(session.sessionId))}/messages`, { text: value }));
      text.value = '';
      addTurn(r.turn);
      const s = obj(r.session);
      setState(str(s.state), s.endedBy);
    } catch (e) {
      out.replaceChildren(alertBox('error', describeError(e)));
    }
  }
  start.addEventListener('click', () => void busy(start, startSession));
  const form = h('form', { class: 'row tester-send' }, text, send);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void busy(send, sendText);
  });
  return h(
    'section',
    { class: 'card tester-panel', 'aria-labelledby': 'tester-h' },
    h('h2', { id: 'tester-h' }, 'Tester'),
    h('div', { class: 'row' }, h('label', { for: 'tester-channel' }, 'Channel'), channel, h('label', { for: 'tester-version' }, 'Function version'), version, start),
    h('small', { class: 'hint', id: 'tester-version-hint' }, 'draft (the saved code), deployed, a version number or a deployment id.'),
    info,
    turns,
    form,
    out,
  );
}

function diffValue(v: unknown): string {
  return v === null || v === undefined ? '—' : typeof v === 'string' ? `“${v}”` : JSON.stringify(v);
}

export function replayPanel(botId: string): HTMLElement {
  const version = h('input', { id: 'replay-version', value: 'draft', autocomplete: 'off', size: 10 });
  const file = h('input', { id: 'replay-file', type: 'file', accept: 'application/json,.json' });
  const run = h('button', { type: 'button', class: 'btn primary', id: 'replay-run' }, 'Replay');
  const out = h('div', { class: 'replay-out', 'aria-live': 'polite' });

  async function replay(): Promise<void> {
    out.replaceChildren(h('p', { class: 'loading' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' Replaying…'));
    const body: Obj = { functionVersion: versionValue(version.value) };
    try {
      if (file.files && file.files[0]) body.from = JSON.parse(await file.files[0].text());
    } catch (e) {
      out.replaceChildren(alertBox('error', `The transcript file is not JSON: ${describeError(e)}`));
      return;
    }
    try {
      const r = obj(await api('POST', `bots/${encodeURIComponent(botId)}/replay`, body));
      const results = list(r.results).map(obj);
      const changed = results.filter((t) => t.status !== 'SAME');
      const summary = `${str(r.replayed)} of ${str(r.turns)} turns replayed against ${versionText(r.functionVersion)}: ${str(r.same)} same, ${str(r.changed)} changed, ${str(r.skipped)} skipped${r.complete ? '' : `, ${str(r.notRun)} not run`}`;
      out.replaceChildren(
        alertBox(Number(r.changed) > 0 ? 'warn' : 'ok', summary),
        Number(r.turns) === 0 ? h('p', { class: 'muted' }, 'No recorded turns yet: chat with the bot (widget or Tester) first, or choose a transcript file.') : '',
        h(
          'ol',
          { class: 'replay-results' },
          changed.map((t) =>
            h(
              'li',
              { class: 'replay-turn', 'data-status': str(t.status) },
              h('div', null, badge(str(t.status), t.status === 'CHANGED' ? 'bad' : 'neutral'), ' ', h('strong', null, str(t.consumerMessage)), h('small', { class: 'muted' }, ` conversation ${str(t.conversationId).slice(0, 12)}`)),
              t.reason ? h('p', { class: 'muted small' }, str(t.reason)) : null,
              list(t.differences).length
                ? h(
                    'table',
                    { class: 'replay-diff' },
                    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'What'), h('th', { scope: 'col' }, 'Recorded'), h('th', { scope: 'col' }, 'Replayed'))),
                    h(
                      'tbody',
                      null,
                      list(t.differences).map(obj).map((d) =>
                        h('tr', null, h('td', null, `${str(d.field)}${d.index !== undefined ? `[${str(d.index)}]` : ''}`), h('td', { class: 'before' }, diffValue(d.before)), h('td', { class: 'after' }, diffValue(d.after))),
                      ),
                    ),
                  )
                : null,
            ),
          ),
        ),
      );
    } catch (e) {
      out.replaceChildren(alertBox('error', describeError(e)));
    }
  }
  run.addEventListener('click', () => void busy(run, replay));
  return h(
    'section',
    { class: 'card replay-panel', 'aria-labelledby': 'replay-h' },
    h('h2', { id: 'replay-h' }, 'Replay'),
    h('p', { class: 'muted small' }, 'Run the bot’s recorded turns (or an exported transcript) against another version of its function and see what changed, turn by turn.'),
    h('div', { class: 'row' }, h('label', { for: 'replay-version' }, 'Function version'), version, h('label', { for: 'replay-file' }, 'Transcript (optional)'), file, run),
    out,
  );
}
