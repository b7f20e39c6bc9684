import { api, asList } from './api';
import { rolesFrom } from './roles';
import type { Session } from './session';

// Resolves the user's roles after login: from the login config if present, else from the user list.
export async function resolveRoles(s: Session, config: Record<string, unknown> | undefined): Promise<string[] | null> {
  const fromConfig = rolesFrom(config);
  if (fromConfig && fromConfig.length) return fromConfig;
  try {
    const users = asList<Record<string, unknown>>(await api('GET', 'users'), 'users');
    const me = users.find((u) => String(u.id ?? u.userId) === s.userId || u.loginName === s.username);
    const r = rolesFrom(me);
    if (r) return r;
  } catch {
    /* not allowed to list users: fall through */
  }
  return null;
}
