import { describe, expect, it } from 'vitest';
import { botOf, envOf, fnOf, isRefused, routingWarnings, templatesOf, turnsOf, validateEnv, type Bot, type User } from './models';
import { can, rolesFrom } from './roles';
import { matchRoute } from './router';
import { validateLogin } from './validate';
import { testConnectionCall, validateBot } from './validate';
import { validateDomain } from './validate';
import { validateUser } from './validate';
import { jwtSub } from './validate';
import { errorsOf } from './validate';

describe('router', () => {
  const routes = ['/functions', '/functions/new', '/functions/:uuid', '/bots/:id'];
  it('matches static before params and decodes params', () => {
    expect(matchRoute(routes, '/functions/new')?.route).toBe('/functions/new');
    expect(matchRoute(routes, '/functions/a%20b')).toEqual({ route: '/functions/:uuid', params: { uuid: 'a b' } });
    expect(matchRoute(routes, '/functions/')?.route).toBe('/functions');
    expect(matchRoute(routes, '/nope')).toBeNull();
  });
});

describe('roles', () => {
  it('grants by role, ADMIN everything', () => {
    expect(can(['ADMIN'], 'functions.deploy')).toBe(true);
    expect(can(['FAAS_DEVELOPER'], 'functions.deploy')).toBe(false);
    expect(can(['FAAS_DEVELOPER'], 'functions.write')).toBe(true);
    expect(can(['AGENT'], 'agent.workspace')).toBe(true);
    expect(can(['AGENT'], 'bots.read')).toBe(false);
    expect(can([], 'users.read')).toBe(false);
  });
  it('reads roles in several spellings', () => {
    expect(rolesFrom({ roles: ['ADMIN', 'faas-admin'] })).toEqual(['ADMIN', 'FAAS_ADMIN']);
    expect(rolesFrom({ profiles: [{ name: 'Agent Manager' }] })).toEqual(['AGENT_MANAGER']);
    expect(rolesFrom({})).toBeNull();
    expect(rolesFrom(null)).toBeNull();
  });
});

describe('models', () => {
  it('reads a function in the server shape', () => {
    const f = fnOf({ uuid: 'u', name: 'n', eventId: 'e', state: 'Build Error', implementation: { code: 'c', environmentVariables: [{ key: 'A', value: '1' }] }, lastDeployment: { deploymentError: { errorCode: 'x.y', errorMsg: 'bad', errorLogs: [{ level: 'Error', message: 'line 3' }] } } });
    expect([f.uuid, f.event, f.code, f.env[0].key]).toEqual(['u', 'e', 'c', 'A']);
    expect(f.deployError).toContain('bad');
    expect(f.deployError).toContain('(x.y)');
    expect(f.deployError).toContain('line 3');
    expect(envOf({ A: 1 })).toEqual([{ key: 'A', value: '1' }]);
  });
  it('reads templates as one, a list or wrapped', () => {
    expect(templatesOf({ event: 'e', code: 'c', samplePayload: { a: 1 } })[0].samplePayload).toEqual({ a: 1 });
    expect(templatesOf([{ event: 'e', code: 'c' }, { event: 'f', code: 'd' }])).toHaveLength(2);
    expect(templatesOf({ templates: [{ eventId: 'e', template: 'x' }] })[0]).toMatchObject({ event: 'e', code: 'x' });
    expect(templatesOf(null)).toEqual([]);
  });
  it('reads bots with config inline or as JSON text', () => {
    const b = botOf({ id: '1', status: 'ONLINE', config: JSON.stringify({ name: 'b', functionUuid: 'f', escalation: { skill: '2', retries: 1 } }) });
    expect([b.name, b.functionUuid, b.escalation.skill, b.escalation.retries, b.status]).toEqual(['b', 'f', '2', 1, 'ONLINE']);
  });
  it('reads turns and spots refused actions', () => {
    const [t] = turnsOf([{ turnId: 't', outcome: 'OK', actions_json: '[{"type":"TRANSFER","status":"REFUSED","reason":"agent joined"}]', timings_json: '{"invokeMs":3.2}' }]);
    expect(t.actions[0].type).toBe('TRANSFER');
    expect(isRefused(t.actions[0])).toBe(true);
    expect(isRefused({ type: 'SEND', status: 'SENT' })).toBe(false);
    expect(t.timings.invokeMs).toBe(3.2);
  });
  it('validates environment variables like LivePerson', () => {
    expect(validateEnv([{ key: 'API_URL', value: 'x' }])).toEqual([]);
    expect(validateEnv([{ key: '1A', value: '' }]).join()).toMatch(/uppercase/);
    expect(validateEnv([{ key: 'NODE_ENV', value: '' }]).join()).toMatch(/reserved/);
    expect(validateEnv([{ key: 'A', value: '' }, { key: 'A', value: '' }]).join()).toMatch(/duplicate/);
    expect(validateEnv([{ key: '', value: '' }]).join()).toMatch(/empty/);
  });
});

