// The console's pages. Each takes the signed-in session (`me`, with the
// endpoints its role may call) and the element to draw into. A control that
// needs an endpoint the role may not call is not drawn; the spoke refuses
// such a call anyway.

import { call, can } from './api.js';
import {
  h, fill, errorBox, okBox, verdict, table, field, select, onSubmit, action, when,
} from './ui.js';

const enc = encodeURIComponent;

function heading(main, text) {
  const h1 = h('h1', { tabindex: '-1' }, text);
  fill(main, h1);
  return h1;
}

function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

// ---------------------------------------------------------------- overview

// The OS tile's lines: the running version and each A/B slot, or why there are none.
function osLines(os) {
  if (!os) {
    return [h('p', {}, 'OS version: not reported'),
      h('p', {}, 'Slot state: not reported'),
      h('p', { class: 'hint' }, 'This spoke does not run from the appliance image, so it has no OS version or boot slots to show.')];
  }
  const state = (s) => (s.blessed ? 'healthy' : s.failed ? 'failed, not retried'
    : `on trial, ${s.tries_left ?? 0} tries left`);
  return [h('p', {}, `OS ${os.running ?? 'unknown'}`),
    h('ul', { id: 'os-slots' }, os.slots.map((s) => h('li', {},
      `Slot ${s.slot}: ${s.version ?? 'unknown version'}, ${state(s)}${s.booted ? ', running' : ''}${s.next ? ', boots next' : ''}`)))];
}

export async function overview(me, main) {
  heading(main, 'Overview');
  const [status, health, packs, models, os] = await Promise.all([
    call('GET', '/api/v1/status'),
    call('GET', '/health/deep').catch((e) => ({ error: e })),
    call('GET', '/api/v1/packs'),
    call('GET', '/api/v1/models').catch(() => []),
    // 404 off the appliance image: no OS slots to show.
    call('GET', '/api/v1/os').catch(() => null),
  ]);
  const installed = [...packs, ...(Array.isArray(models) ? models : [])]
    .map((b) => b.installed_at).filter(Boolean).sort();
  const lastImport = installed.length ? installed[installed.length - 1] : null;
  const lic = status.licence;
  const daysLeft = lic ? Math.floor((Date.parse(`${lic.expires}T23:59:59Z`) - Date.now()) / 86400000) : null;
  const healthTile = health.error
    ? [h('p', {}, 'Store checks could not run.'), errorBox(health.error)]
    : [h('p', {}, h('strong', {}, health.ok ? 'Healthy' : 'Attention needed'), ` (${health.millis} ms)`),
      h('ul', {}, health.checks.map(([name, ok, detail]) =>
        h('li', {}, `${ok ? 'OK' : 'FAILED'}: ${name}${ok ? '' : ` — ${detail}`}`)))];
  const pending = status.pending_changes || [];
  main.append(h('div', { class: 'grid' },
    h('section', { class: 'tile', 'aria-labelledby': 't-health' },
      h('h2', { id: 't-health' }, 'Health'), ...healthTile),
    h('section', { class: 'tile', 'aria-labelledby': 't-life' },
      h('h2', { id: 't-life' }, 'Lifecycle'),
      h('p', {}, h('strong', { id: 'lifecycle-state' }, status.lifecycle)),
      h('p', { class: 'hint' }, status.lifecycle === 'ACTIVE'
        ? 'Changes are accepted.'
        : 'Reads work; every change is refused until an administrator sets the state back to ACTIVE.')),
    h('section', { class: 'tile', 'aria-labelledby': 't-lic' },
      h('h2', { id: 't-lic' }, 'Licence'),
      lic
        ? [h('p', {}, `Plan ${lic.plan}`),
          h('p', {}, `Expires ${lic.expires}${daysLeft !== null ? ` (${daysLeft < 0 ? 'expired' : `${daysLeft} days left`})` : ''}`),
          h('p', { class: 'hint' }, `Products: ${lic.max_products ?? 'unlimited'}; users: ${lic.max_users ?? 'unlimited'}; AI requests a day: ${lic.max_ai_requests_per_day ?? 'unlimited'}`)]
        : h('p', {}, 'No licence installed: import the product medium from your vendor.')),
    h('section', { class: 'tile', 'aria-labelledby': 't-sw' },
      h('h2', { id: 't-sw' }, 'Software'),
      h('p', {}, `Spoke ${status.version}`),
      ...osLines(os),
      h('p', { class: 'hint' }, h('span', {}, 'Kernel build '), h('code', {}, status.kernel_build.slice(0, 16)))),
    h('section', { class: 'tile', 'aria-labelledby': 't-imp' },
      h('h2', { id: 't-imp' }, 'Last import or sync'),
      h('p', {}, lastImport ? when(lastImport) : 'Nothing imported yet'),
      h('p', {}, `Active packs: ${status.active_packs.length ? status.active_packs.join(', ') : 'none'}`)),
    h('section', { class: 'tile', 'aria-labelledby': 't-pend' },
      h('h2', { id: 't-pend' }, 'Pending changes'),
      h('p', {}, pending.length
        ? h('a', { href: '#/changes' }, `${pending.length} pack change${pending.length > 1 ? 's' : ''} waiting for a decision`)
        : 'None')),
    h('section', { class: 'tile', 'aria-labelledby': 't-data' },
      h('h2', { id: 't-data' }, 'Data'),
      h('ul', {}, Object.entries(status.counts).map(([k, n]) => h('li', {}, `${k}: ${n}`))),
      h('p', { id: 'disk' }, `Disk: ${mib(status.disk.data_bytes)} used by the spoke; ${mib(status.disk.free_bytes)} free of ${mib(status.disk.total_bytes)}`),
      status.disk.free_bytes < 1073741824
        ? errorBox({ kind: 'disk', message: 'Less than 1 GiB is free: remove old backups from this disk or give the spoke a larger one before the next import.' })
        : null)));
  if (can(me, 'PUT', '/api/v1/lifecycle')) main.append(lifecycleForm(status.lifecycle));
}

