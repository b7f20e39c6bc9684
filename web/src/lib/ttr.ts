// Time-to-response: when a waiting conversation becomes overdue, and how to show the countdown.

export interface TtrInput {
  effectiveTTR?: number; // absolute ms deadline, -1 or absent when unknown
  startTs?: number; // ms
  ttrValue?: number; // seconds
  ringExpirationTs?: number;
}

// The deadline in ms since the epoch, or null when nothing is known.
export function ttrDeadline(t: TtrInput): number | null {
  if (typeof t.effectiveTTR === 'number' && t.effectiveTTR > 0) return t.effectiveTTR;
  if (t.startTs && t.startTs > 0 && typeof t.ttrValue === 'number' && t.ttrValue >= 0) return t.startTs + t.ttrValue * 1000;
  return null;
}

// "4:59", "1:02:03", "3d 4h"; negative values are formatted by their magnitude.
export function formatDuration(ms: number): string {
  const total = Math.floor(Math.abs(ms) / 1000);
  const d = Math.floor(total / 86400);
  const hh = Math.floor((total % 86400) / 3600);
  const mm = Math.floor((total % 3600) / 60);
  const ss = total % 60;
  const p = (n: number) => String(n).padStart(2, '0');
  if (d > 0) return `${d}d ${hh}h`;
  if (hh > 0) return `${hh}:${p(mm)}:${p(ss)}`;
  return `${mm}:${p(ss)}`;
}

export interface Countdown {
  overdue: boolean;
  text: string; // "4:59 left" or "overdue 0:12"
  remainingMs: number;
}

export function countdown(deadline: number | null, now: number): Countdown | null {
  if (deadline === null) return null;
  const remaining = deadline - now;
  if (remaining <= 0) return { overdue: true, text: `overdue ${formatDuration(-remaining)}`, remainingMs: remaining };
  return { overdue: false, text: `${formatDuration(remaining)} left`, remainingMs: remaining };
}
