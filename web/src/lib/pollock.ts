// Structured content (JSON Pollock) rendered by LivePerson's json-pollock, made inert.
//
// json-pollock builds live DOM and puts `text`, button `title`/`subtitle`, image `caption` and
// more into innerHTML, URLs into `src`, colours into style text, and `accessibility.web` keys
// into attributes. A card comes from a consumer, an agent or a bot function, so before
// json-pollock sees it the card is cleaned (cleanCard): every markup field is sanitised by
// DOMPurify to a few inline formatting tags, image URLs must be https (as the server requires),
// link actions must be
// http(s)/mailto/tel (others are dropped), colours must be colours, accessibility attributes
// must be role/tabindex/aria-*. The DOM json-pollock returns is then sanitised again in place
// by DOMPurify (no event-handler attribute, no script-capable element or URL survives) before it
// is attached to the page. Style attributes json-pollock sets are applied through the CSSOM, so
// the strict Content-Security-Policy (style-src 'self') needs no 'unsafe-inline'.
//
// The json-pollock build used is the one without its schema validator (which compiles schemas
// with `new Function`, refused by the policy's script-src): the server validates every card
// before it is stored or previewed.

import DOMPurify from 'dompurify';
import 'json-pollock/dist/json-pollock.min.css';
import { safeCssColour, safeImageUrl, safeLinkUrl } from './safe';

interface JsonPollockApi {
  init(cfg: Record<string, unknown>): void;
  render(json: unknown): HTMLElement;
  registerAction(type: string, cb: (data: { actionData: Record<string, unknown>; metadata?: unknown }) => void): void;
  unregisterAllActions(): void;
}

let jp: JsonPollockApi | null = null;

export async function pollock(): Promise<JsonPollockApi> {
  if (jp) return jp;
  const mod = (await import('json-pollock/dist/json-pollock.global.no_validation.min.js')) as unknown as { default: JsonPollockApi };
  jp = mod.default;
  jp.init({ maxAllowedElements: 200 });
  return jp;
}

export type ActionHandler = (type: string, data: Record<string, unknown>, metadata?: unknown) => void;

// Registers one handler for the action types a card can carry. A link's `uri` reaches the
// handler only when safeLinkUrl accepts it (it is dropped from the action otherwise).
export async function onActions(handler: ActionHandler): Promise<void> {
  const j = await pollock();
  j.unregisterAllActions();
  for (const t of ['publishText', 'link', 'navigate', 'custom', 'checked', 'submitAsText', 'addToCart', 'datePicker']) {
    j.registerAction(t, (d) => {
      const data = { ...(d.actionData ?? {}) };
      if (t === 'link') {
        const uri = safeLinkUrl(data.uri);
        if (uri) data.uri = uri;
        else delete data.uri;
      }
      handler(t, data, d.metadata);
    });
  }
}

// ---- cleaning the card before json-pollock sees it

// Markup allowed inside a card's text fields.
const TEXT_PURIFY = {
  ALLOWED_TAGS: ['b', 'strong', 'i', 'em', 'u', 's', 'br', 'p', 'span', 'small', 'sub', 'sup', 'ul', 'ol', 'li', 'a'],
  ALLOWED_ATTR: ['href', 'title'],
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|tel:)/i,
  KEEP_CONTENT: true,
};

// Fields json-pollock writes into innerHTML (of elements; an action's `text` is plain data).
const MARKUP_KEYS = new Set(['text', 'title', 'subtitle', 'caption']);
// Fields that hold an image URL, and the element types whose `url` is a link.
const IMAGE_URL_TYPES = new Set(['image']);
const STYLE_COLOUR = /color|^fill$/;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function cleanStyle(style: Json): Json | undefined {
  if (!style || typeof style !== 'object' || Array.isArray(style)) return undefined;
  const out: Record<string, Json> = {};
  for (const [k, v] of Object.entries(style)) {
    if (STYLE_COLOUR.test(k)) {
      const c = safeCssColour(v);
      if (c) out[k] = c;
    } else if (k === 'bold' || k === 'italic') {
      if (typeof v === 'boolean') out[k] = v;
    } else if (k === 'size') {
      if (v === 'small' || v === 'medium' || v === 'large') out[k] = v;
    } else if (k === 'border-radius') {
      if (typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= 1000) out[k] = v;
    }
  }
  return out;
}

function cleanAccessibility(a: Json): Json | undefined {
  if (!a || typeof a !== 'object' || Array.isArray(a)) return undefined;
  const web = (a as Record<string, Json>).web;
  if (!web || typeof web !== 'object' || Array.isArray(web)) return undefined;
  const out: Record<string, Json> = {};
  for (const [k, v] of Object.entries(web)) {
    if (typeof v !== 'string') continue;
    if (k === 'role' || k === 'tabindex' || /^aria-[a-z]+$/.test(k)) out[k] = v;
  }
  return { web: out };
}

// An action, or null when it must not reach json-pollock (a link to anything but http(s),
// mailto or tel).
function cleanAction(a: Json): Json | null {
  if (!a || typeof a !== 'object' || Array.isArray(a)) return null;
  const out: Record<string, Json> = { ...a };
  if (out.type === 'link') {
    const uri = safeLinkUrl(out.uri);
    if (!uri) return null;
    out.uri = uri;
    const web = out.web && typeof out.web === 'object' && !Array.isArray(out.web) ? safeLinkUrl((out.web as Record<string, Json>).uri) : null;
    if (web) out.web = { uri: web };
    else delete out.web;
    delete out.ios; // app deep links are for the mobile SDKs, not a browser
    delete out.android;
  }
  if (out.type === 'navigate') {
    if (typeof out.la !== 'number' || typeof out.lo !== 'number' || !Number.isFinite(out.la) || !Number.isFinite(out.lo)) return null;
  }
  if ('accessibility' in out) {
    const acc = cleanAccessibility(out.accessibility);
    if (acc) out.accessibility = acc;
    else delete out.accessibility;
  }
  return out;
}