function mib(bytes) {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

function lifecycleForm(current) {
  const out = h('div');
  const form = h('form', { class: 'card', 'aria-labelledby': 'lc-h' },
    h('h2', { id: 'lc-h' }, 'Change the lifecycle state'),
    field('New state', select('state', [['ACTIVE', 'ACTIVE'], ['SUSPENDED', 'SUSPENDED'], ['LEGAL_HOLD', 'LEGAL_HOLD']], current)),
    field('Reason', h('input', { name: 'reason', required: true }), 'Recorded in the audit log.'),
    h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Set state')),
    out);
  onSubmit(form, out, async (d) => {
    const r = await call('PUT', '/api/v1/lifecycle', { body: { state: d.get('state'), reason: d.get('reason') } });
    if (r.result === 'release_requested') {
      // Leaving LEGAL_HOLD takes a second administrator.
      const q = r.release_request;
      return h('p', { role: 'status' }, `Release to ${q.to} asked by ${q.by}. Another administrator must confirm it: sign in and set the same state.`);
    }
    window.dispatchEvent(new Event('eurocomply:refresh'));
    return null;
  });
  return form;
}

// ---------------------------------------------------------------- products

const KINDS = [['product', 'Products and formulations'], ['substance', 'Substances'], ['supplier', 'Suppliers']];

export async function products(me, main, params) {
  heading(main, 'Products and formulations');
  const kind = params.get('kind') || 'product';
  const [list, evaluations] = await Promise.all([
    call('GET', `/api/v1/entities?kind=${enc(kind)}`),
    kind === 'product' ? call('GET', '/api/v1/evaluations?limit=1000') : [],
  ]);
  // Newest first, so the first record of a product is its latest verdict.
  const latest = new Map();
  for (const e of evaluations) if (!latest.has(e.product_id)) latest.set(e.product_id, e);
  const filter = h('form', { class: 'row', 'aria-label': 'Filter' },
    field('Show', select('kind', KINDS, kind)),
    h('button', { type: 'submit', class: 'secondary' }, 'Show'));
  filter.addEventListener('submit', (ev) => {
    ev.preventDefault();
    window.location.hash = `#/products?kind=${enc(new FormData(filter).get('kind'))}`;
  });
  main.append(filter);
  const out = h('div');
  if (kind === 'product' && can(me, 'POST', '/api/v1/evaluations') && list.length) {
    main.append(h('div', { class: 'row' }, action('Evaluate all products', out, async () => {
      const outcomes = await call('POST', '/api/v1/evaluations', { body: { all: true } });
      await products(me, main, params);
      main.append(okBox(`Evaluated ${outcomes.length} products.`));
    })), out);
  }
  main.append(list.length
    ? table(`${list.length} shown`, ['Name', 'Id', 'Category', 'Markets', 'Components', 'Latest verdict'],
      list.map((e) => [
        h('a', { href: `#/products/${enc(e.id)}` }, e.name),
        h('code', {}, e.id), e.category || '—', (e.markets || []).join(', ') || '—',
        String((e.components || []).length),
        latest.has(e.id) ? [verdict(latest.get(e.id).verdict), ' ', when(latest.get(e.id).at)] : verdict(null)]))
    : h('p', {}, 'None yet.'));
  if (can(me, 'POST', '/api/v1/entities')) main.append(addEntityForm(me, main, params));
}

function parseComponents(text) {
  return text.split('\n').map((l) => l.trim()).filter(Boolean).map((line, i) => {
    const [substance, cas, concentration, unit] = line.split(';').map((s) => s.trim());
    const c = Number(concentration);
    if (!substance || !concentration || Number.isNaN(c)) {
      throw Object.assign(new Error(`Component line ${i + 1} ("${line}") needs: substance; CAS; concentration; unit — e.g. "Glycerin; 56-81-5; 5; %w/w".`), { kind: 'invalid' });
    }
    const comp = { substance, concentration: c, unit: unit || '%w/w' };
    if (cas) comp.cas = cas;
    return comp;
  });
}

function addEntityForm(me, main, params) {
  const out = h('div');
  const form = h('form', { class: 'card', 'aria-labelledby': 'add-h' },
    h('h2', { id: 'add-h' }, 'Add a product or formulation'),
    field('Name', h('input', { name: 'name', required: true })),
    field('Id (optional)', h('input', { name: 'id' }), 'Letters, digits and dashes; made up when empty.'),
    field('Category', h('input', { name: 'category', value: 'leave_on' }), 'As the packs name it, e.g. leave_on, rinse_off, hair_rinse_off.'),
    field('Markets', h('input', { name: 'markets', value: 'EU' }), 'Comma-separated, e.g. EU, CH.'),
    field('Components', h('textarea', { name: 'components' }),
      'One per line: substance; CAS number; concentration; unit — e.g. "Salicylic acid; 69-72-7; 2; %w/w".'),
    h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Add product')),
    out);
  onSubmit(form, out, async (d) => {
    const body = {
      kind: 'product',
      name: d.get('name'),
      category: d.get('category') || undefined,
      markets: String(d.get('markets') || '').split(',').map((s) => s.trim()).filter(Boolean),
      components: parseComponents(String(d.get('components') || '')),
    };
    if (d.get('id')) body.id = d.get('id');
    const made = await call('POST', '/api/v1/entities', { body });
    window.location.hash = `#/products/${enc(made.id)}`;
    return null;
  });
  return form;
}

export async function product(me, main, params, id) {
  const shown = await call('GET', `/api/v1/entities/${enc(id)}`);
  const e = shown.entity;
  heading(main, e.name);
  main.append(h('p', {}, h('a', { href: '#/products' }, 'All products')),
    kv([['Id', h('code', {}, e.id)], ['Kind', e.kind], ['Category', e.category || '—'],
      ['Markets', (e.markets || []).join(', ') || '—']]));
  if ((e.components || []).length) {
    main.append(h('h2', {}, 'Components'), table('Formulation', ['Substance', 'CAS', 'Concentration'],
      e.components.map((c) => [c.substance, c.cas || '—', `${c.concentration} ${c.unit || ''}`])));
  }
  main.append(h('h2', {}, 'Documents'), shown.documents.length
    ? h('ul', {}, shown.documents.map((d) => h('li', {}, `${d.filename} (${d.kind}${d.expires ? `, expires ${d.expires}` : ''})`)))
    : h('p', {}, 'No documents. Upload them on the Documents page.'));
  const out = h('div');
  const evalSection = h('section', { 'aria-labelledby': 'ev-h' }, h('h2', { id: 'ev-h' }, 'Latest evaluation'));
  main.append(evalSection);
  if (e.kind === 'product' && can(me, 'POST', '/api/v1/evaluations')) {
    evalSection.append(h('div', { class: 'row' }, action('Evaluate now', out, async () => {
      await call('POST', '/api/v1/evaluations', { body: { products: [e.id] } });
      await product(me, main, params, id);
      main.querySelector('#ev-h').after(okBox('Evaluated; the verdict below is new.'));
    })), out);
  }
  const latest = shown.latest_evaluation;
  if (!latest) {
    evalSection.append(h('p', {}, 'Not evaluated yet.'));
    return;
  }
  const lock = await call('GET', `/api/v1/locks/${enc(latest.lock_id)}`);
  evalSection.append(
    h('p', {}, 'Verdict: ', verdict(latest.verdict), ' on ', when(latest.at), ` by ${latest.actor}`),
    h('p', { class: 'hint' }, 'Compliance Lock ', h('code', {}, latest.lock_id),
      ` pins the kernel build, these packs (${lock.content.packs.map((p) => `${p.name}@${p.version}`).join(', ')}) and the product as evaluated.`),
    h('h3', {}, 'Rules and their trace'),
    ...lock.result.rules.map((r) => h('details', { class: 'rule' },
      h('summary', {}, verdict(r.verdict), ' ', r.title || r.rule, ' ', h('span', { class: 'hint' }, `(${r.kind}, ${r.pack})`)),
      r.obligations.length ? h('p', {}, `Obligations: ${r.obligations.join('; ')}`) : null,
      table(`Trace of ${r.rule}`, ['Subject', 'Check', 'Verdict', 'Why'],
        r.trace.map((s) => [s.subject, s.check, verdict(s.verdict), s.detail])))));
  const replayOut = h('div');
  evalSection.append(h('div', { class: 'row' }, action('Replay this lock', replayOut, async () => {
    const r = await call('POST', `/api/v1/locks/${enc(latest.lock_id)}/replay`);
    return r.replay.identical
      ? okBox('Replayed: the result is byte-identical.')
      : errorBox({ kind: 'replay', message: 'The replay differs from the stored result. Keep this lock and contact support.' });
  }, { class: 'secondary' })), replayOut);
}

// ---------------------------------------------------------------- documents

const DOC_KINDS = [['cpsr', 'Safety report (CPSR)'], ['sds', 'Safety data sheet (SDS)'], ['coa', 'Certificate of analysis'], ['other', 'Other']];

export async function documents(me, main, params) {
  heading(main, 'Documents');
  const docs = await call('GET', '/api/v1/documents');
  const searchOut = h('div', { id: 'search-results' });
  const search = h('form', { class: 'card', role: 'search', 'aria-labelledby': 's-h' },
    h('h2', { id: 's-h' }, 'Search'),
    field('Words to find', h('input', { name: 'q', type: 'search', required: true, value: params.get('q') || '' }),
      'Searches products, substances and the text of documents.'),
    field('In', select('kind', [['', 'Everything'], ['document', 'Documents'], ['product', 'Products'], ['substance', 'Substances']], '')),
    h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Search')),
    searchOut);
  onSubmit(search, searchOut, async (d) => {
    const kind = d.get('kind');
    const hits = await call('GET', `/api/v1/search?q=${enc(d.get('q'))}${kind ? `&kind=${enc(kind)}` : ''}&limit=20`);
    if (!hits.length) return h('p', { role: 'status' }, 'Nothing found. Try fewer or other words.');
    return h('div', { role: 'status' }, h('p', {}, `${hits.length} found`), h('ol', { class: 'hits' }, hits.map((x) => h('li', {},
      x.kind === 'product' || x.kind === 'substance' || x.kind === 'supplier'
        ? h('a', { href: `#/products/${enc(x.id)}` }, x.title) : h('strong', {}, x.title),
      ` (${x.kind}) `, h('br'), snippet(x.snippet)))));
  });
  main.append(search);
  if (can(me, 'POST', '/api/v1/documents')) main.append(uploadForm(me, main, params));
  const out = h('div');
  main.append(h('h2', {}, 'All documents'), out, docs.length
    ? table(`${docs.length} documents`, ['File', 'Kind', 'Entity', 'Expires', 'Added', ''],
      docs.map((d) => [d.filename, d.kind, d.entity || '—', d.expires || '—', when(d.created_at),
        action('Download', out, () => download(d), { class: 'secondary', 'aria-label': `Download ${d.filename}` })]))
    : h('p', {}, 'No documents yet.'));
}

/** A search snippet with the matched words (in [brackets]) marked. */
function snippet(text) {
  return h('span', {}, text.split(/(\[[^\]]+\])/).map((part) =>
    (part.startsWith('[') && part.endsWith(']') ? h('mark', {}, part.slice(1, -1)) : part)));
}

