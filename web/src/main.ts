import { leaveGuard, setLeaveGuard } from './lib/leave';
import './styles.css';
import { logout, setUnauthorizedHandler } from './lib/api';
import { h, replace } from './lib/h';
import { can as canRoles, type Permission } from './lib/roles';
import { matchRoute } from './lib/router';
import { clearSession, loadSession, type Session } from './lib/session';

export interface PageContext {
  session: Session;
  params: Record<string, string>;
  query: URLSearchParams;
  navigate: (path: string, replace?: boolean) => void;
  can: (p: Permission) => boolean;
}

// A page renders into `root` and may return a cleanup function (sockets, timers).
export type Page = (root: HTMLElement, ctx: PageContext) => void | (() => void) | Promise<void | (() => void)>;

interface RouteDef {
  load: () => Promise<{ default: Page }>;
  perm?: Permission;
  title: string;
  public?: boolean;
  bare?: boolean; // no console shell
}

const routes: Record<string, RouteDef> = {
  '/login': { load: () => import('./pages/login'), title: 'Log in', public: true, bare: true },
  '/widget': { load: () => import('./pages/widget'), title: 'Chat', public: true, bare: true },
  '/functions': { load: () => import('./pages/functions'), title: 'Functions', perm: 'functions.read' },
  '/functions/new': { load: () => import('./pages/functionNew'), title: 'New function', perm: 'functions.read' },
  '/functions/:uuid': { load: () => import('./pages/functionEdit'), title: 'Function', perm: 'functions.read' },
  '/bots': { load: () => import('./pages/bots'), title: 'Bots', perm: 'bots.read' },
  '/bots/new': { load: () => import('./pages/botEdit'), title: 'New bot', perm: 'bots.read' },
  '/bots/:id': { load: () => import('./pages/botEdit'), title: 'Bot', perm: 'bots.read' },
  '/richcontent': { load: () => import('./pages/richcontent'), title: 'Structured content' },
  '/agent': { load: () => import('./pages/agent'), title: 'Agent workspace', perm: 'agent.workspace' },
  '/skills': { load: () => import('./pages/skills'), title: 'Skills', perm: 'skills.read' },
  '/users': { load: () => import('./pages/users'), title: 'Users', perm: 'users.read' },
};

const nav: { path: string; label: string; perm?: Permission }[] = [
  { path: '/functions', label: 'Functions', perm: 'functions.read' },
  { path: '/bots', label: 'Bots', perm: 'bots.read' },
  { path: '/richcontent', label: 'Structured content' },
  { path: '/agent', label: 'Agent workspace', perm: 'agent.workspace' },
  { path: '/skills', label: 'Skills', perm: 'skills.read' },
  { path: '/users', label: 'Users', perm: 'users.read' },
];

const can = (roles: string[], p: Permission): boolean => {
  const s = loadSession();
  return s?.rolesKnown === false ? true : canRoles(roles, p);
};

const app = document.getElementById('app')!;
let cleanup: (() => void) | null = null;
let renderSeq = 0;
// The URL of the page on screen (restored when a guarded page refuses a back/forward).
let shownUrl = location.pathname + location.search;

function homeFor(s: Session): string {
  for (const n of nav) if (!n.perm || can(s.roles, n.perm)) return n.path;
  return '/richcontent';
}

export function navigate(path: string, replaceState = false): void {
  const go = () => {
    setLeaveGuard(null);
    if (replaceState) history.replaceState(null, '', path);
    else history.pushState(null, '', path);
    void render();
  };
  const guard = leaveGuard();
  if (!guard) return go();
  void guard().then((leave) => {
    if (leave) go();
  });
}