function cleanNode(v: Json): Json {
  if (Array.isArray(v)) return v.map(cleanNode);
  if (!v || typeof v !== 'object') return v;
  const out: Record<string, Json> = {};
  const type = typeof v.type === 'string' ? v.type : '';
  for (const [k, val] of Object.entries(v)) {
    if (MARKUP_KEYS.has(k) && typeof val === 'string' && !(type === 'submitButton' && k === 'title')) {
      out[k] = DOMPurify.sanitize(val, TEXT_PURIFY) as string;
    } else if (k === 'url' && typeof val === 'string') {
      const u = IMAGE_URL_TYPES.has(type) ? safeImageUrl(val) : safeLinkUrl(val);
      if (u) out[k] = u;
      else if (IMAGE_URL_TYPES.has(type)) out[k] = ''; // json-pollock needs the key; shows nothing
    } else if (k === 'style') {
      const s = cleanStyle(val);
      if (s) out[k] = s;
    } else if (k === 'accessibility') {
      const a = cleanAccessibility(val);
      if (a) out[k] = a;
    } else if (k === 'click' && val && typeof val === 'object' && !Array.isArray(val)) {
      const click: Record<string, Json> = { ...val };
      if (Array.isArray(click.actions)) click.actions = click.actions.map(cleanAction).filter((a): a is Json => a !== null);
      out[k] = click;
    } else if ((k === 'la' || k === 'lo') && type === 'map') {
      if (typeof val === 'number' && Number.isFinite(val)) out[k] = val;
    } else if (k === 'actions' && Array.isArray(val)) {
      out[k] = val.map(cleanAction).filter((a): a is Json => a !== null);
    } else {
      out[k] = cleanNode(val);
    }
  }
  return out;
}

// Links in card text open in a new tab, without a referrer or an opener.
DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  if (node.nodeName === 'A' && node.hasAttribute('href')) {
    node.setAttribute('target', '_blank');
    node.setAttribute('rel', 'noopener noreferrer');
  }
});

// A deep copy of `content` that json-pollock can render without running or loading anything a
// card's author chose beyond http(s) images. Not JSON → null.
export function cleanCard(content: unknown): Json | null {
  let copy: Json;
  try {
    copy = JSON.parse(JSON.stringify(content)) as Json;
  } catch {
    return null;
  }
  if (!copy || typeof copy !== 'object') return null;
  return cleanNode(copy);
}

// ---- sanitising what json-pollock built

const DOM_PURIFY = {
  USE_PROFILES: { html: true, svg: true },
  FORBID_TAGS: ['style', 'iframe', 'frame', 'frameset', 'object', 'embed', 'link', 'meta', 'base', 'math', 'template', 'noscript', 'foreignObject', 'use', 'animate', 'set'],
  FORBID_ATTR: ['srcdoc', 'formaction', 'action', 'xlink:href', 'ping', 'background'],
  ADD_ATTR: ['target'],
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|tel:)/i,
  ALLOW_DATA_ATTR: true, // json-pollock keeps metadata in data-* attributes
  IN_PLACE: true,
};

// Style declarations json-pollock writes, with values that are plain CSS (no url(), no
// functions but colours, no escapes): anything else is left out.
const STYLE_PROPS = new Set(['color', 'background-color', 'font-weight', 'font-style', 'font-size', 'fill', 'border-color', 'border-radius', 'width', 'height', 'margin', 'display']);
function filterCss(text: string): string {
  const out: string[] = [];
  for (const decl of text.split(';')) {
    const i = decl.indexOf(':');
    if (i < 0) continue;
    const prop = decl.slice(0, i).trim().toLowerCase();
    const value = decl.slice(i + 1).trim();
    if (!STYLE_PROPS.has(prop) || !value) continue;
    if (!/^[#a-z0-9 .,%()/-]+$/i.test(value) || /\(/.test(value.replace(/\b(?:rgba?|hsla?)\(/gi, ''))) continue;
    out.push(`${prop}: ${value}`);
  }
  return out.join('; ');
}

// Runs `fn` with Element.setAttribute('style', …) applied through the CSSOM (filtered): the page's
// policy refuses inline style attributes, not CSSOM changes.
function withCssomStyles<T>(fn: () => T): T {
  // eslint-disable-next-line @typescript-eslint/unbound-method
  const original = Element.prototype.setAttribute;
  Element.prototype.setAttribute = function (this: Element, name: string, value: string) {
    if (String(name).toLowerCase() === 'style' && 'style' in this) {
      (this as HTMLElement).style.cssText = filterCss(String(value));
      return;
    }
    return original.call(this, name, value);
  };
  try {
    return fn();
  } finally {
    Element.prototype.setAttribute = original;
  }
}

// Renders structured content; on failure returns an element that says why. The element is
// detached and inert until the caller attaches it.
export async function renderCard(content: unknown): Promise<HTMLElement> {
  const j = await pollock();
  try {
    const clean = cleanCard(content);
    if (!clean) throw new Error('structured content must be a JSON object');
    return withCssomStyles(() => {
      const wrap = document.createElement('div');
      wrap.className = 'sc-card';
      wrap.append(j.render(clean)); // a DocumentFragment
      DOMPurify.sanitize(wrap, DOM_PURIFY);
      return wrap;
    });
  } catch (e) {
    const err = e as Error;
    const div = document.createElement('div');
    div.className = 'alert alert-warn sc-render-error';
    div.textContent = `Cannot render this card: ${err.message}`;
    return div;
  }
}
