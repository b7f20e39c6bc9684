import { api } from '../lib/api';
import { h } from '../lib/h';
import { fnOf, EVENTS } from '../lib/models';
import { MessageSlot, pageHeader, stateBadge } from '../lib/ui';
import type { PageContext } from '../main';
import { allowlistPanel, secretsPanel } from './faasAdmin';

export default async function functionsPage(root: HTMLElement, ctx: PageContext): Promise<void> {
  const msg = new MessageSlot();
  const body = h('div', null, h('p', { class: 'loading' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' Loading functions…'));
  const refresh = h('button', { class: 'btn', onclick: () => void load() }, 'Refresh');
  root.append(
    pageHeader(
      'Functions',
      refresh,
      ctx.can('functions.write') ? h('a', { class: 'btn primary', href: '/functions/new' }, 'Create function') : null,
    ),
    msg.el,
    body,
  );
  if (ctx.can('functions.admin')) {
    root.append(h('h2', { class: 'section-title' }, 'Account settings (FaaS Admin)'), h('div', { class: 'grid-2' }, secretsPanel(), allowlistPanel()));
  }

  async function load(): Promise<void> {
    refresh.disabled = true;
    try {
      const v = await api('GET', 'functions');
      const list = (Array.isArray(v) ? v : ((v as { functions?: unknown[] })?.functions ?? [])).map(fnOf);
      msg.clear();
      if (!list.length) {
        body.replaceChildren(
          h('p', { class: 'empty' }, 'No functions yet. ', ctx.can('functions.write') ? h('a', { href: '/functions/new' }, 'Create one from a template.') : 'Ask a FaaS developer to create one.'),
        );
        return;
      }
      const evName = (id: string) => EVENTS.find((e) => e.id === id)?.name ?? id;
      body.replaceChildren(
        h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { class: 'table' },
            h('caption', { class: 'sr-only' }, 'Functions and their state'),
            h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Event'), h('th', { scope: 'col' }, 'State'), h('th', { scope: 'col' }, 'Version'), h('th', { scope: 'col' }, 'Description'))),
            h(
              'tbody',
              null,
              list.map((f) =>
                h(
                  'tr',
                  { 'data-function': f.name },
                  h('td', null, h('a', { href: `/functions/${encodeURIComponent(f.uuid)}` }, f.name || f.uuid)),
                  h('td', null, evName(f.event)),
                  h('td', null, stateBadge(f.state)),
                  h('td', null, String(f.version || '')),
                  h('td', { class: 'muted' }, f.description),
                ),
              ),
            ),
          ),
        ),
      );
    } catch (e) {
      msg.error(e);
      body.replaceChildren();
    } finally {
      refresh.disabled = false;
    }
  }
  await load();
}
