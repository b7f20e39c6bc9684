// Account-level FaaS settings for FaaS Admins: secrets (keys only) and the outbound allowlist.

import { api, describeError } from '../lib/api';
import { busy, field, h } from '../lib/h';
import { alertBox, confirmDialog, MessageSlot, toast } from '../lib/ui';
import { validateDomain } from '../lib/validate';

const SECRET_KEY_RE = /^[A-Za-z0-9_-]{1,100}$/;


export function secretsPanel(): HTMLElement {
  const msg = new MessageSlot();
  const list = h('ul', { class: 'plain-list secrets-list' });
  const key = h('input', { autocomplete: 'off', class: 'mono', maxlength: '100' });
  const value = h('textarea', { rows: '2', maxlength: '10000', autocomplete: 'off' });
  const setBtn = h('button', { class: 'btn primary', type: 'submit' }, 'Set secret');
  const form = h('form', { class: 'form' }, field('Key', key, { hint: 'Letters, digits, - and _; up to 100.' }), field('Value', value, { hint: 'Write-only: values are never shown again.' }), setBtn);
  async function load(): Promise<void> {
    try {
      const v = await api('GET', 'secrets');
      const keys: string[] = (Array.isArray(v) ? v : ((v as { secrets?: unknown[]; keys?: unknown[] }).secrets ?? (v as { keys?: unknown[] }).keys ?? [])).map((x: unknown) =>
        typeof x === 'string' ? x : String((x as { key?: string }).key ?? ''),
      );
      list.replaceChildren(
        ...(keys.length ? [] : [h('li', { class: 'muted' }, 'No secrets.')]),
        ...keys.map((k) => {
          const del = h('button', { class: 'btn small danger', type: 'button', 'aria-label': `Delete secret ${k}` }, 'Delete');
          del.addEventListener('click', () =>
            void busy(del, async () => {
              if (!(await confirmDialog('Delete secret', `Delete secret “${k}”? Functions that read it lose access at once.`, 'Delete secret'))) return;
              try {
                await api('DELETE', `secrets/${encodeURIComponent(k)}`);
                toast(`Secret ${k} deleted`, 'ok');
                await load();
              } catch (e) {
                msg.error(e);
              }
            }),
          );
          return h('li', { class: 'row between' }, h('code', null, k), del);
        }),
      );
    } catch (e) {
      msg.error(e);
    }
  }
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void busy(setBtn, async () => {
      if (!SECRET_KEY_RE.test(key.value)) {
        msg.show(alertBox('error', 'A secret key has 1–100 letters, digits, - or _.'));
        key.focus();
        return;
      }
      try {
        await api('PUT', `secrets/${encodeURIComponent(key.value)}`, { value: value.value });
        msg.ok(`Secret ${key.value} set.`);
        key.value = '';
        value.value = '';
        await load();
      } catch (e) {
        msg.error(e);
      }
    });
  });
  void load();
  return h('section', { class: 'card', 'aria-labelledby': 'secrets-h' }, h('h2', { id: 'secrets-h' }, 'Secrets'), list, form, msg.el);
}

export function allowlistPanel(): HTMLElement {
  const msg = new MessageSlot();
  const ta = h('textarea', { rows: '5', class: 'mono', spellcheck: 'false', 'aria-describedby': 'allow-hint' });
  const save = h('button', { class: 'btn primary', type: 'button' }, 'Save allowlist');
  async function load(): Promise<void> {
    try {
      const v = await api('GET', 'allowlist');
      const domains: string[] = Array.isArray(v) ? v : ((v as { domains?: string[] }).domains ?? []);
      ta.value = domains.join('\n');
    } catch (e) {
      msg.error(e);
    }
  }
  save.addEventListener('click', () =>
    void busy(save, async () => {
      const domains = ta.value.split(/[\s,]+/).map((d) => d.trim()).filter(Boolean);
      const errs = domains.map(validateDomain).filter((x): x is string => Boolean(x));
      const dup = domains.find((d, i) => domains.indexOf(d) !== i);
      if (dup) errs.push(`${dup}: listed twice`);
      if (errs.length) {
        msg.show(alertBox('error', `Fix these entries: ${errs.join('; ')}.`));
        return;
      }
      try {
        await api('PUT', 'allowlist', { domains });
        msg.ok(`Allowlist saved (${domains.length} domain${domains.length === 1 ? '' : 's'}).`);
      } catch (e) {
        msg.show(alertBox('error', describeError(e)));
      }
    }),
  );
  void load();
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'allow-h' },
    h('h2', { id: 'allow-h' }, 'Outbound domain allowlist'),
    h(
      'div',
      { class: 'field' },
      h('label', { for: 'allowlist-ta' }, 'Domains (one per line)'),
      Object.assign(ta, { id: 'allowlist-ta' }),
      h('small', { id: 'allow-hint', class: 'hint' }, 'Functions may call only these hosts over HTTP(S). One wildcard at most, e.g. *.example.com; a bare domain does not cover www.'),
    ),
    h('div', { class: 'row' }, save),
    msg.el,
  );
}
