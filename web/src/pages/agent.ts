// Agent workspace: the agent socket (v=2.1, LivePerson envelope protocol), the routing queue with
// TTR countdowns, accept, the conversation with rich content and private messages, the bot's
// intents and escalation reason, reply, transfer to a skill, close.

import { api, describeError, wsUrl } from '../lib/api';
import { busy, fmtDateTime, h } from '../lib/h';
import { skillsOf } from '../lib/models';
import { onActions } from '../lib/pollock';
import {
  conversationsOf,
  insightOf,
  isPrivate,
  mergeRecords,
  recordsOf,
  roleOf,
  routingTasksOf,
  textOf,
  waitingRing,
  type ConvSummary,
  type EventRecord,
  type RoutingTask,
} from '../lib/protocol';
import { MessagingSocket } from '../lib/socket';
import { bubble } from '../lib/transcript';
import { countdown, ttrDeadline } from '../lib/ttr';
import { alertBox, badge, confirmDialog, toast } from '../lib/ui';
import type { PageContext } from '../main';

export default async function agentPage(root: HTMLElement, ctx: PageContext): Promise<() => void> {
  const s = ctx.session;
  const me = `${s.account}.${s.userId}`;
  const isMe = (id?: string) => !!id && (id === me || id === s.userPid || id === s.userId);

  const convs = new Map<string, ConvSummary>();
  const tasks = new Map<string, RoutingTask>();
  const records = new Map<string, EventRecord[]>();
  const loaded = new Set<string>();
  const botIds = new Set<string>();
  const consumerTyping = new Map<string, number>();
  let selected = '';
  let disposed = false;
  let skillNames = new Map<string, string>();

  const connStatus = h('span', { class: 'conn-status', 'aria-live': 'polite' }, 'Connecting…');
  const stateSel = h('select', { id: 'agent-state', 'aria-label': 'Availability' }, ['ONLINE', 'OCCUPIED', 'AWAY', 'BACK_SOON'].map((a) => h('option', { value: a }, a.replace('_', ' ').toLowerCase())));
  const errorSlot = h('div', { class: 'msg-slot', 'aria-live': 'assertive' });
  const queueList = h('ul', { class: 'queue', 'aria-label': 'Queue' });
  const mineList = h('ul', { class: 'my-convs', 'aria-label': 'My conversations' });
  const convPane = h('section', { class: 'conv-pane', 'aria-label': 'Conversation' });
  const insightPane = h('aside', { class: 'insight-pane', 'aria-label': 'Bot insights' });

  root.append(
    h('div', { class: 'page-head' }, h('h1', null, 'Agent workspace'), h('div', { class: 'actions' }, h('label', { for: 'agent-state' }, 'Availability'), stateSel, connStatus)),
    errorSlot,
    h(
      'div',
      { class: 'workspace' },
      h('nav', { class: 'ws-lists', 'aria-label': 'Conversations' }, h('h2', null, 'Queue'), queueList, h('h2', null, 'My conversations'), mineList),
      convPane,
      insightPane,
    ),
  );
  const showError = (e: unknown) => errorSlot.replaceChildren(alertBox('error', describeError(e)));

  try {
    skillNames = new Map(skillsOf(await api('GET', 'skills')).map((k) => [k.id, k.name]));
  } catch {
    /* skill ids are shown instead of names */
  }
  const skillName = (id: string) => (id === '-1' || !id ? 'unassigned' : (skillNames.get(id) ?? `skill ${id}`));

  await onActions(() => {
    /* cards are read-only for agents */
  });

  const sock = new MessagingSocket(wsUrl(`/ws_api/account/${encodeURIComponent(s.account)}/messaging/brand/${encodeURIComponent(s.bearer)}?v=2.1`));
  sock.onState = (st, detail) => {
    connStatus.textContent = st === 'open' ? 'Connected' : st === 'connecting' ? 'Connecting…' : `Disconnected${detail ? ` (${detail})` : ''}`;
    connStatus.dataset.state = st;
    if (st === 'closed' && !disposed) {
      errorSlot.replaceChildren(alertBox('warn', `The agent connection ${detail ?? 'closed'}. `, reconnectBtn()));
    }
  };
  function reconnectBtn(): HTMLButtonElement {
    const b = h('button', { class: 'btn small', type: 'button' }, 'Reconnect');
    b.addEventListener('click', () => void busy(b, start));
    return b;
  }

  const mine = (c: ConvSummary) => c.assignedAgents.some(isMe);

  // ---- rendering
  function renderLists(): void {
    const now = Date.now();
    const queued: { convId: string; task?: RoutingTask; conv?: ConvSummary }[] = [];
    for (const t of tasks.values()) {
      if (t.deleted || t.completed || !waitingRing(t)) continue;
      queued.push({ convId: t.conversationId, task: t, conv: convs.get(t.conversationId) });
    }
    for (const c of convs.values()) {
      if (c.state !== 'OPEN' || c.deleted || c.assignedAgents.length) continue;
      if (queued.some((q) => q.convId === c.convId)) continue;
      queued.push({ convId: c.convId, conv: c });
    }
    queued.sort((a, b) => (ttrDeadline(a.conv ?? {}) ?? Infinity) - (ttrDeadline(b.conv ?? {}) ?? Infinity));
    queueList.replaceChildren(
      ...(queued.length ? [] : [h('li', { class: 'muted' }, 'Nobody is waiting.')]),
      ...queued.map((q) => {
        const deadline = q.conv ? ttrDeadline(q.conv) : null;
        const cd = countdown(deadline, now);
        const ring = q.task ? waitingRing(q.task) : undefined;
        const accept = h('button', { class: 'btn primary small', type: 'button', disabled: !ring, title: ring ? 'Accept this conversation' : 'Not offered to you (no ring)' }, 'Accept');
        accept.addEventListener('click', () => void busy(accept, () => acceptRing(q.convId, ring!.ringId)));
        const skill = q.task?.skillId ?? q.conv?.skillId ?? '-1';
        return h(
          'li',
          { class: `queue-item ${cd?.overdue ? 'overdue' : ''}`, 'data-conv': q.convId },
          h('div', null, h('strong', null, skillName(skill)), ' ', h('span', { class: 'muted small mono' }, q.convId.slice(0, 8))),
          h('div', { class: 'row between' }, h('span', { class: `ttr ${cd?.overdue ? 'overdue' : ''}`, 'data-deadline': deadline ?? '' }, cd ? cd.text : 'TTR unknown'), q.conv ? badge(q.conv.ttrType.toLowerCase(), 'neutral') : null, accept),
        );
      }),
    );
    const my = [...convs.values()].filter((c) => mine(c) && c.state === 'OPEN' && !c.deleted);
    mineList.replaceChildren(
      ...(my.length ? [] : [h('li', { class: 'muted' }, 'None. Accept one from the queue.')]),
      ...my.map((c) => {
        const last = [...(records.get(c.convId) ?? [])].reverse().find((r) => textOf(r));
        const a = h(
          'button',
          { type: 'button', class: `conv-link ${c.convId === selected ? 'active' : ''}`, 'aria-current': c.convId === selected ? 'true' : false, 'data-conv': c.convId },
          h('strong', null, skillName(c.skillId)),
          ' ',
          h('span', { class: 'muted small mono' }, c.convId.slice(0, 8)),
          h('br'),
          h('span', { class: 'muted small' }, last ? textOf(last).slice(0, 60) : '…'),
        );
        a.addEventListener('click', () => select(c.convId));
        return h('li', null, a);
      }),
    );
  }

  function tick(): void {
    const now = Date.now();
    for (const el of [...queueList.querySelectorAll<HTMLElement>('.ttr[data-deadline]'), ...convHead.querySelectorAll<HTMLElement>('.ttr[data-deadline]')]) {
      const d = Number(el.dataset.deadline);
      if (!d) continue;
      const cd = countdown(d, now)!;
      el.textContent = cd.text;
      el.classList.toggle('overdue', cd.overdue);
      el.closest('.queue-item')?.classList.toggle('overdue', cd.overdue);
    }
    for (const [conv, until] of consumerTyping) {
      if (until < now) {
        consumerTyping.delete(conv);
        if (conv === selected) renderConversation();
      }
    }
  }

  const composer = h('textarea', { id: 'agent-input', rows: '2', placeholder: 'Reply to the consumer (Enter sends, Shift+Enter adds a line)', 'aria-label': 'Reply' });
  const privateBox = h('input', { type: 'checkbox', id: 'agent-private' });
  const sendBtn = h('button', { class: 'btn primary', type: 'submit' }, 'Send');
  const transferSel = h('select', { id: 'transfer-skill', 'aria-label': 'Transfer to skill' });
  const transferBtn = h('button', { class: 'btn', type: 'button' }, 'Transfer');
  const closeBtn = h('button', { class: 'btn danger', type: 'button' }, 'Close conversation');
  const transcript = h('ol', { class: 'transcript', 'aria-live': 'polite', 'aria-label': 'Messages' });
  const typingEl = h('p', { class: 'typing-line muted small', 'aria-live': 'polite' });
  const form = h('form', { class: 'composer' }, composer, h('div', { class: 'row' }, h('span', { class: 'checkbox' }, privateBox, h('label', { for: 'agent-private' }, 'Private note')), sendBtn));
  const convHead = h('div', { class: 'conv-head' });
  const convBody = h('div', { class: 'conv-body' }, transcript, typingEl);

  function fillTransferSkills(): void {
    transferSel.replaceChildren(h('option', { value: '' }, '— skill —'), ...[...skillNames].map(([id, n]) => h('option', { value: id }, n)));
  }
  fillTransferSkills();

  function renderConversation(): void {
    if (!selected) {
      convPane.replaceChildren(h('div', { class: 'empty-pane' }, h('p', { class: 'muted' }, 'Select or accept a conversation.')));
      insightPane.replaceChildren(h('h2', null, 'Bot insights'), h('p', { class: 'muted' }, 'Intents and escalation reasons appear here.'));
      return;
    }
    const c = convs.get(selected);
    const recs = records.get(selected) ?? [];
    for (const r of recs) if (insightOf(r).intents.length) botIds.add(r.originatorPId ?? r.originatorId ?? '');
    const label = (r: EventRecord) => {
      if (isMe(r.originatorId) || isMe(r.originatorPId) || isMe(r.originatorMetadata?.id)) return 'You';
      const role = roleOf(r);
      if (role === 'CONSUMER') return 'Consumer';
      const id = r.originatorPId ?? r.originatorId ?? '';
      if (botIds.has(id) || botIds.has(r.originatorMetadata?.id ?? '')) return 'Bot';
      return role === 'MANAGER' ? 'Manager' : role === 'CONTROLLER' ? 'System' : 'Agent';
    };
    transcript.replaceChildren();
    for (const r of recs) {
      const el = bubble(r, { mine: (x) => label(x) === 'You', label, showInsights: true });
      if (el) transcript.append(el);
    }
    const isOpen = c ? c.state === 'OPEN' && !c.deleted : true;
    const canAct = isOpen && (!c || mine(c));
    if (!isOpen) transcript.append(h('li', { class: 'system' }, `Conversation closed${c?.closeReason ? ` by ${c.closeReason.toLowerCase()}` : ''}.`));
    typingEl.textContent = consumerTyping.has(selected) ? 'Consumer is typing…' : '';
    convHead.replaceChildren(
      h('h2', null, 'Conversation ', h('span', { class: 'mono small' }, selected.slice(0, 8))),
      h('p', { class: 'muted small' }, c ? `Skill ${skillName(c.skillId)} · started ${fmtDateTime(c.startTs)} · consumer ${c.consumerId.slice(0, 8)}` : ''),
      // The time to response stays in sight after the accept, while the conversation is open.
      c && isOpen ? h('p', { class: 'small conv-ttr' }, 'Time to response: ', h('span', { class: 'ttr', 'data-deadline': ttrDeadline(c) ?? '' }, countdown(ttrDeadline(c), Date.now())?.text ?? 'unknown'), ' ', badge(c.ttrType.toLowerCase(), 'neutral')) : '',
      h('div', { class: 'row conv-actions' }, transferSel, transferBtn, closeBtn),
    );
    for (const el of [composer, sendBtn, transferSel, transferBtn, closeBtn, privateBox]) (el as HTMLInputElement).disabled = !canAct;
    if (!convPane.contains(convBody)) convPane.replaceChildren(convHead, convBody, form);
    convBody.scrollTop = convBody.scrollHeight;
    requestAnimationFrame(() => (convBody.scrollTop = convBody.scrollHeight));

    // Insights: the bot's intents (BotResponse metadata), escalation reasons, private notes.
    const intents: { id: string; name?: string; confidence?: number; at?: number }[] = [];
    const reasons: string[] = [];
    const notes: EventRecord[] = [];
    for (const r of recs) {
      const ins = insightOf(r);
      for (const i of ins.intents) if (!intents.some((x) => x.id === i.id && x.name === i.name && x.confidence === i.confidence)) intents.push({ ...i, at: r.serverTimestamp });
      reasons.push(...ins.reasons);
      if (isPrivate(r)) notes.push(r);
    }
    insightPane.replaceChildren(
      h('h2', null, 'Bot insights'),
      h('h3', null, 'Intents'),
      intents.length
        ? h('ul', { class: 'intents' }, intents.map((i) => h('li', { class: 'intent-item' }, h('strong', null, i.name || i.id), i.name && i.name !== i.id ? h('span', { class: 'muted small' }, ` (${i.id})`) : null, typeof i.confidence === 'number' ? h('span', { class: 'conf' }, ` ${(i.confidence * 100).toFixed(0)}%`) : null)))
        : h('p', { class: 'muted small' }, 'No intents reported by the bot.'),
      h('h3', null, 'Escalation reason'),
      reasons.length ? h('ul', { class: 'reasons' }, [...new Set(reasons)].map((x) => h('li', null, x))) : h('p', { class: 'muted small' }, 'None given.'),
      h('h3', null, 'Private notes'),
      notes.length ? h('ul', { class: 'notes' }, notes.map((n) => h('li', null, textOf(n)))) : h('p', { class: 'muted small' }, 'None.'),
    );
  }

  async function loadMessages(convId: string): Promise<void> {
    if (loaded.has(convId)) return;
    loaded.add(convId);
    try {
      const body = await sock.request('.ams.ms.QueryMessages', { dialogId: convId, newerThanSequence: 0, fromSeq: 0 });
      records.set(convId, mergeRecords(records.get(convId) ?? [], recordsOf(body).filter((r) => r.event?.type !== 'ChatStateEvent')));
      if (convId === selected) renderConversation();
      renderLists();
    } catch (e) {
      loaded.delete(convId);
      showError(e);
    }
  }

  function select(convId: string): void {
    selected = convId;
    renderLists();
    renderConversation();
    void loadMessages(convId);
    composer.focus();
  }

  async function acceptRing(convId: string, ringId: string): Promise<void> {
    try {
      await sock.request('.ams.routing.UpdateRingState', { ringId, ringState: 'ACCEPTED' });
      toast('Conversation accepted', 'ok');
      select(convId);
    } catch (e) {
      showError(e);
    }
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = composer.value.trim();
    if (!text || !selected) return;
    void busy(sendBtn, async () => {
      try {
        const body: Record<string, unknown> = { dialogId: selected, event: { type: 'ContentEvent', contentType: 'text/plain', message: text } };
        if (privateBox.checked) body.messageAudience = 'AGENTS_AND_MANAGERS';
        await sock.request('.ams.ms.PublishEvent', body);
        composer.value = '';
        privateBox.checked = false;
      } catch (e) {
        showError(e);
      }
    });
  });
  let lastTyping = 0;
  composer.addEventListener('input', () => {
    if (!selected || privateBox.checked || Date.now() - lastTyping < 3000) return;
    lastTyping = Date.now();
    sock.request('.ams.ms.PublishEvent', { dialogId: selected, event: { type: 'ChatStateEvent', chatState: 'COMPOSING' } }).catch(() => {});
  });
  composer.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey) {
      ev.preventDefault();
      form.requestSubmit();
    }
  });
  transferBtn.addEventListener('click', () =>
    void busy(transferBtn, async () => {
      if (!transferSel.value) {
        showError(new Error('Choose the skill to transfer to.'));
        transferSel.focus();
        return;
      }
      try {
        await sock.request('.ams.cm.UpdateConversationField', {
          conversationId: selected,
          conversationField: [
            { field: 'ParticipantsChange', type: 'REMOVE', role: 'ASSIGNED_AGENT', userId: me },
            { field: 'Skill', type: 'UPDATE', skill: transferSel.value },
          ],
        });
        toast(`Transferred to ${skillName(transferSel.value)}`, 'ok');
        selected = '';
        renderLists();
        renderConversation();
      } catch (e) {
        showError(e);
      }
    }),
  );
  closeBtn.addEventListener('click', () =>
    // Rendered again afterwards: busy() restores the button's state from before the click, and a
    // closed conversation's actions stay disabled.
    void busy(closeBtn, async () => {
      if (!(await confirmDialog('Close conversation', 'Close this conversation? The consumer is told it ended and can start a new one.', 'Close conversation'))) return;
      try {
        await sock.request('.ams.cm.UpdateConversationField', { conversationId: selected, conversationField: [{ field: 'ConversationStateField', conversationState: 'CLOSE' }] });
        toast('Conversation closed', 'ok');
        const c = convs.get(selected);
        if (c) c.state = 'CLOSE';
        renderLists();
        renderConversation();
      } catch (e) {
        showError(e);
      }
    }).then(() => renderConversation()),
  );
  stateSel.addEventListener('change', async () => {
    try {
      await sock.request('.ams.routing.SetAgentState', { availability: stateSel.value, channels: ['MESSAGING'], agentUserId: me });
      toast(`Availability: ${stateSel.value.toLowerCase()}`, 'ok');
    } catch (e) {
      showError(e);
    }
  });

  sock.on('ExConversationChange', (body) => {
    for (const c of conversationsOf(body)) {
      if (c.deleted) {
        const old = convs.get(c.convId);
        if (old) old.deleted = true;
        else convs.set(c.convId, c);
      } else convs.set(c.convId, c);
      if (!c.deleted && mine(c) && c.state === 'OPEN') void loadMessages(c.convId);
    }
    renderLists();
    if (selected) renderConversation();
  });
  sock.on('RoutingTask', (body) => {
    for (const t of routingTasksOf(body)) {
      const key = t.conversationId || t.taskId;
      if (t.deleted || t.completed) tasks.delete(key);
      else tasks.set(key, t);
    }
    renderLists();
  });
  sock.on('MessagingEvent', (body) => {
    const byConv = new Map<string, EventRecord[]>();
    for (const r of recordsOf(body)) {
      const conv = r.dialogId ?? r.conversationId ?? '';
      if (!conv) continue;
      if (r.event?.type === 'ChatStateEvent') {
        if (roleOf(r) === 'CONSUMER') {
          if (r.event.chatState === 'COMPOSING') consumerTyping.set(conv, Date.now() + 15000);
          else consumerTyping.delete(conv);
          if (conv === selected) renderConversation();
        }
        continue;
      }
      if (!byConv.has(conv)) byConv.set(conv, []);
      byConv.get(conv)!.push(r);
    }
    for (const [conv, recs] of byConv) {
      if (recs.some((r) => roleOf(r) === 'CONSUMER')) consumerTyping.delete(conv);
      records.set(conv, mergeRecords(records.get(conv) ?? [], recs));
    }
    if (byConv.has(selected)) renderConversation();
    renderLists();
  });

  async function start(): Promise<void> {
    try {
      loaded.clear();
      await sock.open();
      errorSlot.replaceChildren();
      await sock.request('.ams.routing.SetAgentState', { availability: stateSel.value || 'ONLINE', channels: ['MESSAGING'], agentUserId: me });
      try {
        await sock.request('.ams.aam.SubscribeExConversations', { convState: ['OPEN'] });
      } catch {
        await sock.request('.ams.aam.SubscribeExConversations', { convState: ['OPEN'], agentIds: [me] });
      }
      await sock.request('.ams.routing.SubscribeRoutingTasks', { channelType: 'MESSAGING', agentId: me, brandId: s.account });
    } catch (e) {
      showError(e);
    }
  }

  renderLists();
  renderConversation();
  await start();
  const timer = setInterval(tick, 1000);
  return () => {
    disposed = true;
    clearInterval(timer);
    sock.close();
  };
}
