import { api, asList } from '../lib/api';
import { h } from '../lib/h';
import { botOf, fnOf } from '../lib/models';
import { MessageSlot, pageHeader, stateBadge } from '../lib/ui';
import type { PageContext } from '../main';

export default async function botsPage(root: HTMLElement, ctx: PageContext): Promise<void> {
  const msg = new MessageSlot();
  const body = h('div', null, h('p', { class: 'loading' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' Loading bots…'));
  root.append(pageHeader('Bots', ctx.can('bots.create') ? h('a', { class: 'btn primary', href: '/bots/new' }, 'Add bot') : null), msg.el, body);
  try {
    const [bv, fv] = await Promise.all([api('GET', 'bots'), api('GET', 'functions').catch(() => [])]);
    const bots = asList(bv, 'bots').map(botOf);
    const fns = new Map(asList(fv, 'functions').map(fnOf).map((f) => [f.uuid, f]));
    if (!bots.length) {
      body.replaceChildren(h('p', { class: 'empty' }, 'No bots yet.', ctx.can('bots.create') ? [' ', h('a', { href: '/bots/new' }, 'Add a Custom Integration bot.')] : null));
      return;
    }
    body.replaceChildren(
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'table' },
          h('thead', null, h('tr', null, ['Name', 'Vendor', 'Function', 'Status', 'Conversation types'].map((c) => h('th', { scope: 'col' }, c)))),
          h(
            'tbody',
            null,
            bots.map((b) =>
              h(
                'tr',
                { 'data-bot': b.name },
                h('td', null, h('a', { href: `/bots/${encodeURIComponent(b.id)}` }, b.name || b.id)),
                h('td', null, b.vendor === 'CUSTOM_INTEGRATION' ? 'Custom Integration' : b.vendor),
                h('td', null, fns.get(b.functionUuid)?.name ?? b.functionUuid ?? '—'),
                h('td', null, stateBadge(b.status)),
                h('td', null, b.conversationTypes.join(', ')),
              ),
            ),
          ),
        ),
      ),
    );
  } catch (e) {
    msg.error(e);
    body.replaceChildren();
  }
}