function shell(s: Session, current: string): { frame: HTMLElement; main: HTMLElement } {
  const main = h('main', { id: 'main', tabindex: '-1', class: 'main' });
  const navList = h(
    'ul',
    { class: 'nav-list', id: 'nav-list' },
    nav
      .filter((n) => !n.perm || can(s.roles, n.perm))
      .map((n) =>
        h(
          'li',
          null,
          h('a', { href: n.path, 'aria-current': current.startsWith(n.path) ? 'page' : false }, n.label),
        ),
      ),
    h('li', null, h('a', { href: `/widget?account=${encodeURIComponent(s.account)}`, target: '_blank', rel: 'noopener' }, 'Consumer widget ↗')),
  );
  const toggle = h(
    'button',
    {
      class: 'nav-toggle',
      'aria-expanded': 'false',
      'aria-controls': 'nav-list',
      onclick: () => {
        const open = toggle.getAttribute('aria-expanded') !== 'true';
        toggle.setAttribute('aria-expanded', String(open));
        navList.classList.toggle('open', open);
      },
    },
    'Menu',
  );
  const logoutBtn = h(
    'button',
    {
      class: 'btn-link',
      onclick: async () => {
        await logout(s.account, s.bearer);
        clearSession();
        navigate('/login');
      },
    },
    'Log out',
  );
  const header = h(
    'header',
    { class: 'topbar' },
    h('a', { class: 'brand', href: homeFor(s) }, 'Parley'),
    toggle,
    h('nav', { 'aria-label': 'Main' }, navList),
    h(
      'div',
      { class: 'who' },
      h('span', { class: 'who-name', title: s.roles.join(', ') || 'roles unknown' }, `${s.username} @ ${s.account}`),
      logoutBtn,
    ),
  );
  return { frame: h('div', { class: 'frame' }, header, main), main };
}

async function render(): Promise<void> {
  const seq = ++renderSeq;
  if (cleanup) {
    try {
      cleanup();
    } catch (e) {
      console.error(e);
    }
    cleanup = null;
  }
  const path = location.pathname;
  const query = new URLSearchParams(location.search);
  shownUrl = path + location.search;
  const session = loadSession();
  const m = matchRoute(Object.keys(routes), path);
  if (!m) {
    if (path === '/' || path === '') {
      navigate(session ? homeFor(session) : '/login', true);
    } else {
      replace(app, h('main', { class: 'main' }, h('h1', null, 'Not found'), h('p', null, 'No page at ', h('code', null, path), '. ', h('a', { href: '/' }, 'Go home'))));
    }
    return;
  }
  const def = routes[m.route];
  if (!def.public && !session) {
    navigate(`/login?next=${encodeURIComponent(path + location.search)}`, true);
    return;
  }
  document.title = `${def.title} · Parley`;
  let target: HTMLElement;
  if (def.bare || !session) {
    target = h('main', { id: 'main', tabindex: '-1', class: `main bare page-${m.route.slice(1).split('/')[0]}` });
    replace(app, target);
  } else {
    const { frame, main } = shell(session, path);
    target = main;
    replace(app, frame);
  }
  const ctx: PageContext = {
    session: session ?? { account: '', username: '', bearer: '', userId: '', userPid: '', roles: [] },
    params: m.params,
    query,
    navigate,
    can: (p) => (session ? can(session.roles, p) : false),
  };
  if (def.perm && session && !can(session.roles, def.perm)) {
    target.append(
      h('h1', null, def.title),
      h('div', { class: 'alert alert-warn', role: 'alert' }, `Your roles (${session.roles.join(', ') || 'none'}) do not include access to ${def.title}.`),
    );
    return;
  }
  target.append(h('p', { class: 'loading' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' Loading…'));
  try {
    const mod = await def.load();
    if (seq !== renderSeq) return;
    target.replaceChildren();
    const c = await mod.default(target, ctx);
    if (seq !== renderSeq) {
      if (typeof c === 'function') c();
      return;
    }
    if (typeof c === 'function') cleanup = c;
  } catch (e) {
    console.error(e);
    target.replaceChildren(h('div', { class: 'alert alert-error', role: 'alert' }, `This page failed to load: ${(e as Error).message}`));
  }
}


document.addEventListener('click', (ev) => {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const a = (ev.target as Element).closest('a');
  if (!a || a.target || a.hasAttribute('download')) return;
  const href = a.getAttribute('href');
  if (!href || !href.startsWith('/') || href.startsWith('//') || href.startsWith('/api')) return;
  ev.preventDefault();
  navigate(href);
});
window.addEventListener('popstate', () => {
  const guard = leaveGuard();
  if (!guard) return void render();
  // Back/forward already changed the URL: put the page's own URL back unless it may be left.
  void guard().then((leave) => {
    if (leave) {
      setLeaveGuard(null);
      void render();
    } else {
      history.pushState(null, '', shownUrl);
    }
  });
});
setUnauthorizedHandler(() => {
  if (location.pathname !== '/login' && location.pathname !== '/widget') {
    navigate(`/login?next=${encodeURIComponent(location.pathname + location.search)}`, true);
  }
});

void render();