async function download(d) {
  const content = await call('GET', `/api/v1/documents/${enc(d.id)}/content`, { blob: true });
  const url = URL.createObjectURL(content);
  const a = h('a', { href: url, download: d.filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  return null;
}

function uploadForm(me, main, params) {
  const out = h('div');
  const form = h('form', { class: 'card', 'aria-labelledby': 'up-h' },
    h('h2', { id: 'up-h' }, 'Upload a document'),
    field('File', h('input', { name: 'file', type: 'file', required: true, accept: '.pdf,.txt,application/pdf,text/plain' }), 'PDF or plain text.'),
    field('Kind', select('kind', DOC_KINDS, 'cpsr')),
    field('Belongs to (product id, optional)', h('input', { name: 'entity' })),
    field('Expires (optional)', h('input', { name: 'expires', type: 'date' })),
    h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Upload')),
    out);
  onSubmit(form, out, async (d) => {
    const file = d.get('file');
    if (!file || !file.name) throw Object.assign(new Error('Choose a file to upload.'), { kind: 'invalid' });
    let q = `kind=${enc(d.get('kind'))}&filename=${enc(file.name)}`;
    if (d.get('entity')) q += `&entity=${enc(d.get('entity'))}`;
    if (d.get('expires')) q += `&expires=${enc(d.get('expires'))}`;
    const doc = await call('POST', `/api/v1/documents?${q}`, { raw: await file.arrayBuffer(), contentType: file.type || 'application/octet-stream' });
    await documents(me, main, params);
    main.querySelector('h1').after(okBox(`Uploaded ${doc.filename}.`));
    return null;
  });
  return form;
}

// ---------------------------------------------------------------- ask

export async function ask(me, main) {
  heading(main, 'Ask');
  main.append(h('p', {}, 'Answers come from this spoke\'s documents and records. The local model\'s words are shown only when every number, date and name in them is in the passage they cite; otherwise the answer quotes the passage itself.'));
  const out = h('div', { id: 'answer' });
  const form = h('form', { class: 'card', 'aria-labelledby': 'ask-h' },
    h('h2', { id: 'ask-h' }, 'Question'),
    field('Your question', h('textarea', { name: 'question', required: true })),
    h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Ask')),
    out);
  onSubmit(form, out, async (d) => {
    fill(out, h('p', { role: 'status' }, 'Thinking… (the local model runs on this appliance\'s processor)'));
    const a = await call('POST', '/api/v1/ai/ask', { body: { question: d.get('question'), max_tokens: 96 } });
    const passage = h('section', { id: 'passage', 'aria-live': 'polite' });
    const byN = new Map(a.citations.map((c) => [c.n, c]));
    return h('div', {},
      h('h2', {}, 'Answer'),
      h('ul', { class: 'statements' }, a.statements.map((st) => statement(st, byN, passage))),
      h('h2', {}, 'Sources'),
      a.citations.length
        ? h('ol', { class: 'citations' }, a.citations.map((c) => h('li', {},
          h('button', { type: 'button', class: 'link', onclick: () => openPassage(c, passage) },
            `[${c.n}] ${c.filename}${c.source === 'document' ? `, passage ${c.ord + 1}` : ''}`),
          c.cited ? ' (cited)' : '')))
        : h('p', {}, 'Nothing on this spoke matched; upload documents that answer this, then ask again.'),
      passage,
      h('p', { class: 'hint' }, `Retrieval: ${a.retrieval}${a.generation_model ? `; model ${a.generation_model.name}@${a.generation_model.version}` : '; quoted, the model was not needed'}`));
  });
  main.append(form);
}

/** What each kind of statement is, in words. */
const STATEMENT_KINDS = {
  quoted: 'Quoted from the document',
  record: 'From this spoke\'s records',
  generated: 'The model\'s words, checked against the source',
  none: 'No answer',
};

/** One statement of an answer: its kind, its words, its citations. */
function statement(st, byN, passage) {
  const quoted = st.kind === 'quoted' || st.kind === 'record';
  return h('li', { class: `statement ${st.kind}` },
    h('span', { class: 'kind' }, STATEMENT_KINDS[st.kind] || st.kind), ' ',
    quoted ? h('q', { class: 'quote' }, st.text) : h('span', {}, st.text), ' ',
    st.citations.map((n) => byN.get(n)).filter(Boolean).map((c) => h('button', {
      type: 'button', class: 'link cite', 'aria-label': `Open source ${c.n}, ${c.filename}`,
      onclick: () => openPassage(c, passage, st.offsets),
    }, `[${c.n}]`)));
}

/** Shows a cited passage inside its document (or record), with the quoted
 * span, or else the whole passage, marked. */
async function openPassage(c, where, span) {
  const record = c.source !== 'document';
  const title = h('h2', { tabindex: '-1' }, `[${c.n}] ${c.filename}`);
  const [start, end] = span ? [span.start, span.end] : [c.start, c.end];
  fill(where, title, h('p', { class: 'hint' }, record
    ? (c.source === 'lock' ? `Compliance Lock ${c.document}, as the spoke stores it` : `The record of ${c.document}, as the spoke stores it`)
    : `Passage ${c.ord + 1}, characters ${start}–${end} of the document's text`));
  const enc8 = new TextEncoder();
  const dec = new TextDecoder();
  const marked = (bytes, from, to) => {
    const [before, cited, after] = [bytes.slice(0, from), bytes.slice(from, to), bytes.slice(to)].map((b) => dec.decode(b));
    return h('div', { class: 'passage' }, before, h('mark', {}, cited), after);
  };
  // Offsets are into the source's text; a record is its passage.
  let view = marked(enc8.encode(c.text), start - c.start, end - c.start);
  if (!record) {
    try {
      const meta = await call('GET', `/api/v1/documents/${enc(c.document)}`);
      if (meta.media_type && meta.media_type.startsWith('text/')) {
        const text = await call('GET', `/api/v1/documents/${enc(c.document)}/content`);
        const bytes = enc8.encode(typeof text === 'string' ? text : JSON.stringify(text));
        if (dec.decode(bytes.slice(c.start, c.end)) === c.text) view = marked(bytes, start, end);
      }
    } catch (err) {
      where.append(errorBox(err));
    }
  } else if (c.source === 'entity') {
    where.append(h('p', {}, h('a', { href: `#/products/${enc(c.document)}` }, 'Open the record')));
  }
  where.append(view);
  title.focus();
  const mark = view.querySelector('mark');
  if (mark) mark.scrollIntoView({ block: 'center' });
}

// ---------------------------------------------------------------- changes

/** How a change was or will be decided, in words. */
const MODES = {
  no_data: 'at once, as the spoke had no data yet',
  fresh_install: 'at once, with a fresh product install',
  safe_auto_update: 'at once, as the simulator found no verdict changes',
  approval: 'by a person with the right to approve packs',
  rollback: 'by a person: it undoes an applied change',
};

function mode(m) {
  return MODES[m] || m.replace(/_/g, ' ');
}

export async function changes(me, main) {
  heading(main, 'Packs and changes');
  const [packs, list] = await Promise.all([call('GET', '/api/v1/packs'), call('GET', '/api/v1/changes')]);
  main.append(h('h2', {}, 'Installed packs'), table('Installed packs; only active versions are used by evaluations',
    ['Pack', 'Version', 'State', 'Installed'],
    packs.map((p) => [p.name, p.version, p.active ? 'active' : 'installed, not active', when(p.installed_at)])));
  main.append(h('h2', {}, 'Changes'));
  if (!list.length) main.append(h('p', {}, 'No changes yet.'));
  const mayDecide = can(me, 'POST', '/api/v1/changes/{id}/approve');
  for (const c of list) main.append(changeCard(me, main, c, mayDecide));
}

function changeCard(me, main, c, mayDecide) {
  const out = h('div');
  const moves = c.packs.map((m) => `${m.to ? m.to.name : m.from.name}: ${m.from ? m.from.version : 'none'} → ${m.to ? m.to.version : 'none'}`);
  const diff = c.diff && c.diff.changes ? c.diff.changes : [];
  const card = h('section', { class: 'card change', 'aria-labelledby': `c-${c.id}`, 'data-status': c.status },
    h('h3', { id: `c-${c.id}` }, `${c.status === 'pending' ? 'Pending' : c.status === 'applied' ? 'Applied' : 'Rejected'}: ${moves.join('; ')}`),
    kv([['Change', h('code', {}, c.id)], ['Proposed', when(c.created_at)], ['How decided', mode(c.mode)],
      ['Decided', c.decided_by ? [`by ${c.decided_by} `, when(c.decided_at)] : 'not yet']]),
    h('h4', {}, 'What the simulator says it changes'),
    diff.length
      ? table('Verdicts that change when this is applied', ['Product', 'Rule', 'Before', 'After'],
        diff.map((d) => [h('a', { href: `#/products/${enc(d.product)}` }, d.product), d.rule, verdict(d.before), verdict(d.after)]))
      : h('p', {}, 'No verdict changes.'));
  const refresh = async (what) => {
    await changes(me, main);
    main.querySelector('h1').after(okBox(what));
    window.dispatchEvent(new Event('eurocomply:refresh'));
  };
  if (c.status === 'applied' && c.mode !== 'no_data' && can(me, 'POST', '/api/v1/changes/{id}/rollback')) {
    card.append(h('div', { class: 'row' }, action('Propose undoing this change', out, async () => {
      await call('POST', `/api/v1/changes/${enc(c.id)}/rollback`);
      await refresh('Proposed: the rollback waits above with its own simulator diff; approve it to apply.');
    }, { class: 'secondary' })), out);
  }
  if (c.status === 'pending') {
    if (mayDecide) {
      card.append(h('div', { class: 'row' },
        action('Approve and apply', out, async () => {
          await call('POST', `/api/v1/changes/${enc(c.id)}/approve`);
          await refresh('Applied: every product was re-evaluated with the new packs.');
        }),
        action('Reject', out, async () => {
          await call('POST', `/api/v1/changes/${enc(c.id)}/reject`);
          await refresh('Rejected: the active packs stay as they were.');
        }, { class: 'danger' })), out);
    } else {
      card.append(h('p', { class: 'hint' }, `Your role (${me.role}) cannot approve pack changes; a regulatory manager or administrator decides.`));
    }
  }
  return card;
}

// ---------------------------------------------------------------- import

export async function importMedia(me, main) {
  heading(main, 'Import');
  const listing = await call('GET', '/api/v1/media');
  const out = h('div', { id: 'medium' });
  main.append(h('p', {}, `Media are looked for in ${listing.dir}. Verifying checks every signature against this spoke's root of trust; nothing is installed until you choose Install.`));
  main.append(listing.media.length
    ? table('Media found', ['Medium', 'Encrypted', ''], listing.media.map((m) => [m.id,
      m.encrypted ? 'yes, to this spoke' : 'no',
      action('Verify and preview', out, () => previewMedium(m.id, out), { 'aria-label': `Verify and preview ${m.id}` })]))
    : h('p', {}, 'No medium found. Insert the USB stick or disc from your vendor, wait until it is mounted, then reload this page.'));
  main.append(out);
}

async function previewMedium(id, out) {
  fill(out, h('p', { role: 'status' }, `Verifying ${id}…`));
  const p = await call('POST', `/api/v1/media/${enc(id)}/preview`);
  const fresh = p.bundles.filter((b) => b.on_medium && !b.already_installed);
  const missing = p.bundles.filter((b) => !b.on_medium && !b.already_installed).length;
  const installOut = h('div', { id: 'install-result' });
  return h('section', { 'aria-labelledby': 'pv-h' },
    h('h2', { id: 'pv-h', tabindex: '-1' }, `${id}: signatures verified`),
    h('p', {}, `Signed under root version ${p.root_version}: ${fresh.length} new, ${p.bundles.filter((b) => b.already_installed).length} already installed${missing ? `, ${missing} listed but neither carried nor installed (ask the vendor for a full medium)` : ''}.`),
    table('What the medium holds', ['Kind', 'Name', 'Version', 'Published', 'On this spoke'],
      p.bundles.map((b) => [b.kind, b.name, b.version, when(b.published),
        b.already_installed ? 'already installed' : b.on_medium ? 'new' : 'not on this medium'])),
    h('p', { class: 'hint' }, 'Installing is not activating: a new pack version that changes verdicts waits on Packs and changes for approval, with the simulator\'s diff.'),
    fresh.length
      ? h('div', { class: 'row' }, action('Install', installOut, () => installMedium(id, installOut)))
      : h('p', {}, 'Nothing new to install.'),
    installOut);
}

async function installMedium(id, out) {
  const bar = h('progress', { max: '1', value: '0', 'aria-label': `Installing ${id}` });
  const note = h('p', { role: 'status' }, 'Verifying every chunk and installing…');
  fill(out, note, bar);
  const timer = setInterval(async () => {
    try {
      const p = await call('GET', '/api/v1/media/progress');
      if (p.running && p.total) {
        bar.max = p.total;
        bar.value = p.done;
        note.textContent = `Verifying and installing: ${Math.floor((100 * p.done) / p.total)}%`;
      }
    } catch {
      // The install's own answer reports any failure.
    }
  }, 400);
  let r;
  try {
    r = await call('POST', `/api/v1/media/${enc(id)}/install`);
  } finally {
    clearInterval(timer);
  }
  window.dispatchEvent(new Event('eurocomply:refresh'));
  const c = r.change;
  return h('div', {},
    okBox(`Installed ${r.installed.length} bundle${r.installed.length === 1 ? '' : 's'}.`),
    h('ul', {}, r.installed.map((b) => h('li', {}, `${b.kind} ${b.name} ${b.version}`))),
    c ? h('p', { id: 'proposed-change' }, c.status === 'pending'
      ? ['The pack change waits for approval: ', h('a', { href: '#/changes' }, 'review its diff on Packs and changes')]
      : `The pack change was ${c.status} ${mode(c.mode)}.`) : null);
}

// ---------------------------------------------------------------- backups

/** A backup's name (its UTC time, 20261130T210000.000Z) as a date. */
function backupTime(name) {
  const m = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)(\.\d+)?Z/.exec(name);
  return m ? when(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}${m[7] || ''}Z`) : name;
}

export async function backups(me, main) {
  heading(main, 'Backups');
  const b = await call('GET', '/api/v1/backups');
  const out = h('div', { id: 'backup-result' });
  main.append(
    h('p', {}, `Backups are written to ${b.dir}, encrypted with age to the operator's key, on the schedule \`spoke serve\` was started with${b.keep ? `, keeping the newest ${b.keep}` : ''}. Check one with \`spoke verify-restore\`.`),
    h('div', { class: 'row' }, action('Back up now', out, async () => {
      const r = await call('POST', '/api/v1/backups');
      await backups(me, main);
      main.querySelector('h1').after(okBox(`Backup ${r.name} written: ${r.files} files, ${r.new_chunks} new chunks of ${r.chunks}, ${r.written_bytes} bytes written.`));
    })), out,
    b.backups.length
      ? table(`${b.backups.length} backups, oldest first`, ['Backup', 'Taken'], b.backups.map((n) => [h('code', {}, n), backupTime(n)]))
      : h('p', {}, 'No backup yet.'));
}

