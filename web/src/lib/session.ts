// The login session, kept in sessionStorage (per tab).

export interface Session {
  account: string;
  username: string;
  bearer: string;
  userId: string;
  userPid: string;
  roles: string[];
  // False when the roles could not be read: the console then shows everything and relies on
  // the server's 403 answers.
  rolesKnown?: boolean;
}

const KEY = 'parley.session';

export function loadSession(): Session | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    if (!raw) return null;
    const s = JSON.parse(raw) as Session;
    if (!s.bearer || !s.account) return null;
    if (!Array.isArray(s.roles)) s.roles = [];
    return s;
  } catch {
    return null;
  }
}

export function saveSession(s: Session): void {
  sessionStorage.setItem(KEY, JSON.stringify(s));
}

export function clearSession(): void {
  sessionStorage.removeItem(KEY);
}
