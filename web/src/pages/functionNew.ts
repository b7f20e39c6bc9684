import { api, describeError } from '../lib/api';
import { busy, field, h } from '../lib/h';
import { CUSTOM_INTEGRATION_EVENT, EVENTS, fnOf, templatesOf, type Template } from '../lib/models';
import { MessageSlot, pageHeader, pre } from '../lib/ui';
import { safeReturnPath } from '../lib/safe';
import type { PageContext } from '../main';

export default async function functionNewPage(root: HTMLElement, ctx: PageContext): Promise<void> {
  const preset = ctx.query.get('event') ?? CUSTOM_INTEGRATION_EVENT;
  // Only a path of this console; anything else (javascript:, another origin) is ignored.
  const returnTo = safeReturnPath(ctx.query.get('return'), '') || null;
  const msg = new MessageSlot();
  if (!ctx.can('functions.write')) {
    msg.show(h('div', { class: 'alert alert-warn', role: 'alert' }, 'Creating functions needs the FaaS Developer role.'));
  }
  const name = h('input', { name: 'name', required: true, maxlength: '100', pattern: '[A-Za-z0-9_-]+', autocomplete: 'off' });
  const description = h('input', { name: 'description', maxlength: '300', autocomplete: 'off' });
  const event = h(
    'select',
    { name: 'event' },
    EVENTS.map((e) => h('option', { value: e.id, selected: e.id === preset }, e.name)),
  );
  if (!EVENTS.some((e) => e.id === preset)) event.append(h('option', { value: preset, selected: true }, preset));
  const tplInfo = h('div', { class: 'template-info', 'aria-live': 'polite' });
  let template: Template | null = null;

  async function loadTemplate(): Promise<void> {
    tplInfo.replaceChildren(h('p', { class: 'loading' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' Loading template…'));
    try {
      const list = templatesOf(await api('GET', `functions/templates?event=${encodeURIComponent(event.value)}`));
      template = list.find((t) => t.event === event.value) ?? list[0] ?? null;
      if (!template) {
        tplInfo.replaceChildren(h('p', { class: 'muted' }, 'No template for this event; the function starts empty.'));
        return;
      }
      tplInfo.replaceChildren(
        h('h2', null, 'Template'),
        h('details', null, h('summary', null, `Template code (${template.code.split('\n').length} lines)`), pre(template.code)),
        h('h2', null, 'Sample payload'),
        h('p', { class: 'muted' }, 'The input this event delivers to the function (read-only).'),
        pre(template.samplePayload ?? {}, 'sample-payload'),
      );
    } catch (e) {
      template = null;
      tplInfo.replaceChildren(h('div', { class: 'alert alert-warn', role: 'alert' }, `Could not load the template: ${describeError(e)}. The server will use its default template.`));
    }
  }
  event.addEventListener('change', () => void loadTemplate());

  const create = h('button', { type: 'submit', class: 'btn primary', disabled: !ctx.can('functions.write') }, 'Create function');
  const form = h(
    'form',
    { class: 'card form', novalidate: true },
    field('Name', name, { hint: 'Unique in the account: letters, digits, - and _.' }),
    field('Description', description),
    field('Event', event, { hint: 'The event that invokes the function; its template fills the code.' }),
    msg.el,
    h('div', { class: 'row' }, create, h('a', { class: 'btn', href: returnTo ?? '/functions' }, 'Cancel')),
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!name.value.trim() || !/^[A-Za-z0-9_-]+$/.test(name.value.trim())) {
      msg.show(h('div', { class: 'alert alert-error', role: 'alert' }, 'Enter a name of letters, digits, - and _.'));
      name.setAttribute('aria-invalid', 'true');
      name.focus();
      return;
    }
    name.removeAttribute('aria-invalid');
    await busy(create, async () => {
      try {
        const body: Record<string, unknown> = { name: name.value.trim(), description: description.value, event: event.value };
        if (template?.code) body.code = template.code;
        const f = fnOf(await api('POST', 'functions', body));
        if (!f.uuid) throw new Error('The server did not return the new function id.');
        ctx.navigate(`/functions/${encodeURIComponent(f.uuid)}${returnTo ? `?return=${encodeURIComponent(returnTo)}` : ''}`);
      } catch (e) {
        msg.error(e);
      }
    });
  });
  root.append(pageHeader('Create function'), h('div', { class: 'grid-2' }, form, h('section', { class: 'card' }, tplInfo)));
  name.focus();
  await loadTemplate();
}
