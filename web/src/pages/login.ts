import { describeError, login } from '../lib/api';
import { validateLogin } from '../lib/validate';
import { field, h } from '../lib/h';
import { saveSession, type Session } from '../lib/session';
import { resolveRoles } from '../lib/auth';
import { safeReturnPath } from '../lib/safe';
import type { PageContext } from '../main';

// Validation of the login form; returns a message per invalid field.

export default function loginPage(root: HTMLElement, ctx: PageContext): void {
  const remembered = localStorage.getItem('parley.lastAccount') ?? '';
  const account = h('input', { name: 'account', autocomplete: 'organization', value: ctx.query.get('account') ?? remembered, required: true });
  const username = h('input', { name: 'username', autocomplete: 'username', required: true });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const status = h('div', { class: 'msg-slot', 'aria-live': 'assertive' });
  const submit = h('button', { type: 'submit', class: 'btn primary' }, 'Log in');
  const errSlots: Record<string, HTMLElement> = {};
  const wrap = (label: string, input: HTMLInputElement, key: string) => {
    const f = field(label, input);
    const err = h('small', { class: 'field-error', id: `${input.id}-err` });
    errSlots[key] = err;
    f.append(err);
    return f;
  };
  const form = h(
    'form',
    { class: 'card login-card', novalidate: true, 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Parley console'),
    h('p', { class: 'muted' }, 'Log in with your account id, username and password.'),
    wrap('Account id', account, 'account'),
    wrap('Username', username, 'username'),
    wrap('Password', password, 'password'),
    status,
    submit,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const v = { account: account.value.trim(), username: username.value.trim(), password: password.value };
    const errs = validateLogin(v);
    for (const [k, slot] of Object.entries(errSlots)) {
      slot.textContent = errs[k] ?? '';
      const input = { account, username, password }[k as 'account' | 'username' | 'password'];
      if (errs[k]) {
        input.setAttribute('aria-invalid', 'true');
        input.setAttribute('aria-errormessage', slot.id);
      } else input.removeAttribute('aria-invalid');
    }
    const first = Object.keys(errs)[0];
    if (first) {
      ({ account, username, password })[first as 'account'].focus();
      return;
    }
    status.replaceChildren(h('p', { class: 'loading' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' Logging in…'));
    submit.disabled = true;
    try {
      const r = await login(v.account, v.username, v.password);
      const cfg = (r.config ?? {}) as Record<string, unknown>;
      const s: Session = {
        account: v.account,
        username: v.username,
        bearer: r.bearer,
        userId: String(cfg.userId ?? ''),
        userPid: String(cfg.userPid ?? ''),
        roles: [],
      };
      saveSession(s);
      const roles = await resolveRoles(s, cfg);
      s.roles = roles ?? [];
      s.rolesKnown = roles !== null;
      saveSession(s);
      localStorage.setItem('parley.lastAccount', v.account);
      ctx.navigate(safeReturnPath(ctx.query.get('next'), '/'), true);
    } catch (e) {
      status.replaceChildren(h('div', { class: 'alert alert-error', role: 'alert' }, describeError(e)));
      password.select();
    } finally {
      submit.disabled = false;
    }
  });
  root.append(h('div', { class: 'login-wrap' }, form));
  (account.value ? username : account).focus();
}
