import { api } from '../lib/api';
import { busy, field, h } from '../lib/h';
import { skillsOf } from '../lib/models';
import { alertBox, confirmDialog, MessageSlot, pageHeader, toast } from '../lib/ui';
import type { PageContext } from '../main';

export default async function skillsPage(root: HTMLElement, ctx: PageContext): Promise<void> {
  const canWrite = ctx.can('skills.write');
  const msg = new MessageSlot();
  const list = h('div');
  const name = h('input', { id: 'skill-name', required: true, maxlength: '100', autocomplete: 'off', disabled: !canWrite });
  const add = h('button', { class: 'btn primary', type: 'submit', disabled: !canWrite }, 'Add skill');
  const form = h('form', { class: 'card form inline-form', novalidate: true }, field('New skill name', name, { hint: 'Names are case-sensitive; bots transfer by name.' }), add);
  root.append(pageHeader('Skills'), canWrite ? form : alertBox('info', 'Read-only: only admins change skills.'), msg.el, list);

  async function load(): Promise<void> {
    try {
      const skills = skillsOf(await api('GET', 'skills'));
      list.replaceChildren(
        skills.length
          ? h(
              'div',
              { class: 'table-wrap' },
              h(
                'table',
                { class: 'table' },
                h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Id'), h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')))),
                h(
                  'tbody',
                  null,
                  skills.map((s) => {
                    const del = h('button', { class: 'btn small danger', type: 'button', disabled: !canWrite, 'aria-label': `Delete skill ${s.name}` }, 'Delete');
                    del.addEventListener('click', () =>
                      void busy(del, async () => {
                        if (!(await confirmDialog('Delete skill', `Delete skill “${s.name}”? Agents and bots serving it stop getting its conversations, and bots that escalate to it can no longer transfer there.`, 'Delete skill'))) return;
                        try {
                          await api('DELETE', `skills/${encodeURIComponent(s.id)}`);
                          toast(`Skill ${s.name} deleted`, 'ok');
                          await load();
                        } catch (e) {
                          msg.error(e);
                        }
                      }),
                    );
                    return h('tr', { 'data-skill': s.name }, h('td', { class: 'mono' }, s.id), h('td', null, s.name), h('td', null, del));
                  }),
                ),
              ),
            )
          : h('p', { class: 'empty' }, 'No skills yet.'),
      );
    } catch (e) {
      msg.error(e);
    }
  }
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void busy(add, async () => {
      if (!name.value.trim()) {
        msg.show(alertBox('error', 'Enter a skill name.'));
        name.focus();
        return;
      }
      try {
        await api('POST', 'skills', { name: name.value.trim() });
        msg.ok(`Skill ${name.value.trim()} added.`);
        name.value = '';
        await load();
      } catch (e) {
        msg.error(e);
      }
    });
  });
  await load();
}
