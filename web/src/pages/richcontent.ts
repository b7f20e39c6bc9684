import { api, describeError } from '../lib/api';
import { busy, h } from '../lib/h';
import { renderCard, onActions } from '../lib/pollock';
import { alertBox, MessageSlot, pageHeader, pretty } from '../lib/ui';
import { errorsOf } from '../lib/validate';
import type { PageContext } from '../main';

const SAMPLE = {
  type: 'vertical',
  elements: [
    { type: 'text', text: 'Which plan fits you?', style: { bold: true, size: 'large' } },
    { type: 'image', url: 'https://example.com/plan.png', caption: 'Plans' },
    { type: 'button', title: 'Prepaid', click: { actions: [{ type: 'publishText', text: 'prepaid' }] } },
    { type: 'button', title: 'See details', click: { actions: [{ type: 'link', name: 'Details', uri: 'https://example.com/plans' }] } },
  ],
};



export default async function richContentPage(root: HTMLElement, _ctx: PageContext): Promise<() => void> {
  const { createEditor } = await import('../lib/editor');
  const host = h('div', { class: 'editor-host', 'data-editor': 'sc' });
  const channel = h('select', { id: 'sc-channel' }, h('option', { value: 'MESSAGING' }, 'Messaging'), h('option', { value: 'CHAT' }, 'Chat'));
  const validate = h('button', { class: 'btn primary', type: 'button' }, 'Validate and preview');
  const format = h('button', { class: 'btn', type: 'button' }, 'Format JSON');
  const reset = h('button', { class: 'btn', type: 'button' }, 'Load sample');
  const msg = new MessageSlot();
  const result = h('div', { class: 'sc-result', 'aria-live': 'polite' });
  const preview = h('div', { class: 'sc-preview' });
  const actionLog = h('p', { class: 'muted small', 'aria-live': 'polite' });
  root.append(
    pageHeader('Structured content'),
    h('p', { class: 'muted' }, 'Paste a JSON-Pollock card. The server validates it (schema, limits, URL allowlist); valid cards are rendered with LivePerson’s json-pollock.'),
    h(
      'div',
      { class: 'grid-2' },
      h('section', { class: 'card', 'aria-labelledby': 'sc-json-h' }, h('h2', { id: 'sc-json-h' }, 'JSON'), host, h('div', { class: 'row' }, h('label', { for: 'sc-channel' }, 'Channel'), channel), h('div', { class: 'row' }, validate, format, reset), msg.el),
      h('section', { class: 'card', 'aria-labelledby': 'sc-out-h' }, h('h2', { id: 'sc-out-h' }, 'Result'), result, preview, actionLog),
    ),
  );
  const editor = createEditor(host, pretty(SAMPLE), { lang: 'json', label: 'Structured content JSON', minHeight: '20rem' });
  await onActions((type, data) => {
    actionLog.textContent = `Action clicked: ${type} ${JSON.stringify(data)}`;
  });

  format.addEventListener('click', () => {
    try {
      editor.set(JSON.stringify(JSON.parse(editor.get()), null, 2));
      msg.clear();
    } catch (e) {
      msg.show(alertBox('error', `Not valid JSON: ${(e as Error).message}`));
    }
  });
  reset.addEventListener('click', () => editor.set(pretty(SAMPLE)));
  validate.addEventListener('click', () =>
    void busy(validate, async () => {
      let sc: unknown;
      try {
        sc = JSON.parse(editor.get());
      } catch (e) {
        result.replaceChildren(alertBox('error', `Not valid JSON: ${(e as Error).message}`));
        preview.replaceChildren();
        return;
      }
      msg.clear();
      result.replaceChildren(h('p', { class: 'loading' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' Validating…'));
      try {
        const r = errorsOf(await api('POST', 'richcontent/validate', { structuredContent: sc, channel: channel.value }));
        if (!r.valid) {
          result.replaceChildren(
            h(
              'div',
              { class: 'alert alert-error sc-errors', role: 'alert' },
              h('strong', null, `Invalid: ${r.errors.length} problem${r.errors.length === 1 ? '' : 's'}`),
              h('ul', null, r.errors.map((e) => h('li', null, h('code', { class: 'path' }, e.path || '(root)'), ' ', e.message))),
            ),
          );
          preview.replaceChildren();
          return;
        }
        result.replaceChildren(h('div', { class: 'alert alert-ok sc-valid', role: 'status' }, 'Valid structured content.'));
        preview.replaceChildren(await renderCard(sc));
      } catch (e) {
        result.replaceChildren(alertBox('error', describeError(e)));
      }
    }),
  );
  return () => editor.view.destroy();
}
