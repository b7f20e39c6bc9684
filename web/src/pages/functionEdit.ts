import { api, asList, describeError } from '../lib/api';
import { busy, fmtDateTime, h } from '../lib/h';
import { botOf, deployErrorOf, EVENTS, fnOf, logsOf, templatesOf, validateEnv, type Bot, type EnvVar, type Fn } from '../lib/models';
import { alertBox, confirmDialog, MessageSlot, pre, pretty, stateBadge, toast } from '../lib/ui';
import { setLeaveGuard } from '../lib/leave';
import { safeReturnPath } from '../lib/safe';
import { schedulesPanel } from './functionSchedules';
import type { PageContext } from '../main';

const TERMINAL = /^(productive|build error|deploy error|draft|modified|undeployed|failed)$/i;

export function tabs(names: string[], onSelect?: (i: number) => void): { bar: HTMLElement; panels: HTMLElement[]; select: (i: number) => void } {
  const base = `tabs-${Math.random().toString(36).slice(2, 8)}`;
  const buttons: HTMLButtonElement[] = [];
  const panels: HTMLElement[] = [];
  const select = (i: number) => {
    buttons.forEach((b, j) => {
      b.setAttribute('aria-selected', String(i === j));
      b.tabIndex = i === j ? 0 : -1;
      panels[j].hidden = i !== j;
    });
    onSelect?.(i);
  };
  names.forEach((n, i) => {
    const b = h('button', { role: 'tab', id: `${base}-t${i}`, 'aria-controls': `${base}-p${i}`, class: 'tab', type: 'button' }, n);
    b.addEventListener('click', () => select(i));
    b.addEventListener('keydown', (ev) => {
      const k = (ev as KeyboardEvent).key;
      if (k === 'ArrowRight' || k === 'ArrowLeft') {
        const j = (i + (k === 'ArrowRight' ? 1 : names.length - 1)) % names.length;
        select(j);
        buttons[j].focus();
        ev.preventDefault();
      }
    });
    buttons.push(b);
    panels.push(h('section', { role: 'tabpanel', id: `${base}-p${i}`, 'aria-labelledby': `${base}-t${i}`, class: 'tab-panel', tabindex: '0' }));
  });
  const bar = h('div', { role: 'tablist', class: 'tabs' }, buttons);
  select(0);
  return { bar, panels, select };
}