// ---------------------------------------------------------------- audit

export async function audit(me, main, params) {
  heading(main, 'Audit log');
  const after = Number(params.get('after') || 0);
  const out = h('div', { id: 'verify-result' });
  main.append(h('div', { class: 'row' }, action('Verify the hash chain', out, async () => {
    const v = await call('GET', '/api/v1/audit/verify');
    return okBox(`The chain is intact: ${v.entries} entries, head ${String(v.head).slice(0, 16)}…`);
  })), out);
  const entries = await call('GET', `/api/v1/audit?after=${after}&limit=100`);
  main.append(table(`Entries after ${after}`, ['#', 'When', 'Who', 'From', 'Action', 'Target'],
    entries.map((e) => [String(e.seq), when(e.at), e.actor, e.origin, e.action, h('code', {}, e.target)])));
  const nav = h('div', { class: 'row' });
  if (after > 0) nav.append(h('a', { href: `#/audit?after=${Math.max(0, after - 100)}` }, 'Earlier entries'));
  if (entries.length === 100) nav.append(h('a', { href: `#/audit?after=${entries[entries.length - 1].seq}` }, 'Later entries'));
  main.append(nav);
}

// ---------------------------------------------------------------- users

const ROLES = [['viewer', 'viewer'], ['editor', 'editor'], ['auditor', 'auditor'], ['regulatory_manager', 'regulatory manager'], ['admin', 'admin']];

