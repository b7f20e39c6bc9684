// Consumer web widget (demo): an unauthenticated consumer talks to the brand over the consumer
// socket (v=3), authenticating with InitConnection because browsers cannot set headers.

import { describeError, signup, wsUrl } from '../lib/api';
import { h } from '../lib/h';
import { onActions } from '../lib/pollock';
import { conversationsOf, mergeRecords, quickRepliesOf, recordsOf, roleOf, type EventRecord } from '../lib/protocol';
import { safeLinkUrl } from '../lib/safe';
import { MessagingSocket } from '../lib/socket';
import { bubble } from '../lib/transcript';
import { ttrDeadline } from '../lib/ttr';
import { jwtSub } from '../lib/validate';
import type { PageContext } from '../main';


export default async function widgetPage(root: HTMLElement, ctx: PageContext): Promise<() => void> {
  const account = ctx.query.get('account') ?? '';
  const skill = ctx.query.get('skill') ?? undefined;
  // MESSAGING (asynchronous, the default) or CHAT (live: the bot gets a WELCOME event first).
  const channel = (ctx.query.get('channel') ?? '').toUpperCase() === 'CHAT' ? 'CHAT' : 'MESSAGING';
  if (!account) {
    const acc = h('input', { id: 'w-acc', required: true });
    const sk = h('input', { id: 'w-skill', placeholder: 'the account default' });
    const ch = h('select', { id: 'w-channel' }, h('option', { value: 'MESSAGING' }, 'Messaging'), h('option', { value: 'CHAT' }, 'Chat'));
    const form = h(
      'form',
      { class: 'card login-card' },
      h('h1', null, 'Chat widget'),
      h('div', { class: 'field' }, h('label', { for: 'w-acc' }, 'Account id'), acc),
      h('div', { class: 'field' }, h('label', { for: 'w-skill' }, 'Skill id (optional)'), sk),
      h('div', { class: 'field' }, h('label', { for: 'w-channel' }, 'Conversation type'), ch),
      h('button', { class: 'btn primary', type: 'submit' }, 'Open chat'),
    );
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      if (!acc.value.trim()) return;
      const q = new URLSearchParams({ account: acc.value.trim(), channel: ch.value });
      if (sk.value.trim()) q.set('skill', sk.value.trim());
      ctx.navigate(`/widget?${q.toString()}`);
    });
    root.append(h('div', { class: 'login-wrap' }, form));
    acc.focus();
    return () => {};
  }

  const statusEl = h('span', { class: 'conn-status', 'aria-live': 'polite' }, 'Connecting…');
  const list = h('ol', { class: 'transcript', 'aria-label': 'Messages', 'aria-live': 'polite' });
  const typing = h('div', { class: 'typing', hidden: true, 'aria-live': 'polite' }, h('span', { class: 'dots', 'aria-hidden': 'true' }, h('i'), h('i'), h('i')), h('span', { class: 'typing-text' }, 'typing…'));
  const chips = h('div', { class: 'quick-replies', role: 'group', 'aria-label': 'Quick replies' });
  const input = h('textarea', { id: 'w-input', rows: '1', placeholder: 'Type a message', 'aria-label': 'Message', maxlength: '5000', disabled: true });
  const send = h('button', { class: 'btn primary', type: 'submit', disabled: true }, 'Send');
  const errorEl = h('div', { class: 'msg-slot', 'aria-live': 'assertive' });
  const newConv = h('button', { class: 'btn', type: 'button', hidden: true }, 'Start a new conversation');
  const endConv = h('button', { class: 'btn small end-conv', type: 'button', hidden: true }, 'End conversation');
  // Who answers, or that nobody has yet (with the time an answer is due).
  const waitEl = h('div', { class: 'widget-wait', 'aria-live': 'polite', hidden: true });
  const composer = h('form', { class: 'composer' }, input, send);
  const scroller = h('div', { class: 'widget-scroll' }, list, typing);
  root.append(
    h(
      'div',
      { class: 'widget' },
      h('header', { class: 'widget-head' }, h('h1', null, channel === 'CHAT' ? 'Live chat' : 'Chat with us'), statusEl, endConv),
      waitEl,
      scroller,
      chips,
      errorEl,
      newConv,
      composer,
    ),
  );

  const storeKey = `parley.consumer.${account}`;
  let jwt = sessionStorage.getItem(storeKey) ?? '';
  let consumerId = '';
  let convId = '';
  let closed = false;
  let records: EventRecord[] = [];
  let typingTimer: ReturnType<typeof setTimeout> | null = null;
  let sock: MessagingSocket | null = null;
  let disposed = false;
  let lastAgents = '';
  // Public ids of the brand's agents → "Bot" or "Agent" (GetUserProfile), asked once each.
  const names = new Map<string, string>();
  const isMine = (x: EventRecord) => x.originatorId === consumerId || roleOf(x) === 'CONSUMER';
  const nameOf = (id: string) => names.get(id) ?? 'Agent';
  function learnName(id: string): void {
    if (!id || names.has(id) || !sock) return;
    names.set(id, 'Agent');
    sock
      .request('.ams.userprofile.GetUserProfile', id)
      .then((p) => {
        const nick = (p as { nickName?: unknown })?.nickName;
        if (typeof nick === 'string' && nick) {
          names.set(id, nick);
          renderAll();
          renderWait(lastAgentsList, lastTtrDue);
        }
      })
      .catch(() => {});
  }
  let lastAgentsList: string[] = [];
  let lastTtrDue = -1;
  function renderWait(agents: string[], dueTs: number): void {
    lastAgentsList = agents;
    lastTtrDue = dueTs;
    if (!convId || closed) {
      waitEl.hidden = true;
      endConv.hidden = true;
      return;
    }
    endConv.hidden = false;
    waitEl.hidden = false;
    if (agents.length) {
      waitEl.dataset.state = 'answered';
      waitEl.textContent = `You are talking to: ${agents.map(nameOf).join(', ')}`;
    } else {
      waitEl.dataset.state = 'waiting';
      const due = dueTs > Date.now() ? ` An answer is due by ${new Date(dueTs).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}.` : '';
      waitEl.textContent = `Waiting for the next available agent…${due}`;
    }
  }

  const showError = (e: unknown) => errorEl.replaceChildren(h('div', { class: 'alert alert-error', role: 'alert' }, describeError(e)));
  const system = (text: string) => list.append(h('li', { class: 'system' }, text));
  // The transcript scrolls inside the widget (the composer stays in view); again on the next frame
  // and when a card's image loads, since rich content grows after it is rendered.
  const scrollDown = () => {
    scroller.scrollTop = scroller.scrollHeight;
    requestAnimationFrame(() => (scroller.scrollTop = scroller.scrollHeight));
  };
  list.addEventListener('load', () => scrollDown(), true);

  function setTyping(on: boolean, who = 'Agent'): void {
    typing.hidden = !on;
    (typing.querySelector('.typing-text') as HTMLElement).textContent = `${who} is typing…`;
    if (typingTimer) clearTimeout(typingTimer);
    if (on) typingTimer = setTimeout(() => (typing.hidden = true), 30000);
    scrollDown();
  }

  function renderChips(): void {
    // Chips of the newest message only, and only while it is the last thing said.
    const last = [...records].reverse().find((r) => r.event?.type === 'ContentEvent' || r.event?.type === 'RichContentEvent');
    chips.replaceChildren();
    if (!last || last.originatorId === consumerId || roleOf(last) === 'CONSUMER' || closed) return;
    for (const q of quickRepliesOf(last)) {
      const b = h('button', { type: 'button', class: 'chip', title: q.tooltip ?? q.title }, q.title);
      b.addEventListener('click', () => {
        chips.replaceChildren();
        void publish(q.text, q.metadata);
      });
      chips.append(b);
    }
  }

  function renderAll(): void {
    list.replaceChildren();
    for (const r of records) {
      const el = bubble(r, {
        mine: isMine,
        label: (x) => (isMine(x) ? 'You' : nameOf(x.originatorId ?? '')),
      });
      if (el) list.append(el);
    }
    if (closed) system('The conversation was closed.');
    renderChips();
    scrollDown();
  }

  function onRecords(body: unknown): void {
    const incoming = recordsOf(body).filter((r) => !r.dialogId || !convId || r.dialogId === convId);
    const content: EventRecord[] = [];
    for (const r of incoming) {
      const t = r.event?.type;
      if (t === 'ChatStateEvent') {
        if (r.originatorId === consumerId || roleOf(r) === 'CONSUMER') continue;
        setTyping(r.event?.chatState === 'COMPOSING');
      } else if (t === 'ContentEvent' || t === 'RichContentEvent') {
        if (r.messageAudience === 'AGENTS_AND_MANAGERS') continue; // never shown to consumers
        content.push(r);
      }
    }
    if (!content.length) return;
    if (content.some((r) => r.originatorId !== consumerId && roleOf(r) !== 'CONSUMER')) setTyping(false);
    records = mergeRecords(records, content);
    renderAll();
  }

  async function subscribeConversation(id: string): Promise<void> {
    convId = id;
    closed = false;
    newConv.hidden = true;
    await sock!.request('ms.SubscribeMessagingEvents', { dialogId: id, fromSeq: 0 });
  }

  async function ensureConversation(): Promise<void> {
    if (convId && !closed) return;
    records = [];
    renderAll();
    const body: Record<string, unknown> = { ttrDefName: 'NORMAL', channelType: channel, brandId: account, conversationContext: { type: 'SharkContext', lang: navigator.language || 'en-US', visitorId: consumerId, sessionId: consumerId } };
    if (skill) body.skillId = skill;
    const r = (await sock!.request('cm.ConsumerRequestConversation', body)) as { conversationId?: string };
    if (!r?.conversationId) throw new Error('The server did not return a conversation id.');
    await subscribeConversation(r.conversationId);
  }

  async function publish(text: string, metadata?: unknown[]): Promise<void> {
    errorEl.replaceChildren();
    try {
      await ensureConversation();
      await sock!.request('ms.PublishEvent', { dialogId: convId, event: { type: 'ContentEvent', contentType: 'text/plain', message: text } }, metadata && metadata.length ? { metadata } : {});
    } catch (e) {
      showError(e);
    }
  }

  composer.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = '';
    void publish(text);
    input.focus();
  });
  // Tell the agent the consumer is typing (at most every 3 s while a conversation is open).
  let lastTyping = 0;
  input.addEventListener('input', () => {
    if (!convId || closed || !sock || Date.now() - lastTyping < 3000) return;
    lastTyping = Date.now();
    sock.request('ms.PublishEvent', { dialogId: convId, event: { type: 'ChatStateEvent', chatState: 'COMPOSING' } }).catch(() => {});
  });
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey) {
      ev.preventDefault();
      composer.requestSubmit();
    }
  });
  endConv.addEventListener('click', () => {
    if (!convId || closed || !sock) return;
    endConv.disabled = true;
    sock
      .request('cm.UpdateConversationField', { conversationId: convId, conversationField: [{ field: 'ConversationStateField', conversationState: 'CLOSE' }] })
      .catch(showError)
      .finally(() => (endConv.disabled = false));
  });
  newConv.addEventListener('click', () => {
    convId = '';
    closed = false;
    records = [];
    newConv.hidden = true;
    renderAll();
    input.disabled = false;
    send.disabled = false;
    input.focus();
  });

  await onActions((type, data) => {
    if (type === 'publishText' && typeof data.text === 'string') void publish(data.text);
    else if (type === 'link') {
      // onActions passes only http(s)/mailto/tel URIs; checked again where the URL is used.
      const uri = safeLinkUrl(data.uri);
      if (uri) window.open(uri, '_blank', 'noopener,noreferrer');
    }
  });

  async function connect(): Promise<void> {
    try {
      if (!jwt) {
        statusEl.textContent = 'Signing up…';
        jwt = await signup(account);
        sessionStorage.setItem(storeKey, jwt);
      }
      consumerId = jwtSub(jwt);
      if (!closed) convId = ''; // re-adopted (and re-subscribed) from SubscribeExConversations
      sock = new MessagingSocket(wsUrl(`/ws_api/account/${encodeURIComponent(account)}/messaging/consumer?v=3`));
      sock.onState = (s, detail) => {
        statusEl.textContent = s === 'open' ? 'Connected' : s === 'connecting' ? 'Connecting…' : `Disconnected${detail ? `: ${detail}` : ''}`;
        statusEl.dataset.state = s;
        input.disabled = send.disabled = s !== 'open';
        if (s === 'closed' && !disposed) setTimeout(() => !disposed && void connect(), 3000);
      };
      sock.on('ms.MessagingEventNotification', onRecords);
      sock.on('cqm.ExConversationChangeNotification', (body) => {
        for (const c of conversationsOf(body)) {
          if (c.state === 'OPEN' && !c.deleted) {
            if (!convId || closed) {
              void subscribeConversation(c.convId).catch(showError);
            }
            if (c.convId === convId) {
              const agents = c.assignedAgents.join(',');
              if (agents && agents !== lastAgents && lastAgents) system('You are now talking to someone new.');
              lastAgents = agents;
              c.assignedAgents.forEach(learnName);
              renderWait(c.assignedAgents, ttrDeadline(c) ?? -1);
            }
          } else if (c.convId === convId && c.state === 'CLOSE' && !closed) {
            closed = true;
            setTyping(false);
            renderAll();
            renderWait([], -1);
            newConv.hidden = false;
          }
        }
      });
      await sock.open();
      await sock.request('InitConnection', undefined, {
        headers: [
          { type: '.ams.headers.ClientProperties', deviceFamily: /Mobi/.test(navigator.userAgent) ? 'MOBILE' : 'DESKTOP', os: 'OTHER', features: ['RICH_CONTENT', 'QUICK_REPLIES', 'AUTO_MESSAGES', 'CO_BROWSE'] },
          { type: '.ams.headers.ConsumerAuthentication', jwt },
        ],
      });
      await sock.request('cqm.SubscribeExConversations', { minLastUpdatedTime: 0, convState: ['OPEN'] });
      errorEl.replaceChildren();
      // A live chat starts when the window opens (the bot greets first, on its WELCOME event),
      // unless the subscription just brought back the consumer's open conversation.
      if (channel === 'CHAT') {
        setTimeout(() => {
          if (!disposed && !convId && sock) ensureConversation().catch(showError);
        }, 500);
      }
    } catch (e) {
      // A rejected identity (expired JWT) gets a fresh one on the next try.
      if (/401|4401|4407|auth/i.test(String((e as Error).message))) {
        jwt = '';
        sessionStorage.removeItem(storeKey);
      }
      showError(e);
      statusEl.textContent = 'Not connected';
    }
  }
  await connect();
  input.focus();
  return () => {
    disposed = true;
    sock?.close();
    if (typingTimer) clearTimeout(typingTimer);
  };
}
