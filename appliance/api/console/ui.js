// Building the page: elements are made with textContent only (never
// innerHTML), so nothing the spoke stores can become markup or script.

/** h('p', {class: 'hint'}, 'text', child...): an element. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** An error box: what failed and what to do (the API's message says it). */
export function errorBox(err) {
  const kind = err && err.kind ? err.kind : 'error';
  const message = err && err.message ? err.message : String(err);
  return h('div', { class: 'error', role: 'alert' },
    h('p', {}, h('strong', {}, 'Could not complete this: '), message),
    h('p', { class: 'mono' }, `(${kind}${err && err.status ? `, HTTP ${err.status}` : ''})`));
}

/** A success note, announced to screen readers. */
export function okBox(text) {
  return h('div', { class: 'ok', role: 'status' }, text);
}

/** A verdict badge: the word, not only a colour. */
export function verdict(v) {
  const word = v === 'needs_review' ? 'needs review' : v || 'not evaluated';
  return h('span', { class: `verdict verdict-${v || 'none'}` }, word);
}

/** A table with a caption (for screen readers) from header names and rows of cells. */
export function table(caption, headers, rows) {
  return h('div', { class: 'table-wrap' },
    h('table', {},
      h('caption', { class: 'hint' }, caption),
      h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c)))))));
}

let fieldIds = 0;

/** A labelled form control; `control` is an input/select/textarea element. */
export function field(label, control, hint) {
  fieldIds += 1;
  const id = control.id || `f${fieldIds}`;
  control.id = id;
  const hintEl = hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', {}, h('label', { for: id }, label), control, hintEl);
}

/** A <select> of [value, text] options. */
export function select(name, options, value) {
  return h('select', { name }, options.map(([v, t]) =>
    h('option', { value: v, selected: v === value }, t)));
}

/**
 * Runs `work` when the form is submitted, showing its errors (or its
 * result) in `out`; the submit button is disabled meanwhile.
 */
export function onSubmit(form, out, work) {
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const button = form.querySelector('button[type="submit"]');
    if (button) button.disabled = true;
    fill(out);
    try {
      const shown = await work(new FormData(form));
      if (shown) fill(out, shown);
    } catch (err) {
      fill(out, errorBox(err));
    } finally {
      if (button) button.disabled = false;
    }
  });
}

/** A button that runs `work`, showing errors in `out`. */
export function action(label, out, work, attrs = {}) {
  const b = h('button', { type: 'button', ...attrs }, label);
  b.addEventListener('click', async () => {
    b.disabled = true;
    fill(out);
    try {
      const shown = await work();
      if (shown) fill(out, shown);
    } catch (err) {
      fill(out, errorBox(err));
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

/** A date-time as the reader's locale shows it (UTC stays visible on hover). */
export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : h('time', { datetime: iso, title: iso }, d.toLocaleString());
}
