// Shared UI bits: alerts, status badges, the toast region, confirm.

import { describeError } from './api';
import { h } from './h';

export function alertBox(kind: 'error' | 'ok' | 'info' | 'warn', ...msg: (string | Node)[]): HTMLDivElement {
  return h('div', { class: `alert alert-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, ...msg);
}

export function errorBox(e: unknown): HTMLDivElement {
  return alertBox('error', describeError(e));
}

// A slot that shows one message at a time (error, success, progress).
export class MessageSlot {
  readonly el = h('div', { class: 'msg-slot', 'aria-live': 'polite' });
  show(node: Node | null): void {
    this.el.replaceChildren(...(node ? [node] : []));
  }
  error(e: unknown): void {
    this.show(errorBox(e));
  }
  ok(text: string): void {
    this.show(alertBox('ok', text));
  }
  info(text: string): void {
    this.show(alertBox('info', text));
  }
  clear(): void {
    this.show(null);
  }
}

export function badge(text: string, kind = ''): HTMLSpanElement {
  return h('span', { class: `badge ${kind}` }, text);
}

export function stateBadge(state: string): HTMLSpanElement {
  const s = state.toLowerCase();
  let kind = 'neutral';
  if (/productive|online|ok|succeeded|open/.test(s)) kind = 'good';
  else if (/error|fail|interruption|refused|discarded/.test(s)) kind = 'bad';
  else if (/modified|deploying|pending|waiting|undeploy/.test(s)) kind = 'warn';
  return badge(state, kind);
}

let toastRegion: HTMLElement | null = null;
export function toast(text: string, kind: 'ok' | 'error' | 'info' = 'info'): void {
  if (!toastRegion) {
    toastRegion = h('div', { class: 'toasts', 'aria-live': 'polite' });
    document.body.appendChild(toastRegion);
  }
  const t = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
  toastRegion.appendChild(t);
  setTimeout(() => t.remove(), kind === 'error' ? 8000 : 4000);
}

export function pageHeader(title: string, ...actions: (Node | null | false)[]): HTMLElement {
  return h('div', { class: 'page-head' }, h('h1', null, title), h('div', { class: 'actions' }, ...actions));
}

export function pretty(v: unknown): string {
  if (typeof v === 'string') {
    try {
      return JSON.stringify(JSON.parse(v), null, 2);
    } catch {
      return v;
    }
  }
  return JSON.stringify(v, null, 2) ?? String(v);
}

export function pre(v: unknown, cls = ''): HTMLPreElement {
  return h('pre', { class: `code ${cls}`, tabindex: '0' }, pretty(v));
}

// An in-page confirmation (a modal <dialog>, not the browser's): resolves true when the user
// confirms, false on Cancel or Escape. `body` says what happens and what depends on the thing.
export function confirmDialog(title: string, body: string | Node, confirmLabel: string, danger = true): Promise<boolean> {
  return new Promise((resolve) => {
    const ok = h('button', { type: 'button', class: `btn ${danger ? 'danger' : 'primary'}`, 'data-confirm': 'yes' }, confirmLabel);
    const cancel = h('button', { type: 'button', class: 'btn', 'data-confirm': 'no' }, 'Cancel');
    const titleId = `dlg-${Math.random().toString(36).slice(2, 8)}`;
    const dlg = h('dialog', { class: 'confirm-dialog', 'aria-labelledby': titleId }, h('h2', { id: titleId }, title), h('div', { class: 'confirm-body' }, body), h('div', { class: 'row end' }, cancel, ok));
    const done = (v: boolean) => {
      dlg.close();
      dlg.remove();
      resolve(v);
    };
    ok.addEventListener('click', () => done(true));
    cancel.addEventListener('click', () => done(false));
    dlg.addEventListener('cancel', (ev) => {
      ev.preventDefault();
      done(false);
    });
    document.body.append(dlg);
    dlg.showModal();
    cancel.focus();
  });
}