export async function users(me, main) {
  heading(main, 'Users and tokens');
  const [people, tokens] = await Promise.all([call('GET', '/api/v1/users'), call('GET', '/api/v1/tokens')]);
  const rerender = () => users(me, main);
  main.append(h('h2', {}, 'Users'), table('Users', ['Name', 'Role', 'Created', 'Sign-in'],
    people.map((u) => [u.name, u.role, when(u.created_at), u.disabled ? 'disabled' : 'allowed'])));
  const uOut = h('div');
  const uForm = h('form', { class: 'card', 'aria-labelledby': 'nu-h' },
    h('h2', { id: 'nu-h' }, 'Add a user'),
    field('Name', h('input', { name: 'name', required: true, autocomplete: 'off' })),
    field('Role', select('role', ROLES, 'viewer')),
    field('Password', h('input', { name: 'password', type: 'password', required: true, autocomplete: 'new-password' }), 'At least the length the spoke asks for; tell it to the person in private.'),
    h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Add user')), uOut);
  onSubmit(uForm, uOut, async (d) => {
    await call('POST', '/api/v1/users', { body: { name: d.get('name'), role: d.get('role'), password: d.get('password') } });
    await rerender();
    return null;
  });
  main.append(uForm);
  const live = tokens.filter((t) => !t.revoked_at && !(t.expires_at && Date.parse(t.expires_at) < Date.now()));
  const tOut = h('div');
  main.append(h('h2', {}, 'Tokens'), tOut, table('Tokens that still work (secrets are never shown again)',
    ['User', 'Kind', 'Label', 'Created', 'Expires', ''],
    live.map((t) => [t.user, t.kind, t.label, when(t.created_at), when(t.expires_at),
      action('Revoke', tOut, async () => {
        await call('DELETE', `/api/v1/tokens/${enc(t.id)}`);
        await rerender();
      }, { class: 'danger', 'aria-label': `Revoke token ${t.label} of ${t.user}` })])));
  const kOut = h('div');
  const kForm = h('form', { class: 'card', 'aria-labelledby': 'nt-h' },
    h('h2', { id: 'nt-h' }, 'Issue an API token'),
    field('For user', select('user', people.map((u) => [u.name, u.name]), people[0] ? people[0].name : '')),
    field('Label', h('input', { name: 'label', required: true }), 'What the token is for, e.g. "ERP export".'),
    field('Valid for (hours, optional)', h('input', { name: 'hours', type: 'number', min: '1' })),
    h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Issue token')), kOut);
  onSubmit(kForm, kOut, async (d) => {
    const body = { user: d.get('user'), label: d.get('label') };
    if (d.get('hours')) body.hours = Number(d.get('hours'));
    const t = await call('POST', '/api/v1/tokens', { body });
    await rerender();
    main.querySelector('h1').after(h('div', { class: 'ok', role: 'status' },
      h('p', {}, `Token "${body.label}" for ${body.user}: copy this secret now; it is not shown again:`), h('p', {}, h('code', { id: 'new-secret' }, t.secret))));
    return null;
  });
  main.append(kForm);
}
