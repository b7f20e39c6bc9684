// A tiny DOM helper: h('button', {class: 'x', onclick: fn}, 'Save').
// Attributes starting with "on" must be functions and become event listeners; `false`/null/
// undefined attributes are omitted; children may be strings, numbers, nodes, arrays or null, and
// strings always become text nodes (never markup). URL attributes (href, src, action, formaction,
// xlink:href) go through safeHref: a value that is not a same-origin path, a #fragment or an
// http(s)/mailto/tel URL is left out. `style` takes an object (set through the CSSOM).

import { safeHref } from './safe';

const URL_ATTRS = new Set(['href', 'src', 'action', 'formaction', 'xlink:href', 'srcdoc', 'srcset']);

export type Child = Node | string | number | null | undefined | false | Child[];
export type Attrs = Record<string, unknown>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      const name = k.toLowerCase();
      if (name.startsWith('on')) {
        if (typeof v !== 'function') throw new TypeError(`h(): ${k} must be a function`);
        el.addEventListener(name.slice(2), v as EventListener);
      } else if (URL_ATTRS.has(name)) {
        const url = name === 'srcdoc' || name === 'srcset' ? null : safeHref(String(v));
        if (url !== null) el.setAttribute(k, url);
      } else if (name === 'style' && typeof v !== 'object') {
        throw new TypeError('h(): style must be an object');
      } else if (k === 'class' || k === 'className') {
        el.className = String(v);
      } else if (k === 'value' && 'value' in el) {
        (el as HTMLInputElement).value = String(v);
      } else if (k === 'checked' && el instanceof HTMLInputElement) {
        el.checked = Boolean(v);
      } else if (k === 'style' && typeof v === 'object') {
        Object.assign(el.style, v);
      } else if (v === true) {
        el.setAttribute(k, '');
      } else {
        el.setAttribute(k, String(v));
      }
    }
  }
  append(el, children);
  return el;
}

export function append(el: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

export function replace(el: Element, ...children: Child[]): void {
  clear(el);
  append(el, children);
}

let idCounter = 0;
export function uid(prefix = 'id'): string {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

// A labelled form field: label + control (+ optional hint and error slot).
export function field(
  label: string,
  control: HTMLElement,
  opts: { hint?: string; id?: string } = {},
): HTMLDivElement {
  const id = opts.id ?? (control.id || uid('f'));
  control.id = id;
  const hintId = opts.hint ? `${id}-hint` : undefined;
  if (hintId) control.setAttribute('aria-describedby', hintId);
  return h(
    'div',
    { class: 'field' },
    h('label', { for: id }, label),
    control,
    opts.hint ? h('small', { id: hintId, class: 'hint' }, opts.hint) : null,
  );
}

export function spinner(label = 'Working…'): HTMLSpanElement {
  return h('span', { class: 'spinner', role: 'status' }, h('span', { class: 'sr-only' }, label));
}

// Sets a button busy (disabled + spinner) while `work` runs; returns work's result.
export async function busy<T>(btn: HTMLButtonElement, work: () => Promise<T>): Promise<T> {
  const wasDisabled = btn.disabled;
  btn.disabled = true;
  btn.setAttribute('aria-busy', 'true');
  const sp = spinner();
  btn.prepend(sp);
  try {
    return await work();
  } finally {
    sp.remove();
    btn.removeAttribute('aria-busy');
    btn.disabled = wasDisabled;
  }
}

export function fmtTime(ms: number | undefined | null): string {
  if (!ms) return '—';
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

export function fmtDateTime(ms: number | string | undefined | null): string {
  if (ms === undefined || ms === null || ms === '' || ms === 0) return '—';
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return String(ms);
  return d.toLocaleString();
}