export default async function functionEditPage(root: HTMLElement, ctx: PageContext): Promise<() => void> {
  const uuid = ctx.params.uuid;
  // Only a path of this console; anything else (javascript:, another origin) is ignored.
  const returnTo = safeReturnPath(ctx.query.get('return'), '') || null;
  const canWrite = ctx.can('functions.write');
  const canDeploy = ctx.can('functions.deploy');
  let fn: Fn;
  root.append(h('p', { class: 'loading' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' Loading function…'));
  try {
    fn = fnOf(await api('GET', `functions/${encodeURIComponent(uuid)}`));
  } catch (e) {
    root.replaceChildren(h('h1', null, 'Function'), alertBox('error', describeError(e)), h('a', { href: '/functions' }, 'Back to functions'));
    return () => {};
  }
  root.replaceChildren();
  const { createEditor } = await import('../lib/editor');
  let stopped = false;
  let dirty = false;

  const stateEl = h('span', { class: 'fn-state' });
  const versionEl = h('span', { class: 'muted' });
  const deployArea = h('div', { class: 'deploy-area', 'aria-live': 'polite' });
  const msg = new MessageSlot();
  const setFn = (f: Fn) => {
    fn = f;
    stateEl.replaceChildren(stateBadge(f.state));
    stateEl.setAttribute('data-state', f.state);
    versionEl.textContent = f.version ? `version ${f.version}` : '';
    undeployBtn.disabled = !canDeploy || !/productive|modified/i.test(f.state);
  };

  const saveBtn = h('button', { class: 'btn primary', disabled: !canWrite, title: canWrite ? 'Save code and settings (Ctrl+S)' : 'Needs the FaaS Developer role' }, 'Save');
  const deployBtn = h('button', { class: 'btn', disabled: !canDeploy, title: canDeploy ? 'Deploy the saved version' : 'Needs the FaaS Admin role' }, 'Deploy');
  const undeployBtn = h('button', { class: 'btn', disabled: true }, 'Undeploy');

  // ---- Code tab
  const codeHost = h('div', { class: 'editor-host code-editor', 'data-editor': 'code' });
  const dirtyEl = h('span', { class: 'muted dirty', 'aria-live': 'polite' });
  const description = h('input', { value: fn.description, disabled: !canWrite, id: 'fn-description' });
  description.addEventListener('input', () => markDirty());

  // ---- Test tab
  const payloadHost = h('div', { class: 'editor-host', 'data-editor': 'payload' });
  const invokeBtn = h('button', { class: 'btn primary', disabled: !canWrite }, 'Invoke');
  const resetPayload = h('button', { class: 'btn', type: 'button' }, 'Reset to sample payload');
  const welcomePayload = h('button', { class: 'btn', type: 'button' }, 'Chat start (WELCOME)');
  const testOut = h('div', { class: 'test-out', 'aria-live': 'polite' });
  // Bot functions: the channel the connector's review assumes (quick replies are MESSAGING only).
  const botFunction = fn.event === 'bot_connectors_custom_integration' || fn.event === 'bot_connectors_post_hook';
  const channelSel = h('select', { id: 'test-channel' }, h('option', { value: 'MESSAGING' }, 'Messaging'), h('option', { value: 'CHAT' }, 'Chat'));

  // ---- Env tab
  let env: EnvVar[] = fn.env.map((e) => ({ ...e }));
  const envRows = h('div', { class: 'env-rows' });
  const envMsg = new MessageSlot();
  const addEnv = h('button', { class: 'btn', type: 'button', disabled: !canWrite }, 'Add variable');

  // ---- Logs / deployments tabs
  const logsOut = h('div');
  const logsRefresh = h('button', { class: 'btn', type: 'button' }, 'Refresh logs');
  const depOut = h('div');

  const t = tabs(['Code', 'Test', 'Environment variables', 'Logs', 'Deployments', 'Schedules'], (i) => {
    if (i === 3) void loadLogs();
    if (i === 4) void loadDeployments();
    if (i === 5) void loadSchedules();
  });
  const evName = EVENTS.find((e) => e.id === fn.event)?.name ?? fn.event;
  root.append(
    h(
      'div',
      { class: 'page-head' },
      h('div', null, h('h1', null, fn.name), h('p', { class: 'muted' }, evName, ' · ', stateEl, ' ', versionEl)),
      h('div', { class: 'actions' }, saveBtn, deployBtn, undeployBtn, returnTo ? h('a', { class: 'btn', href: returnTo }, 'Back to bot') : h('a', { class: 'btn', href: '/functions' }, 'All functions')),
    ),
    msg.el,
    deployArea,
    t.bar,
    ...t.panels,
  );
  setFn(fn);
  if (!canWrite) msg.show(alertBox('info', 'Read-only: editing and invoking need the FaaS Developer role.'));

  t.panels[0].append(
    h('div', { class: 'field' }, h('label', { for: 'fn-description' }, 'Description'), description),
    h('div', { class: 'row between' }, h('h2', { id: 'code-label' }, 'Code'), dirtyEl),
    codeHost,
  );
  const code = createEditor(codeHost, fn.code, { lang: 'js', label: 'Function code', readOnly: !canWrite, onChange: () => markDirty(), minHeight: '24rem' });

  let sample: unknown = { headers: [], payload: {} };
  const payloadEditor = createEditor(payloadHost, pretty(sample), { lang: 'json', label: 'Test payload (JSON)', minHeight: '12rem' });
  t.panels[1].append(
    h('p', { class: 'muted' }, 'Edit the invocation payload and invoke the saved code (deployed or not). Test logs are not stored.'),
    h('h2', null, 'Payload'),
    payloadHost,
    h('div', { class: 'row' }, invokeBtn, resetPayload, fn.event === 'bot_connectors_custom_integration' ? welcomePayload : null, botFunction ? h('span', { class: 'field inline' }, h('label', { for: 'test-channel' }, 'Check the result for'), channelSel) : null),
    testOut,
  );
  void (async () => {
    try {
      const tpl = templatesOf(await api('GET', `functions/templates?event=${encodeURIComponent(fn.event)}`))[0];
      if (tpl && tpl.samplePayload) {
        sample = tpl.samplePayload;
        payloadEditor.set(pretty(sample));
      }
    } catch {
      /* keep the empty payload */
    }
  })();
  resetPayload.addEventListener('click', () => payloadEditor.set(pretty(sample)));
  // The first turn of a CHAT conversation: the WELCOME event, before the consumer says anything.
  welcomePayload.addEventListener('click', () => {
    payloadEditor.set(pretty(welcomeOf(sample)));
    channelSel.value = 'CHAT';
  });

  t.panels[2].append(
    h('p', { class: 'muted' }, 'Read as process.env.NAME. Changes take effect after the next deploy. Do not put secrets here.'),
    envRows,
    envMsg.el,
    h('div', { class: 'row' }, addEnv, h('span', { class: 'muted' }, 'Saved with the function (Save).')),
  );
  t.panels[3].append(h('div', { class: 'row' }, logsRefresh), logsOut);
  t.panels[4].append(depOut);
  const loadSchedules = schedulesPanel(t.panels[5], uuid, ctx.can('schedules.manage'));

  function markDirty(): void {
    dirty = true;
    dirtyEl.textContent = 'Unsaved changes';
  }

  function renderEnv(): void {
    envRows.replaceChildren(
      ...(env.length ? [] : [h('p', { class: 'muted' }, 'No variables.')]),
      ...env.map((e, i) => {
        const k = h('input', { value: e.key, 'aria-label': `Name of variable ${i + 1}`, disabled: !canWrite, placeholder: 'NAME', class: 'mono' });
        const v = h('input', { value: e.value, 'aria-label': `Value of variable ${i + 1}`, disabled: !canWrite, placeholder: 'value' });
        k.addEventListener('input', () => {
          e.key = k.value.trim();
          markDirty();
        });
        v.addEventListener('input', () => {
          e.value = v.value;
          markDirty();
        });
        const rm = h('button', { class: 'btn small', type: 'button', disabled: !canWrite, 'aria-label': `Remove variable ${e.key || i + 1}` }, 'Remove');
        rm.addEventListener('click', () => {
          env.splice(i, 1);
          markDirty();
          renderEnv();
        });
        return h('div', { class: 'env-row' }, k, v, rm);
      }),
    );
  }
  renderEnv();
  addEnv.addEventListener('click', () => {
    env.push({ key: '', value: '' });
    markDirty();
    renderEnv();
    (envRows.lastElementChild?.querySelector('input') as HTMLInputElement | null)?.focus();
  });

  async function save(): Promise<boolean> {
    const errs = validateEnv(env);
    if (errs.length) {
      envMsg.show(alertBox('error', errs.join(' ')));
      t.select(2);
      return false;
    }
    envMsg.clear();
    try {
      const f = fnOf(await api('PUT', `functions/${encodeURIComponent(uuid)}`, { code: code.get(), description: description.value, environmentVariables: env }));
      setFn(f.uuid ? f : fnOf(await api('GET', `functions/${encodeURIComponent(uuid)}`)));
      dirty = false;
      dirtyEl.textContent = 'Saved';
      msg.clear();
      toast('Function saved', 'ok');
      return true;
    } catch (e) {
      msg.error(e);
      return false;
    }
  }
  saveBtn.addEventListener('click', () => void busy(saveBtn, save));
  const onKey = (ev: KeyboardEvent) => {
    if ((ev.ctrlKey || ev.metaKey) && ev.key === 's' && canWrite) {
      ev.preventDefault();
      void busy(saveBtn, save);
    }
  };
  document.addEventListener('keydown', onKey);

  async function pollUntilSettled(started: number, verb: string, progress: HTMLElement): Promise<Fn> {
    let f = fnOf(await api('GET', `functions/${encodeURIComponent(uuid)}`));
    while (!stopped && !TERMINAL.test(f.state) && Date.now() - started < 90000) {
      progress.textContent = `${verb}… ${Math.round((Date.now() - started) / 1000)} s (state: ${f.state})`;
      await new Promise((r) => setTimeout(r, 1000));
      f = fnOf(await api('GET', `functions/${encodeURIComponent(uuid)}`));
    }
    return f;
  }

  async function lastDeploymentError(): Promise<string> {
    try {
      const v = await api('GET', `functions/${encodeURIComponent(uuid)}/deployments`);
      const list = Array.isArray(v) ? v : ((v as { deployments?: unknown[] }).deployments ?? []);
      const d = list[0] as Record<string, unknown> | undefined;
      if (!d) return '';
      const err = d.error ?? d.deploymentError ?? d.error_json;
      if (!err) return '';
      return deployErrorOf(typeof err === 'string' ? JSON.parse(err) : err);
    } catch {
      return '';
    }
  }

  async function runDeploy(undeploy: boolean): Promise<void> {
    if (!undeploy && dirty) {
      if (!canWrite || !(await save())) {
        deployArea.replaceChildren(alertBox('warn', 'Save your changes before deploying.'));
        return;
      }
    }
    const verb = undeploy ? 'Undeploying' : 'Deploying';
    const progress = h('span', null, `${verb}…`);
    deployArea.replaceChildren(
      h('div', { class: 'alert alert-info deploy-progress', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' ', progress, h('div', { class: 'progress' }, h('div', { class: 'bar' }))),
    );
    const started = Date.now();
    try {
      const r = await api('POST', `functions/${encodeURIComponent(uuid)}/${undeploy ? 'undeploy' : 'deploy'}`, {});
      let f = fnOf(r);
      if (!f.uuid || !TERMINAL.test(f.state)) f = await pollUntilSettled(started, verb, progress);
      setFn(f);
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      if (/error|fail/i.test(f.state)) {
        const detail = f.deployError || (await lastDeploymentError()) || 'No details were given.';
        deployArea.replaceChildren(h('div', { class: 'alert alert-error deploy-error', role: 'alert' }, h('strong', null, `${f.state}: `), h('pre', { class: 'code' }, detail)));
      } else {
        deployArea.replaceChildren(alertBox('ok', undeploy ? `Undeployed in ${secs} s (state: ${f.state}).` : `Deployed in ${secs} s (state: ${f.state}).`));
      }
    } catch (e) {
      // A failed deploy may answer 4xx with the build error; show it in place.
      const detail = (await lastDeploymentError()) || '';
      deployArea.replaceChildren(h('div', { class: 'alert alert-error deploy-error', role: 'alert' }, h('strong', null, `${verb} failed: `), describeError(e), detail ? h('pre', { class: 'code' }, detail) : null));
      try {
        setFn(fnOf(await api('GET', `functions/${encodeURIComponent(uuid)}`)));
      } catch {
        /* keep the old state */
      }
    }
  }
  deployBtn.addEventListener('click', () => void busy(deployBtn, () => runDeploy(false)));
  undeployBtn.addEventListener('click', () =>
    void busy(undeployBtn, async () => {
      // Say what depends on the deployment before taking it away.
      let users: Bot[] = [];
      try {
        users = asList(await api('GET', 'bots'), 'bots').map(botOf).filter((b) => b.functionUuid === uuid);
      } catch {
        users = [];
      }
      const online = users.filter((b) => b.status === 'ONLINE');
      const what = users.length
        ? `Bots using it: ${users.map((b) => `“${b.name}” (${b.status})`).join(', ')}.${online.length ? ' While it is undeployed their turns fail and their conversations are escalated.' : ''}`
        : 'No bot uses it; external callers (the functions gateway) get an error until it is deployed again.';
      if (!(await confirmDialog('Undeploy function', `Undeploy “${fn.name}”? ${what}`, 'Undeploy'))) return;
      await runDeploy(true);
    }),
  );

  invokeBtn.addEventListener('click', () =>
    void busy(invokeBtn, async () => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(payloadEditor.get());
      } catch (e) {
        testOut.replaceChildren(alertBox('error', `The payload is not valid JSON: ${(e as Error).message}`));
        return;
      }
      if (payloadEditor.get().length > 10000) {
        testOut.replaceChildren(alertBox('error', 'The test payload is limited to 10,000 characters.'));
        return;
      }
      // Accept either a full {headers,payload} input or a bare payload.
      const p = parsed as { headers?: unknown; payload?: unknown };
      const body: Record<string, unknown> = p && typeof p === 'object' && 'payload' in p ? { headers: p.headers ?? [], payload: p.payload } : { headers: [], payload: parsed };
      if (botFunction) body.channel = channelSel.value;
      testOut.replaceChildren(h('p', { class: 'loading' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' Invoking…'));
      const t0 = performance.now();
      try {
        const r = (await api('POST', `functions/${encodeURIComponent(uuid)}/invoke`, body)) as {
          result?: unknown;
          logs?: unknown;
          durationMs?: number;
          error?: unknown;
          connector?: ConnectorReview;
        };
        const rt = Math.round(performance.now() - t0);
        const logs = logsOf(r.logs ?? []);
        const err = r.error;
        testOut.replaceChildren(
          h(
            'div',
            { class: 'invoke-result' },
            h('p', { class: 'row' }, err ? stateBadge('Failed') : stateBadge('Succeeded'), h('span', { class: 'duration' }, `Duration ${typeof r.durationMs === 'number' ? r.durationMs.toFixed(1) : '?'} ms`), h('span', { class: 'muted' }, `(round trip ${rt} ms)`)),
            err ? h('div', { class: 'alert alert-error', role: 'alert' }, h('strong', null, 'Error: '), pre(err)) : null,
            h('h3', null, 'Result'),
            pre(r.result ?? null, 'invoke-output'),
            r.connector ? reviewView(r.connector) : null,
            h('h3', null, `Logs (${logs.length})`),
            logTable(logs),
          ),
        );
      } catch (e) {
        testOut.replaceChildren(alertBox('error', describeError(e)));
      }
    }),
  );

  async function loadLogs(): Promise<void> {
    logsOut.replaceChildren(h('p', { class: 'loading' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' Loading logs…'));
    try {
      const logs = logsOf(await api('GET', `functions/${encodeURIComponent(uuid)}/logs`));
      logsOut.replaceChildren(logs.length ? logTable(logs) : h('p', { class: 'muted' }, 'No invocation logs yet. Debug logs and test-invocation logs are never stored.'));
    } catch (e) {
      logsOut.replaceChildren(alertBox('error', describeError(e)));
    }
  }
  logsRefresh.addEventListener('click', () => void busy(logsRefresh, loadLogs));

  async function loadDeployments(): Promise<void> {
    depOut.replaceChildren(h('p', { class: 'loading' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' Loading deployments…'));
    try {
      const v = await api('GET', `functions/${encodeURIComponent(uuid)}/deployments`);
      const list = (Array.isArray(v) ? v : ((v as { deployments?: unknown[] }).deployments ?? [])) as Record<string, unknown>[];
      if (!list.length) {
        depOut.replaceChildren(h('p', { class: 'muted' }, 'Never deployed.'));
        return;
      }
      depOut.replaceChildren(
        h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { class: 'table' },
            h('thead', null, h('tr', null, ['When', 'State', 'Version', 'By', 'Error'].map((c) => h('th', { scope: 'col' }, c)))),
            h(
              'tbody',
              null,
              list.map((d) => {
                const err = d.error ?? d.deploymentError ?? d.error_json;
                let errText = '';
                if (err) {
                  try {
                    errText = deployErrorOf(typeof err === 'string' ? JSON.parse(err) : err);
                  } catch {
                    errText = String(err);
                  }
                }
                return h(
                  'tr',
                  null,
                  h('td', null, fmtDateTime((d.createdAt ?? d.created_at ?? d.deployedAt) as number)),
                  h('td', null, stateBadge(String(d.state ?? d.deploymentState ?? ''))),
                  h('td', null, String(d.functionVersion ?? d.lambdaVersion ?? d.version ?? '')),
                  h('td', null, String(d.createdBy ?? '')),
                  h('td', null, errText ? h('pre', { class: 'code small' }, errText) : ''),
                );
              }),
            ),
          ),
        ),
      );
    } catch (e) {
      depOut.replaceChildren(alertBox('error', describeError(e)));
    }
  }

  if (fn.deployError && /error/i.test(fn.state)) {
    deployArea.replaceChildren(h('div', { class: 'alert alert-error deploy-error', role: 'alert' }, h('strong', null, `${fn.state}: `), h('pre', { class: 'code' }, fn.deployError)));
  }

  const beforeUnload = (ev: BeforeUnloadEvent) => {
    if (dirty) ev.preventDefault();
  };
  window.addEventListener('beforeunload', beforeUnload);
  setLeaveGuard(async () => !dirty || (await confirmDialog('Unsaved changes', 'This function has changes that are not saved. Leave the page and lose them?', 'Leave without saving')));
  return () => {
    setLeaveGuard(null);
    stopped = true;
    document.removeEventListener('keydown', onKey);
    window.removeEventListener('beforeunload', beforeUnload);
    code.view.destroy();
    payloadEditor.view.destroy();
  };
}

export function logTable(logs: ReturnType<typeof logsOf>): HTMLElement {
  if (!logs.length) return h('p', { class: 'muted' }, 'No logs.');
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: 'table logs' },
      h('thead', null, h('tr', null, ['Time', 'Level', 'Message', 'Extras', 'Request'].map((c) => h('th', { scope: 'col' }, c)))),
      h(
        'tbody',
        null,
        logs.map((l) =>
          h(
            'tr',
            { class: `level-${l.level.toLowerCase()}` },
            h('td', { class: 'nowrap' }, fmtDateTime(l.ts)),
            h('td', null, stateBadge(l.level)),
            h('td', { class: 'mono' }, l.message),
            h('td', { class: 'mono small' }, l.extras && !(Array.isArray(l.extras) && !l.extras.length) ? JSON.stringify(l.extras) : ''),
            h('td', { class: 'mono small' }, l.requestId),
          ),
        ),
      ),
    ),
  );
}

