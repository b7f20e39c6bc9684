// Renders conversation event records as chat bubbles (shared by the agent workspace and the
// consumer widget). Rich content goes through json-pollock.

import { fmtTime, h } from './h';
import { insightOf, isPrivate, quickRepliesOf, richContentOf, roleOf, textOf, type EventRecord } from './protocol';
import { renderCard } from './pollock';

export interface BubbleOpts {
  mine: (r: EventRecord) => boolean;
  label: (r: EventRecord) => string;
  showInsights?: boolean; // agent view: intents beside bot messages
}

export function bubble(r: EventRecord, opts: BubbleOpts): HTMLElement | null {
  const e = r.event ?? {};
  if (e.type !== 'ContentEvent' && e.type !== 'RichContentEvent') return null;
  const mine = opts.mine(r);
  const priv = isPrivate(r);
  const role = roleOf(r);
  const li = h('li', {
    class: `bubble ${mine ? 'mine' : 'theirs'} role-${role.toLowerCase() || 'unknown'} ${priv ? 'private' : ''}`,
    'data-seq': typeof r.sequence === 'number' ? String(r.sequence) : false,
  });
  const meta = h('div', { class: 'bubble-meta' }, h('span', { class: 'who' }, opts.label(r)), ' ', h('time', null, fmtTime(r.serverTimestamp)));
  if (priv) meta.append(' ', h('span', { class: 'badge private-badge' }, 'Private'));
  li.append(meta);
  const text = textOf(r);
  const sc = richContentOf(r);
  if (sc) {
    const slot = h('div', { class: 'bubble-card' }, h('span', { class: 'muted small' }, 'Rendering card…'));
    li.append(slot);
    void renderCard(sc).then((el) => slot.replaceChildren(el));
  } else {
    li.append(h('div', { class: 'bubble-text' }, text));
  }
  const qrs = quickRepliesOf(r);
  if (qrs.length && opts.showInsights) {
    li.append(h('div', { class: 'qr-summary muted small' }, `Quick replies: ${qrs.map((q) => q.title).join(' · ')}`));
  }
  if (opts.showInsights) {
    const ins = insightOf(r);
    if (ins.intents.length || ins.reasons.length) {
      li.append(
        h(
          'div',
          { class: 'bubble-insight' },
          ins.intents.map((i) => h('span', { class: 'badge intent' }, `intent ${i.name || i.id}${typeof i.confidence === 'number' ? ` ${(i.confidence * 100).toFixed(0)}%` : ''}`)),
          ins.reasons.map((x) => h('span', { class: 'badge reason' }, `reason: ${x}`)),
        ),
      );
    }
  }
  return li;
}
