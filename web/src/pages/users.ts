import { api } from '../lib/api';
import { busy, field, h } from '../lib/h';
import { skillsOf, usersOf, type Skill, type User } from '../lib/models';
import { ALL_ROLES } from '../lib/roles';
import { alertBox, badge, confirmDialog, MessageSlot, pageHeader, toast } from '../lib/ui';
import { validateUser, type NewUser } from '../lib/validate';
import type { PageContext } from '../main';



export default async function usersPage(root: HTMLElement, ctx: PageContext): Promise<void> {
  const canWrite = ctx.can('users.write');
  const msg = new MessageSlot();
  const list = h('div');
  const formHost = h('div');
  let skills: Skill[] = [];
  try {
    skills = skillsOf(await api('GET', 'skills'));
  } catch {
    skills = [];
  }
  const skillName = (id: string) => skills.find((s) => s.id === id)?.name ?? id;
  const addBtn = h('button', { class: 'btn primary', type: 'button', disabled: !canWrite }, 'Add user');
  addBtn.addEventListener('click', () => showForm(null));
  root.append(pageHeader('Users', addBtn));
  if (!canWrite) root.append(alertBox('info', 'Read-only: only admins change users.'));
  root.append(msg.el, formHost, list);

  function showForm(user: User | null): void {
    const creating = !user;
    const login = h('input', { value: user?.loginName ?? '', disabled: !creating, autocomplete: 'off', required: true });
    const password = h('input', { type: 'password', autocomplete: 'new-password' });
    const type = h('select', { disabled: !creating }, ['HUMAN', 'BOT'].map((t) => h('option', { value: t, selected: user?.type === t }, t === 'HUMAN' ? 'Human' : 'Bot')));
    const maxOpen = h('input', { type: 'number', min: '0', max: '999', value: String(user?.maxOpenConversations ?? 10) });
    const roleBoxes = ALL_ROLES.map((r) => h('input', { type: 'checkbox', value: r, id: `role-${r}`, checked: user ? user.roles.includes(r) : r === 'AGENT' }));
    const skillBoxes = skills.map((s) => h('input', { type: 'checkbox', value: s.id, id: `us-${s.id}`, checked: user?.skills.includes(s.id) ?? false }));
    const fmsg = new MessageSlot();
    const save = h('button', { class: 'btn primary', type: 'submit' }, creating ? 'Create user' : 'Save user');
    const cancel = h('button', { class: 'btn', type: 'button' }, 'Cancel');
    cancel.addEventListener('click', () => formHost.replaceChildren());
    const form = h(
      'form',
      { class: 'card form', novalidate: true, 'aria-label': creating ? 'New user' : `Edit ${user!.loginName}` },
      h('h2', null, creating ? 'New user' : `Edit ${user!.loginName}`),
      h('div', { class: 'grid-2' }, field('Login name', login), field(creating ? 'Password' : 'New password (optional)', password, { hint: 'At least 8 characters.' }), field('Type', type), field('Max open conversations', maxOpen)),
      h('fieldset', null, h('legend', null, 'Roles'), h('div', { class: 'chips-select' }, roleBoxes.map((b) => h('span', { class: 'checkbox' }, b, h('label', { for: b.id }, b.value.replace('_', ' ').toLowerCase()))))),
      h('fieldset', null, h('legend', null, 'Skills'), skills.length ? h('div', { class: 'chips-select' }, skillBoxes.map((b, i) => h('span', { class: 'checkbox' }, b, h('label', { for: b.id }, skills[i].name)))) : h('p', { class: 'muted' }, 'No skills.')),
      fmsg.el,
      h('div', { class: 'row' }, save, cancel),
    );
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void busy(save, async () => {
        const u: NewUser = {
          loginName: login.value.trim(),
          password: password.value,
          roles: roleBoxes.filter((b) => b.checked).map((b) => b.value),
          type: type.value,
          skills: skillBoxes.filter((b) => b.checked).map((b) => b.value),
          maxOpenConversations: Number(maxOpen.value),
        };
        const errs = validateUser(u, creating);
        if (errs.length) {
          fmsg.show(alertBox('error', errs.join(' ')));
          return;
        }
        try {
          if (creating) await api('POST', 'users', u);
          else {
            const patch: Record<string, unknown> = { roles: u.roles, skills: u.skills, maxOpenConversations: u.maxOpenConversations };
            if (u.password) patch.password = u.password;
            await api('PATCH', `users/${encodeURIComponent(user!.id)}`, patch);
          }
          toast(creating ? `User ${u.loginName} created` : `User ${u.loginName} saved`, 'ok');
          formHost.replaceChildren();
          await load();
        } catch (e) {
          fmsg.error(e);
        }
      });
    });
    formHost.replaceChildren(form);
    (creating ? login : password).focus();
  }

  async function load(): Promise<void> {
    try {
      const users = usersOf(await api('GET', 'users'));
      list.replaceChildren(
        h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { class: 'table' },
            h('thead', null, h('tr', null, ['Id', 'Login', 'Type', 'Roles', 'Skills', 'Max open', ''].map((c) => h('th', { scope: 'col' }, c || h('span', { class: 'sr-only' }, 'Actions'))))),
            h(
              'tbody',
              null,
              users.map((u) => {
                const edit = h('button', { class: 'btn small', type: 'button', disabled: !canWrite, 'aria-label': `Edit ${u.loginName}` }, 'Edit');
                edit.addEventListener('click', () => showForm(u));
                const del = h('button', { class: 'btn small danger', type: 'button', disabled: !canWrite || u.id === ctx.session.userId, 'aria-label': `Delete ${u.loginName}` }, 'Delete');
                del.addEventListener('click', () =>
                  void busy(del, async () => {
                    if (!(await confirmDialog('Delete user', `Delete user “${u.loginName}”? They can no longer log in or take conversations; the conversations they handled stay.`, 'Delete user'))) return;
                    try {
                      await api('DELETE', `users/${encodeURIComponent(u.id)}`);
                      toast(`User ${u.loginName} deleted`, 'ok');
                      await load();
                    } catch (e) {
                      msg.error(e);
                    }
                  }),
                );
                return h(
                  'tr',
                  { 'data-user': u.loginName },
                  h('td', { class: 'mono' }, u.id),
                  h('td', null, u.loginName),
                  h('td', null, u.type === 'BOT' ? badge('bot', 'neutral') : 'human'),
                  h('td', null, u.roles.map((r) => badge(r.toLowerCase().replace('_', ' '), 'neutral'))),
                  h('td', null, u.skills.map(skillName).join(', ')),
                  h('td', null, String(u.maxOpenConversations)),
                  h('td', { class: 'nowrap' }, edit, ' ', del),
                );
              }),
            ),
          ),
        ),
      );
    } catch (e) {
      msg.error(e);
    }
  }
  await load();
}