// What the bot connector would do with a test result (`connector` in the invoke response).
interface ReviewItem {
  kind: string;
  source: string;
  text?: string;
  quickReplies?: number;
  contentType?: string;
  delaySeconds?: number;
}
interface ConnectorReview {
  channel: string;
  verdict: 'OK' | 'PARTIAL' | 'REFUSED';
  consumerSees: ReviewItem[];
  agentSees: ReviewItem[];
  action: Record<string, unknown> | null;
  problems: { code: string; path: string; message: string }[];
  warnings: { rule: string; path: string; message: string }[];
}

const VERDICT: Record<string, [string, string]> = {
  OK: ['ok', 'The connector would send everything as given.'],
  PARTIAL: ['warn', 'The connector would drop part of this response (see the problems below).'],
  REFUSED: ['error', 'The connector would send nothing: the bot turn fails, is retried, then escalates.'],
};

function describeItem(i: ReviewItem): string {
  if (i.kind === 'DELAY') return `a pause of ${i.delaySeconds ?? 0} s`;
  if (i.kind === 'RICH_CONTENT') return `a card${i.contentType ? ` (${i.contentType})` : ''}`;
  const chips = i.quickReplies ? ` with ${i.quickReplies} quick repl${i.quickReplies === 1 ? 'y' : 'ies'}` : '';
  return `“${i.text ?? ''}”${chips}`;
}

