import { describe, expect, it } from 'vitest';
import { countdown, formatDuration, ttrDeadline } from './ttr';

describe('TTR', () => {
  it('prefers effectiveTTR, else startTs + value', () => {
    expect(ttrDeadline({ effectiveTTR: 5000, startTs: 1, ttrValue: 1 })).toBe(5000);
    expect(ttrDeadline({ effectiveTTR: -1, startTs: 1000, ttrValue: 300 })).toBe(301000);
    expect(ttrDeadline({ effectiveTTR: -1 })).toBeNull();
    expect(ttrDeadline({ startTs: 0, ttrValue: 10 })).toBeNull();
  });
  it('formats durations', () => {
    expect(formatDuration(0)).toBe('0:00');
    expect(formatDuration(59_999)).toBe('0:59');
    expect(formatDuration(299_000)).toBe('4:59');
    expect(formatDuration(3_723_000)).toBe('1:02:03');
    expect(formatDuration(-12_000)).toBe('0:12');
    expect(formatDuration(2 * 86400_000 + 5 * 3600_000)).toBe('2d 5h');
  });
  it('counts down and marks overdue', () => {
    expect(countdown(null, 0)).toBeNull();
    expect(countdown(10_000, 0)).toEqual({ overdue: false, text: '0:10 left', remainingMs: 10_000 });
    expect(countdown(10_000, 10_000)).toMatchObject({ overdue: true, text: 'overdue 0:00' });
    expect(countdown(10_000, 22_500)).toMatchObject({ overdue: true, text: 'overdue 0:12' });
  });
});
