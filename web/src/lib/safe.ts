// Which URLs the console puts into links, images and navigations. Everything a consumer, an agent,
// a function or a query string sends is data: a URL from them is used only when it is one of the
// kinds below, and never as script (no javascript:, data:, vbscript:, blob:, file:).
// Pure functions (unit-tested in node); `origin` defaults to the page's.

const MAX_URL = 4096;
// C0 controls, DEL, and the whitespace browsers strip out of URLs before parsing them.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

function parseAbsolute(raw: unknown): URL | null {
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > MAX_URL) return null;
  if (CONTROL.test(raw) || raw.trim() !== raw || raw.includes('\\')) return null;
  try {
    return new URL(raw);
  } catch {
    return null;
  }
}

// A link a card or a message may open: absolute http(s) with a host, mailto: or tel:.
export function safeLinkUrl(raw: unknown): string | null {
  const u = parseAbsolute(raw);
  if (!u) return null;
  if (u.protocol === 'http:' || u.protocol === 'https:') return u.hostname ? u.href : null;
  if (u.protocol === 'mailto:' || u.protocol === 'tel:') return u.href;
  return null;
}

// An image a card may show: absolute https with a host (the server's rule for card images).
export function safeImageUrl(raw: unknown): string | null {
  const u = parseAbsolute(raw);
  if (!u || u.protocol !== 'https:' || !u.hostname) return null;
  return u.href;
}

function pageOrigin(): string {
  return typeof location !== 'undefined' ? location.origin : 'http://localhost';
}

// A `return` / `next` target from the query string: only a path on this origin ("/bots/12?x=1"),
// never another origin ("//evil", "/\\evil", "https://evil"), a script URL or anything with
// control characters. Anything else gives `fallback`.
export function safeReturnPath(raw: string | null | undefined, fallback: string, origin = pageOrigin()): string {
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > MAX_URL) return fallback;
  if (!raw.startsWith('/') || raw.startsWith('//') || raw.includes('\\') || CONTROL.test(raw) || raw.trim() !== raw) return fallback;
  let u: URL;
  try {
    u = new URL(raw, origin);
  } catch {
    return fallback;
  }
  if (u.origin !== new URL(origin).origin) return fallback;
  return u.pathname + u.search + u.hash;
}

// An href the console itself renders (h()): a same-origin path, '#fragment', or a safe link.
export function safeHref(raw: string, origin = pageOrigin()): string | null {
  if (raw.startsWith('#') && !CONTROL.test(raw)) return raw;
  if (raw.startsWith('/')) {
    const p = safeReturnPath(raw, '', origin);
    return p || null;
  }
  return safeLinkUrl(raw);
}

// A CSS colour a card may use: #rgb[a], #rrggbb[aa], a keyword, or rgb()/rgba()/hsl()/hsla() of
// numbers (the server's rule; never CSS text such as url(...) or ';').
export function safeCssColour(raw: unknown): string | null {
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > 64) return null;
  if (/^#(?:[0-9a-f]{3,4}|[0-9a-f]{6}|[0-9a-f]{8})$/i.test(raw)) return raw;
  if (/^[a-z]+$/i.test(raw)) return raw;
  if (/^(?:rgba?|hsla?)\((?:[0-9 ,.%/+-]|deg)*\)$/i.test(raw)) return raw;
  return null;
}
