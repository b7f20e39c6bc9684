// CodeMirror 6 editors (JavaScript for function code, JSON for payloads and structured content).
// Tab is left to the browser so the page stays keyboard-navigable (Esc+Tab is not needed).
//
// Each editor lives in an open shadow root of its host element. CodeMirror adds its styles at
// run time; in a document it does that with <style> elements, which the console's
// Content-Security-Policy (style-src 'self', no 'unsafe-inline') refuses, while in a shadow
// root it uses constructed stylesheets (adoptedStyleSheets), which the policy allows. The page's
// own rules for the editor are therefore part of the editor's theme below.

import { javascript } from '@codemirror/lang-javascript';
import { json } from '@codemirror/lang-json';
import { EditorState } from '@codemirror/state';
import { EditorView } from '@codemirror/view';
import { basicSetup } from 'codemirror';

export interface Editor {
  view: EditorView;
  get(): string;
  set(text: string): void;
  focus(): void;
}

export function createEditor(
  parent: HTMLElement,
  doc: string,
  opts: { lang: 'js' | 'json'; label: string; readOnly?: boolean; onChange?: (text: string) => void; minHeight?: string },
): Editor {
  const shadow = parent.shadowRoot ?? parent.attachShadow({ mode: 'open' });
  const view = new EditorView({
    parent: shadow,
    root: shadow,
    state: EditorState.create({
      doc,
      extensions: [
        basicSetup,
        opts.lang === 'js' ? javascript() : json(),
        EditorView.lineWrapping,
        EditorState.readOnly.of(Boolean(opts.readOnly)),
        EditorView.editable.of(!opts.readOnly),
        EditorView.contentAttributes.of({ 'aria-label': opts.label }),
        EditorView.theme({
          '&': { minHeight: opts.minHeight ?? '12rem', maxHeight: '65vh', background: '#fff' },
          '&.cm-focused': { outline: '3px solid var(--focus)' },
          '.cm-scroller': { minHeight: opts.minHeight ?? '12rem' },
        }),
        EditorView.updateListener.of((u) => {
          if (u.docChanged) opts.onChange?.(u.state.doc.toString());
        }),
      ],
    }),
  });
  // Tests and power users can reach the view from the DOM.
  (parent as HTMLElement & { cmView?: EditorView }).cmView = view;
  return {
    view,
    get: () => view.state.doc.toString(),
    set: (text: string) => view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } }),
    focus: () => view.focus(),
  };
}
