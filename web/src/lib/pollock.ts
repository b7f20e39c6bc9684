// LivePerson's json-pollock renderer (UMD build + its CSS), loaded on demand.

import 'json-pollock/dist/json-pollock.min.css';

interface JsonPollockApi {
  init(cfg: Record<string, unknown>): void;
  render(json: unknown): HTMLElement;
  registerAction(type: string, cb: (data: { actionData: Record<string, unknown>; metadata?: unknown }) => void): void;
  unregisterAllActions(): void;
}

let jp: JsonPollockApi | null = null;

export async function pollock(): Promise<JsonPollockApi> {
  if (jp) return jp;
  const mod = (await import('json-pollock/dist/json-pollock.min.js')) as unknown as { default?: JsonPollockApi } & JsonPollockApi;
  jp = (mod.default && typeof mod.default.render === 'function' ? mod.default : mod) as JsonPollockApi;
  jp.init({ maxAllowedElements: 200 });
  return jp;
}

export type ActionHandler = (type: string, data: Record<string, unknown>, metadata?: unknown) => void;

// Registers one handler for the action types a card can carry.
export async function onActions(handler: ActionHandler): Promise<void> {
  const j = await pollock();
  j.unregisterAllActions();
  for (const t of ['publishText', 'link', 'navigate', 'custom', 'checked', 'submitAsText', 'addToCart', 'datePicker']) {
    j.registerAction(t, (d) => handler(t, d.actionData ?? {}, d.metadata));
  }
}

// Renders structured content; on failure returns an element that says why.
export async function renderCard(content: unknown): Promise<HTMLElement> {
  const j = await pollock();
  try {
    const el = j.render(content);
    const wrap = document.createElement('div');
    wrap.className = 'sc-card';
    wrap.appendChild(el);
    return wrap;
  } catch (e) {
    const err = e as Error & { errors?: unknown[] };
    const div = document.createElement('div');
    div.className = 'alert alert-warn sc-render-error';
    div.textContent = `Cannot render this card: ${err.message}`;
    return div;
  }
}
