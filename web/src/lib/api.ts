// REST client for /api/v1/accounts/{acc}/… and the LivePerson-compatible login endpoints.
// Errors come back as {"error":{"code","message"}}; ApiError carries them to the page.

import { inWords } from './protocol';
import { clearSession, loadSession } from './session';

export class ApiError extends Error {
  constructor(
    public readonly status: number,
    public readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
  get forbidden(): boolean {
    return this.status === 403;
  }
}

// Turns any thrown value into a sentence for the user.
export function describeError(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.status === 403) return `Not allowed: ${e.message} (your role does not permit this).`;
    if (e.status === 0) return e.message;
    return inWords(e.status, e.message);
  }
  if (e instanceof Error) return e.message;
  return String(e);
}

export async function parseError(res: Response): Promise<ApiError> {
  let code = `HTTP_${res.status}`;
  let message = res.statusText || 'Request failed';
  try {
    const text = await res.text();
    if (text) {
      try {
        const j = JSON.parse(text) as { error?: { code?: string; message?: string } | string; message?: string };
        if (j && typeof j.error === 'object' && j.error) {
          code = j.error.code ?? code;
          message = j.error.message ?? message;
        } else if (typeof j.error === 'string') {
          message = j.error;
        } else if (typeof j.message === 'string') {
          message = j.message;
        }
      } catch {
        message = text.slice(0, 300);
      }
    }
  } catch {
    /* body unreadable: keep the status text */
  }
  return new ApiError(res.status, code, message);
}

let onUnauthorized: (() => void) | null = null;
export function setUnauthorizedHandler(fn: () => void): void {
  onUnauthorized = fn;
}

export async function rawFetch(
  method: string,
  url: string,
  body?: unknown,
  bearer?: string,
): Promise<unknown> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, 'NETWORK', `Cannot reach the server (${(e as Error).message}). Check that Parley is running.`);
  }
  if (!res.ok) throw await parseError(res);
  if (res.status === 204) return null;
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

// Calls /api/v1/accounts/{acc}/{path} with the session's bearer.
export async function api<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  const s = loadSession();
  if (!s) {
    onUnauthorized?.();
    throw new ApiError(401, 'UNAUTHENTICATED', 'Please log in.');
  }
  try {
    return (await rawFetch(method, `/api/v1/accounts/${encodeURIComponent(s.account)}/${path}`, body, s.bearer)) as T;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      clearSession();
      onUnauthorized?.();
    }
    throw e;
  }
}

export interface LoginResult {
  bearer: string;
  csrf?: string;
  config?: Record<string, unknown>;
}

export async function login(account: string, username: string, password: string): Promise<LoginResult> {
  const r = (await rawFetch('POST', `/api/account/${encodeURIComponent(account)}/login?v=1.3`, {
    username,
    password,
  })) as LoginResult;
  if (!r || typeof r.bearer !== 'string') throw new ApiError(500, 'BAD_RESPONSE', 'The login response had no bearer.');
  return r;
}

export async function logout(account: string, bearer: string): Promise<void> {
  try {
    await rawFetch('POST', `/api/account/${encodeURIComponent(account)}/logout?v=1.3`, {}, bearer);
  } catch {
    /* the session is dropped locally either way */
  }
}

export async function signup(account: string): Promise<string> {
  const r = (await rawFetch('POST', `/api/account/${encodeURIComponent(account)}/signup`, {})) as { jwt?: string };
  if (!r || typeof r.jwt !== 'string') throw new ApiError(500, 'BAD_RESPONSE', 'The signup response had no jwt.');
  return r.jwt;
}

// Lists come back either as a bare array or wrapped ({items:[…]}, {functions:[…]}, …).
export function asList<T = Record<string, unknown>>(v: unknown, ...keys: string[]): T[] {
  if (Array.isArray(v)) return v as T[];
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    for (const k of [...keys, 'items', 'data', 'results']) if (Array.isArray(o[k])) return o[k] as T[];
  }
  return [];
}

export function wsUrl(path: string): string {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}${path}`;
}