describe('form validation', () => {
  it('login', () => {
    expect(validateLogin({ account: '', username: '', password: '' })).toEqual({ account: expect.any(String), username: expect.any(String), password: expect.any(String) });
    expect(validateLogin({ account: 'a b', username: 'u', password: 'p' }).account).toMatch(/letters/);
    expect(validateLogin({ account: 'demo', username: 'u', password: 'p' })).toEqual({});
  });
  it('bot requires the disclaimer and a function', () => {
    const ok = { name: 'b', functionUuid: 'f', disclaimerAccepted: true, conversationTypes: ['MESSAGING'], skills: [], escalation: { skill: '', message: '', retries: 0, turnTimeoutMs: 5000 } };
    expect(validateBot(ok)).toEqual({});
    expect(Object.keys(validateBot({ ...ok, disclaimerAccepted: false, functionUuid: '' })).sort()).toEqual(['disclaimerAccepted', 'functionUuid']);
    expect(validateBot({ ...ok, escalation: { ...ok.escalation, turnTimeoutMs: 50, retries: 1.5 } })).toHaveProperty('turnTimeoutMs');
  });
  it('Test Connection tests the form unless it is a saved bot left unchanged', () => {
    const f = { name: 'b', functionUuid: 'f', disclaimerAccepted: true, conversationTypes: ['CHAT'], skills: ['7'], escalation: { skill: '', message: '', retries: 0, turnTimeoutMs: 2500 } };
    expect(testConnectionCall('bot 1', false, f)).toEqual({ path: 'bots/bot%201/test-connection', body: {}, unsaved: false });
    for (const call of [testConnectionCall(null, false, f), testConnectionCall('bot 1', true, f)]) {
      expect(call.path).toBe('bots/test-connection');
      expect(call.unsaved).toBe(true);
      expect(call.body).toMatchObject({ vendor: 'CUSTOM_INTEGRATION', functionUuid: 'f', conversationTypes: ['CHAT'], skills: ['7'], escalation: { turnTimeoutMs: 2500 } });
    }
  });
  it('allowlist domains', () => {
    expect(validateDomain('*.example.com')).toBeNull();
    expect(validateDomain('api.example.com')).toBeNull();
    expect(validateDomain('*.*.example.com')).toMatch(/one wildcard/);
    expect(validateDomain('ex*ample.com')).toMatch(/wildcard/);
    expect(validateDomain('bad_domain!')).toMatch(/valid/);
  });
  it('users', () => {
    expect(validateUser({ loginName: 'a', password: 'short', roles: ['AGENT'], type: 'HUMAN', skills: [], maxOpenConversations: 5 }, true).join()).toMatch(/8 characters/);
    expect(validateUser({ loginName: 'a', password: '', roles: [], type: 'BOT', skills: [], maxOpenConversations: 5 }, false)).toEqual([]);
  });
  it('jwt sub and validation results', () => {
    const payload = btoa(JSON.stringify({ sub: 'consumer-1' })).replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
    expect(jwtSub(`h.${payload}.s`)).toBe('consumer-1');
    expect(jwtSub('garbage')).toBe('');
    expect(errorsOf({ valid: false, errors: [{ path: '/elements/0', message: 'x' }] })).toEqual({ valid: false, errors: [{ path: '/elements/0', message: 'x' }] });
    expect(errorsOf({ valid: true, errors: [] }).valid).toBe(true);
  });
});

describe('routingWarnings', () => {
  const skills = [{ id: '1', name: 'general' }, { id: '2', name: 'human' }];
  const bot = (id: string, skills: string[], status = 'ONLINE'): Bot => ({ id, name: `bot${id}`, vendor: 'CUSTOM_INTEGRATION', functionUuid: 'f', conversationTypes: ['MESSAGING'], skills, disclaimerAccepted: true, escalation: { skill: '', message: '', retries: 0, turnTimeoutMs: 1 }, status, raw: {} });
  const user = (loginName: string, skills: string[], type = 'HUMAN'): User => ({ id: loginName, loginName, roles: ['AGENT'], type, skills, maxOpenConversations: 10, pid: '' });
  it('is quiet when the bot is alone on its skills', () => {
    expect(routingWarnings(['1'], skills, 'a', [bot('a', ['1'])], [user('agent', ['2']), user('botuser', ['1'], 'BOT')])).toEqual([]);
  });
  it('names another bot and human agents sharing a skill, by id or by name', () => {
    const w = routingWarnings(['general'], skills, 'a', [bot('a', ['1']), bot('b', ['general'], 'OFFLINE')], [user('agent', ['1'])]);
    expect(w).toHaveLength(2);
    expect(w[0]).toMatch(/“general” is also served by bot “botb” \(OFFLINE\)/);
    expect(w[1]).toMatch(/human agent “agent”/);
  });
  it('treats a new bot (no id) as sharing with every existing bot on the skill', () => {
    expect(routingWarnings(['1'], skills, null, [bot('a', ['1'])], [])).toHaveLength(1);
  });
});