function reviewView(r: ConnectorReview): HTMLElement {
  const [kind, text] = VERDICT[r.verdict] ?? ['info', r.verdict];
  const list = (items: ReviewItem[]) => h('ol', null, items.map((i) => h('li', null, describeItem(i), ' ', h('code', { class: 'muted' }, i.source))));
  return h(
    'section',
    { class: 'connector-review', 'data-verdict': r.verdict },
    h('h3', null, `What the connector would do (${r.channel === 'CHAT' ? 'Chat' : 'Messaging'})`),
    alertBox(kind as 'ok' | 'warn' | 'error' | 'info', text),
    r.problems.length
      ? h('div', { class: 'review-problems' }, h('h4', null, `Problems (${r.problems.length})`), h('ul', null, r.problems.map((p) => h('li', null, h('code', null, p.path || '(response)'), ' ', p.message, ' ', h('span', { class: 'muted' }, p.code)))))
      : null,
    r.warnings.length
      ? h('div', { class: 'review-warnings' }, h('h4', null, `Warnings (${r.warnings.length})`), h('ul', null, r.warnings.map((w) => h('li', null, h('code', null, w.path), ' ', w.message, ' ', h('span', { class: 'muted' }, `(${w.rule})`)))))
      : null,
    h('h4', null, 'The consumer sees'),
    r.consumerSees.length ? list(r.consumerSees) : h('p', { class: 'muted' }, 'Nothing.'),
    r.agentSees.length ? h('div', null, h('h4', null, 'Agents and managers see'), list(r.agentSees)) : null,
    r.action ? h('div', null, h('h4', null, 'Then the action'), pre(r.action)) : null,
  );
}

// The sample input turned into a CHAT conversation's WELCOME turn (spec: payload.event.name
// "WELCOME", no consumer message, lpEvent.isWelcomeEvent, the CHAT conversation type).
export function welcomeOf(sample: unknown): unknown {
  const copy = JSON.parse(JSON.stringify(sample ?? {})) as { payload?: Record<string, unknown> };
  const payload = (copy.payload && typeof copy.payload === 'object' ? copy.payload : {}) as Record<string, unknown>;
  payload.message = '';
  payload.event = { name: 'WELCOME' };
  const context = (payload.context && typeof payload.context === 'object' ? payload.context : {}) as Record<string, unknown>;
  const lpEvent = (context.lpEvent && typeof context.lpEvent === 'object' ? context.lpEvent : {}) as Record<string, unknown>;
  lpEvent.isWelcomeEvent = true;
  const cc = (lpEvent.conversationContext && typeof lpEvent.conversationContext === 'object' ? lpEvent.conversationContext : null) as Record<string, unknown> | null;
  if (cc) cc.type = 'CHAT';
  context.lpEvent = lpEvent;
  payload.context = context;
  copy.payload = payload;
  return copy;
}
