// What each role may do in the console. The server is the authority (it answers 403); these
// rules only hide or disable what would be refused. ADMIN carries every FaaS permission, as in
// LivePerson's defaults.

export type Permission =
  | 'functions.read'
  | 'functions.write' // create, edit, save, invoke
  | 'functions.deploy' // deploy, undeploy
  | 'functions.admin' // secrets, allowlist
  | 'schedules.manage' // function schedules: list, create, pause, delete
  | 'bots.read'
  | 'bots.create' // create, start
  | 'bots.manage' // edit, stop, delete
  | 'bots.tester' // the conversation tester
  | 'bots.replay'
  | 'agent.workspace'
  | 'skills.read'
  | 'skills.write'
  | 'users.read'
  | 'users.write';

const RULES: Record<Permission, string[]> = {
  'functions.read': ['ADMIN', 'FAAS_ADMIN', 'FAAS_DEVELOPER', 'AGENT_MANAGER'],
  'functions.write': ['ADMIN', 'FAAS_DEVELOPER'],
  'functions.deploy': ['ADMIN', 'FAAS_ADMIN'],
  'functions.admin': ['ADMIN', 'FAAS_ADMIN'],
  'schedules.manage': ['ADMIN', 'FAAS_ADMIN', 'FAAS_DEVELOPER'],
  'bots.read': ['ADMIN', 'AGENT_MANAGER', 'FAAS_ADMIN'],
  'bots.create': ['ADMIN'],
  'bots.manage': ['ADMIN', 'AGENT_MANAGER'],
  'bots.tester': ['ADMIN', 'FAAS_DEVELOPER'],
  'bots.replay': ['ADMIN', 'FAAS_ADMIN'],
  'agent.workspace': ['ADMIN', 'AGENT_MANAGER', 'AGENT'],
  'skills.read': ['ADMIN', 'AGENT_MANAGER'],
  'skills.write': ['ADMIN'],
  'users.read': ['ADMIN', 'AGENT_MANAGER'],
  'users.write': ['ADMIN'],
};

export const ALL_ROLES = ['ADMIN', 'AGENT_MANAGER', 'AGENT', 'FAAS_ADMIN', 'FAAS_DEVELOPER'];

export function can(roles: readonly string[], p: Permission): boolean {
  return RULES[p].some((r) => roles.includes(r));
}

// Roles from a login response or a user record; tolerates several spellings.
export function rolesFrom(obj: unknown): string[] | null {
  if (!obj || typeof obj !== 'object') return null;
  const o = obj as Record<string, unknown>;
  for (const k of ['roles', 'userRoles', 'profiles']) {
    const v = o[k];
    if (Array.isArray(v)) {
      return v
        .map((x) => (typeof x === 'string' ? x : (x as { name?: string; role?: string })?.name ?? (x as { role?: string })?.role))
        .filter((x): x is string => typeof x === 'string')
        .map((x) => x.toUpperCase().replace(/[\s-]+/g, '_'));
    }
  }
  return null;
}
