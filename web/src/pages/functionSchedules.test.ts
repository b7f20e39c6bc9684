import { describe, expect, it } from 'vitest';
import { can } from '../lib/roles';
import { scheduleOf } from './functionSchedules';

describe('schedules', () => {
  it('reads a schedule as the REST API answers it', () => {
    const s = scheduleOf({
      uuid: 's1',
      lambdaUUID: 'f1',
      cronExpression: '*/5 * * * *',
      isActive: true,
      payload: { a: 1 },
      nextRunAt: 1796638500000,
      running: false,
      lastRunAt: 1796638200000,
      lastResult: { ok: false, finishedAt: 1796638201000, durationMs: 4, errorCode: 'com.liveperson.faas.es.notdeployed', errorMsg: 'x' },
    });
    expect(s.cronExpression).toBe('*/5 * * * *');
    expect(s.nextRunAt).toBe(1796638500000);
    expect(s.lastResult?.ok).toBe(false);
    expect(s.lastResult?.errorCode).toBe('com.liveperson.faas.es.notdeployed');
  });
  it('turns hostile or missing fields into safe defaults', () => {
    const s = scheduleOf({ uuid: { toString: 1 }, isActive: 'yes', nextRunAt: 'soon', lastResult: 'ok' });
    expect(s.isActive).toBe(false);
    expect(s.nextRunAt).toBeNull();
    expect(s.lastResult).toBeNull();
    expect(scheduleOf(null).uuid).toBe('');
  });
  it('lets FaaS Admins and Developers manage schedules, no one else', () => {
    for (const r of ['ADMIN', 'FAAS_ADMIN', 'FAAS_DEVELOPER']) expect(can([r], 'schedules.manage')).toBe(true);
    for (const r of ['AGENT', 'AGENT_MANAGER', 'FAAS_INVOCATION']) expect(can([r], 'schedules.manage')).toBe(false);
  });
});
