// The Schedules tab of the function page: the function's cron schedules (REST `schedules`),
// with their next and last run and whether the last run succeeded (LivePerson's scheduling UI,
// §4.17); create, pause/resume and delete for FaaS Admins and Developers.

import { api, describeError } from '../lib/api';
import { busy, fmtDateTime, h } from '../lib/h';
import { alertBox, confirmDialog, MessageSlot, stateBadge, toast } from '../lib/ui';

export interface Schedule {
  uuid: string;
  lambdaUUID: string;
  cronExpression: string;
  isActive: boolean;
  payload: unknown;
  nextRunAt: number | null;
  running: boolean;
  lastRunAt: number | null;
  lastResult: { ok: boolean; finishedAt: number; durationMs: number; errorCode?: string; errorMsg?: string } | null;
}

// A schedule as the REST API answers it; unknown shapes become safe defaults.
export function scheduleOf(v: unknown): Schedule {
  const o = (v && typeof v === 'object' ? v : {}) as Record<string, unknown>;
  const num = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) ? x : null);
  const str = (x: unknown) => (typeof x === 'string' ? x : '');
  const lr = o.lastResult && typeof o.lastResult === 'object' ? (o.lastResult as Record<string, unknown>) : null;
  return {
    uuid: str(o.uuid),
    lambdaUUID: str(o.lambdaUUID),
    cronExpression: str(o.cronExpression),
    isActive: o.isActive === true,
    payload: o.payload ?? {},
    nextRunAt: num(o.nextRunAt),
    running: o.running === true,
    lastRunAt: num(o.lastRunAt),
    lastResult: lr
      ? {
          ok: lr.ok === true,
          finishedAt: num(lr.finishedAt) ?? 0,
          durationMs: num(lr.durationMs) ?? 0,
          errorCode: typeof lr.errorCode === 'string' ? lr.errorCode : undefined,
          errorMsg: typeof lr.errorMsg === 'string' ? lr.errorMsg : undefined,
        }
      : null,
  };
}

// Fills `panel` and returns the loader the tab calls when it is shown.
export function schedulesPanel(panel: HTMLElement, uuid: string, canManage: boolean): () => Promise<void> {
  const list = h('div');
  const msg = new MessageSlot();
  const cron = h('input', { id: 'schedule-cron', placeholder: '*/15 * * * *', autocomplete: 'off', spellcheck: 'false', disabled: !canManage });
  const payload = h('textarea', { id: 'schedule-payload', rows: '3', class: 'mono', disabled: !canManage }, '{}');
  const addBtn = h('button', { class: 'btn primary', type: 'button', disabled: !canManage, title: canManage ? 'Create the schedule' : 'Needs the FaaS Developer or FaaS Admin role' }, 'Add schedule');
  const refresh = h('button', { class: 'btn', type: 'button' }, 'Refresh');

  panel.append(
    h('p', { class: 'muted' }, 'Cron expressions, always in UTC: minute hour day-of-month month day-of-week (e.g. ', h('code', null, '0 9 * * MON-FRI'), '). Runs use the deployed version; each run is in the logs. After downtime, missed runs of the last hour run once.'),
    h(
      'div',
      { class: 'row wrap' },
      h('div', { class: 'field' }, h('label', { for: 'schedule-cron' }, 'Cron expression'), cron),
      h('div', { class: 'field grow' }, h('label', { for: 'schedule-payload' }, 'Payload (JSON)'), payload),
    ),
    h('div', { class: 'row' }, addBtn, refresh),
    msg.el,
    list,
  );

  async function load(): Promise<void> {
    list.replaceChildren(h('p', { class: 'loading' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' Loading schedules…'));
    try {
      const v = await api('GET', `schedules?lambdaUUID=${encodeURIComponent(uuid)}`);
      const all = (Array.isArray(v) ? v : []).map(scheduleOf);
      list.replaceChildren(all.length ? table(all) : h('p', { class: 'muted' }, 'No schedules.'));
    } catch (e) {
      list.replaceChildren(alertBox('error', describeError(e)));
    }
  }

  function table(all: Schedule[]): HTMLElement {
    return h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'table schedules' },
        h('thead', null, h('tr', null, ['Cron (UTC)', 'State', 'Next run', 'Last run', 'Last result', ''].map((c) => h('th', { scope: 'col' }, c)))),
        h(
          'tbody',
          null,
          all.map((s) => {
            const toggle = h('button', { class: 'btn small', type: 'button', disabled: !canManage }, s.isActive ? 'Pause' : 'Resume');
            const del = h('button', { class: 'btn small danger', type: 'button', disabled: !canManage }, 'Delete');
            toggle.addEventListener('click', () =>
              void busy(toggle, async () => {
                try {
                  await api('PUT', `schedules/${encodeURIComponent(s.uuid)}`, { isActive: !s.isActive });
                  await load();
                } catch (e) {
                  msg.show(alertBox('error', describeError(e)));
                }
              }),
            );
            del.addEventListener('click', () =>
              void (async () => {
                if (!(await confirmDialog('Delete schedule', `Delete the schedule '${s.cronExpression}'? Its runs stop; the logs of past runs stay.`, 'Delete'))) return;
                try {
                  await api('DELETE', `schedules/${encodeURIComponent(s.uuid)}`);
                  toast('Schedule deleted', 'ok');
                  await load();
                } catch (e) {
                  msg.show(alertBox('error', describeError(e)));
                }
              })(),
            );
            const r = s.lastResult;
            return h(
              'tr',
              { 'data-schedule': s.uuid },
              h('td', { class: 'mono' }, s.cronExpression),
              h('td', null, stateBadge(s.running ? 'Running' : s.isActive ? 'Active' : 'Paused')),
              h('td', { class: 'nowrap' }, s.isActive ? fmtDateTime(s.nextRunAt) : '—'),
              h('td', { class: 'nowrap' }, fmtDateTime(s.lastRunAt)),
              h('td', null, r ? (r.ok ? stateBadge('Succeeded') : h('span', null, stateBadge('Failed'), ' ', h('span', { class: 'mono small' }, `${r.errorCode ?? ''}: ${r.errorMsg ?? ''}`))) : '—'),
              h('td', { class: 'nowrap' }, toggle, ' ', del),
            );
          }),
        ),
      ),
    );
  }

  addBtn.addEventListener('click', () =>
    void busy(addBtn, async () => {
      msg.clear();
      let body: unknown;
      try {
        body = payload.value.trim() ? JSON.parse(payload.value) : {};
      } catch (e) {
        msg.show(alertBox('error', `The payload is not JSON: ${(e as Error).message}`));
        return;
      }
      try {
        await api('POST', 'schedules', { lambdaUUID: uuid, cronExpression: cron.value, isActive: true, payload: body });
        toast('Schedule added', 'ok');
        cron.value = '';
        await load();
      } catch (e) {
        msg.show(alertBox('error', describeError(e)));
      }
    }),
  );
  refresh.addEventListener('click', () => void busy(refresh, load));
  return load;
}
