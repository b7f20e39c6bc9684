import { describe, expect, it } from 'vitest';
import { safeCssColour, safeHref, safeImageUrl, safeLinkUrl, safeReturnPath } from './safe';

const O = 'https://console.example:8443';

describe('safeReturnPath', () => {
  it('keeps paths on this origin', () => {
    expect(safeReturnPath('/bots/new', '/f', O)).toBe('/bots/new');
    expect(safeReturnPath('/bots/12?created=1#x', '/f', O)).toBe('/bots/12?created=1#x');
    expect(safeReturnPath('/a/../bots', '/f', O)).toBe('/bots');
    expect(safeReturnPath('/%0a/x', '/f', O)).toBe('/%0a/x'); // an encoded byte stays in the path
  });
  it('refuses every other target', () => {
    for (const bad of [
      'javascript:alert(1)',
      'JavaScript:alert(document.domain)',
      ' javascript:alert(1)',
      '\tjavascript:alert(1)',
      'java\nscript:alert(1)',
      'data:text/html,<script>alert(1)</script>',
      'vbscript:msgbox(1)',
      '//evil.example/x',
      '/\\evil.example/x',
      '\\\\evil.example',
      '/ok\n',
      'https://evil.example/',
      `${O}/bots`,
      'bots/new',
      '',
      null,
      undefined,
      '/' + 'a'.repeat(5000),
    ]) {
      expect(safeReturnPath(bad as string, '/functions', O), String(bad)).toBe('/functions');
    }
  });
});

describe('safeLinkUrl and safeImageUrl', () => {
  it('allow web links, mail and phone', () => {
    expect(safeLinkUrl('https://example.com/a?b=1')).toBe('https://example.com/a?b=1');
    expect(safeLinkUrl('http://example.com')).toBe('http://example.com/');
    expect(safeLinkUrl('mailto:help@example.com')).toBe('mailto:help@example.com');
    expect(safeLinkUrl('tel:+15550100')).toBe('tel:+15550100');
  });
  it('refuse script and relative URLs', () => {
    for (const bad of ['javascript:alert(1)', 'JAVASCRIPT:alert(1)', ' javascript:x', 'java\tscript:x', 'data:text/html,x', 'vbscript:x', 'blob:https://x/y', 'file:///etc/passwd', '/relative', '//evil.example', 'https:\\\\evil', 'https://', 42, null, {}]) {
      expect(safeLinkUrl(bad), String(bad)).toBeNull();
    }
  });
  it('images: https only', () => {
    expect(safeImageUrl('https://cdn.example.com/a.png')).toBe('https://cdn.example.com/a.png');
    for (const bad of ['http://cdn.example.com/a.png', 'mailto:x@y', 'tel:1', 'javascript:alert(1)', 'data:image/svg+xml,<svg onload=alert(1)>', 'x', '/a.png']) {
      expect(safeImageUrl(bad), bad).toBeNull();
    }
  });
});

describe('safeHref', () => {
  it('allows own paths, fragments and safe links only', () => {
    expect(safeHref('/functions', O)).toBe('/functions');
    expect(safeHref('#main', O)).toBe('#main');
    expect(safeHref('https://example.com/', O)).toBe('https://example.com/');
    expect(safeHref('javascript:alert(1)', O)).toBeNull();
    expect(safeHref('//evil.example', O)).toBeNull();
  });
});

describe('safeCssColour', () => {
  it('allows colours and nothing else', () => {
    for (const ok of ['#fff', '#FFFA', '#3736A6', '#00000080', 'red', 'rgb(1, 2, 3)', 'rgba(1,2,3,.5)', 'hsl(120deg 50% 50%)']) expect(safeCssColour(ok), ok).toBe(ok);
    for (const bad of ['red;background:url(https://evil.example/x)', 'url(x)', 'expression(alert(1))', '#ggg', 'var(--x)', 'rgb(1,2,3);x:y', '', 'red }', 7]) expect(safeCssColour(bad), String(bad)).toBeNull();
  });
});
