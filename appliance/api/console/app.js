// The console's shell: sign-in, the page list (each shown only when the
// signed-in role may call the endpoint it reads), the lifecycle banner and
// hash routing (#/page/id?query).

import { session, whoami, signIn, signOut, can, call } from './api.js';
import { h, fill, errorBox, field } from './ui.js';
import * as pages from './pages.js';

const PAGES = [
  { path: 'overview', label: 'Overview', needs: ['GET', '/api/v1/status'], render: pages.overview },
  { path: 'products', label: 'Products', needs: ['GET', '/api/v1/entities'], render: pages.products, detail: pages.product },
  { path: 'documents', label: 'Documents', needs: ['GET', '/api/v1/documents'], render: pages.documents },
  { path: 'ask', label: 'Ask', needs: ['POST', '/api/v1/ai/ask'], render: pages.ask },
  { path: 'changes', label: 'Packs and changes', needs: ['GET', '/api/v1/changes'], render: pages.changes },
  { path: 'import', label: 'Import', needs: ['GET', '/api/v1/media'], render: pages.importMedia },
  { path: 'backups', label: 'Backups', needs: ['GET', '/api/v1/backups'], render: pages.backups },
  { path: 'audit', label: 'Audit log', needs: ['GET', '/api/v1/audit'], render: pages.audit },
  { path: 'users', label: 'Users and tokens', needs: ['GET', '/api/v1/users'], render: pages.users },
];

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const banner = document.getElementById('banner');

const BANNERS = {
  SUSPENDED: 'This spoke is SUSPENDED: you can read everything, but every change is refused. An administrator sets it back to ACTIVE on the Overview page (or renews the licence by importing a new product medium).',
  LEGAL_HOLD: 'This spoke is under LEGAL HOLD: nothing may be changed, deleted or destroyed until an administrator lifts the hold on the Overview page.',
};

function signInPage(notice) {
  nav.hidden = true;
  who.hidden = true;
  banner.hidden = true;
  const out = h('div');
  const form = h('form', { class: 'card signin', 'aria-labelledby': 'signin-h' },
    h('h1', { id: 'signin-h' }, 'Sign in'),
    notice ? errorBox(notice) : null,
    field('User name', h('input', { name: 'user', required: true, autocomplete: 'username' })),
    field('Password', h('input', { name: 'password', type: 'password', required: true, autocomplete: 'current-password' })),
    h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Sign in')),
    out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const d = new FormData(form);
    const button = form.querySelector('button');
    button.disabled = true;
    fill(out);
    try {
      await signIn(d.get('user'), d.get('password'));
      if (window.location.hash.startsWith('#/')) await route(true);
      else window.location.hash = '#/overview';
    } catch (err) {
      fill(out, errorBox(err));
    } finally {
      button.disabled = false;
    }
  });
  fill(main, form);
  form.querySelector('input').focus();
}

function parse(hash) {
  const [path, query] = hash.replace(/^#\//, '').split('?');
  const [page, ...rest] = path.split('/');
  return { page, id: rest.length ? decodeURIComponent(rest.join('/')) : null, params: new URLSearchParams(query || '') };
}

async function showBanner() {
  try {
    const { state } = await call('GET', '/api/v1/lifecycle');
    banner.hidden = !BANNERS[state];
    banner.textContent = BANNERS[state] || '';
  } catch {
    banner.hidden = true;
  }
}

function drawNav(me, current) {
  fill(nav, PAGES.filter((p) => can(me, ...p.needs)).map((p) => h('a', {
    href: `#/${p.path}`, 'aria-current': p.path === current ? 'page' : null,
  }, p.label)));
  nav.hidden = false;
  document.getElementById('who-name').textContent = `${me.user} (${me.role.replace('_', ' ')})`;
  who.hidden = false;
}

/** Draws the page the location names; `moved` (a navigation) puts focus on its heading. */
async function route(moved) {
  const hash = window.location.hash;
  if (hash && !hash.startsWith('#/')) return;
  const me = session();
  if (!me || !me.allowed) {
    signInPage();
    return;
  }
  const { page, id, params } = parse(hash || '#/overview');
  const target = PAGES.find((p) => p.path === page) || PAGES[0];
  drawNav(me, target.path);
  await showBanner();
  fill(main, h('p', { role: 'status' }, 'Loading…'));
  main.setAttribute('aria-busy', 'true');
  try {
    if (!can(me, ...target.needs)) {
      fill(main, h('h1', {}, target.label), errorBox({ kind: 'forbidden', message: `Your role (${me.role}) cannot open this page; ask an administrator for a role that can.` }));
      return;
    }
    await (id && target.detail ? target.detail(me, main, params, id) : target.render(me, main, params));
    document.title = `${target.label} — EuroComply spoke`;
    const h1 = main.querySelector('h1');
    if (h1 && moved) h1.focus();
  } catch (err) {
    if (err.status === 401) {
      signInPage(err);
      return;
    }
    main.append(errorBox(err));
  } finally {
    main.setAttribute('aria-busy', 'false');
  }
}

document.getElementById('sign-out').addEventListener('click', async () => {
  try {
    await signOut();
  } finally {
    window.location.hash = '';
    signInPage();
  }
});
document.getElementById('skip').addEventListener('click', (ev) => {
  ev.preventDefault();
  main.focus();
});
window.addEventListener('hashchange', route);
window.addEventListener('eurocomply:refresh', showBanner);

(async () => {
  if (session()) {
    try {
      await whoami();
    } catch (err) {
      signInPage(err.status === 401 ? err : null);
      return;
    }
  }
  await route();
})();
