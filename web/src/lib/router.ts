// Path matching for the history-API router. Pure, unit-tested.

export interface Match {
  route: string;
  params: Record<string, string>;
}

// Patterns like "/functions/:uuid"; first match wins.
export function matchRoute(patterns: string[], path: string): Match | null {
  const clean = path.replace(/\/+$/, '') || '/';
  const segs = clean.split('/').filter(Boolean);
  for (const p of patterns) {
    const ps = p.split('/').filter(Boolean);
    if (ps.length !== segs.length) continue;
    const params: Record<string, string> = {};
    let ok = true;
    for (let i = 0; i < ps.length; i++) {
      if (ps[i].startsWith(':')) params[ps[i].slice(1)] = decodeURIComponent(segs[i]);
      else if (ps[i] !== segs[i]) {
        ok = false;
        break;
      }
    }
    if (ok) return { route: p, params };
  }
  return null;
}
