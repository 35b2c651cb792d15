// The spoke console end to end in Debian's chromium, driven by Playwright.
// Run by tests/console.rs against a spoke it started with `--media` holding
// one medium (a pack update that fails a product); reads:
// CONSOLE_UPLOAD (a text file to upload) besides what harness.mjs reads.
// Every page is checked with axe-core (serious or critical violations fail).
// Exits non-zero on the first failed step; prints "N passed, N failed".

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { env, Harness } from './harness.mjs';

const upload = env('CONSOLE_UPLOAD');
const t = await Harness.start();
const { base } = t;

await t.run(async () => {
  const page = await t.newPage();

  await t.step('the console is served with a CSP that forbids inline code and framing', async () => {
    const res = await page.goto(base);
    const csp = res.headers()['content-security-policy'];
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /style-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/);
    assert.equal(res.headers()['x-frame-options'], 'DENY');
    for (const asset of ['app.js', 'api.js', 'ui.js', 'pages.js', 'console.css']) {
      const r = await page.request.get(`${base}/console/${asset}`);
      assert.equal(r.status(), 200, asset);
      assert.equal(r.headers()['content-security-policy'], csp, asset);
    }
    assert.equal(await page.locator('script:not([src]), [style], style').count(), 0, 'no inline script or style');
    // The API keeps its own policy, which allows nothing.
    const api = await page.request.get(`${base}/api/v1/openapi.json`);
    assert.equal(api.headers()['content-security-policy'], "default-src 'none'; frame-ancestors 'none'");
  });

  await t.step('sign-in says what to do on a wrong password', async () => {
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    await t.accessible(page, 'sign-in');
    await t.shot(page, 'sign-in');
    await page.getByLabel('User name').fill('regulatory_manager');
    await page.getByLabel('Password').fill('not the password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'wrong user name or password' }).waitFor();
  });

  await t.step('an administrator previews a medium, then installs it with progress', async () => {
    const admin = await t.newPage();
    await t.signIn(admin, 'admin');
    await t.go(admin, 'Import');
    await admin.getByRole('cell', { name: 'annexes-2026.2.0', exact: true }).waitFor();
    await admin.getByRole('button', { name: 'Verify and preview annexes-2026.2.0' }).click();
    await admin.getByRole('heading', { name: 'annexes-2026.2.0: signatures verified' }).waitFor();
    const row = admin.locator('#medium tbody tr', { hasText: '2026.2.0' });
    assert.deepEqual((await row.locator('td').allTextContents()).filter((_, i) => i !== 3),
      ['pack', '@data/eu-cosmetics-annexes', '2026.2.0', 'new']);
    await t.accessible(admin, 'import');
    await t.shot(admin, 'import');
    await admin.getByRole('button', { name: 'Install', exact: true }).click();
    await admin.getByText('Installed 1 bundle.').waitFor();
    await admin.locator('#proposed-change').getByText('The pack change waits for approval').waitFor();
    const { body: progress } = await t.api(admin, 'GET', '/api/v1/media/progress');
    assert.equal(progress.medium, 'annexes-2026.2.0');
    assert.equal(progress.running, false);
    assert.ok(progress.total > 0 && progress.done === progress.total, JSON.stringify(progress));
    await admin.close();
  });

  await t.step('keyboard: the skip link and the page list work without a mouse', async () => {
    await t.signIn(page, 'regulatory_manager');
    // A fresh load leaves focus at the top, so the first Tab reaches the skip link.
    await page.reload();
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'skip');
    await page.keyboard.press('Enter');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'main');
    await page.getByRole('navigation').getByRole('link', { name: 'Products' }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { level: 1, name: 'Products and formulations' }).waitFor();
    await t.go(page, 'Overview');
  });

  await t.step('overview: health, lifecycle, licence, software, last import, pending changes, data', async () => {
    const main = page.locator('main');
    await main.getByText('Healthy').waitFor();
    assert.equal(await page.locator('#lifecycle-state').textContent(), 'ACTIVE');
    // The sample medium carries no product licence.
    await main.getByText('No licence installed: import the product medium from your vendor.').waitFor();
    await main.getByText('Slot state: not reported').waitFor();
    assert.match(await page.locator('#disk').textContent(), /^Disk: \d+\.\d MiB used by the spoke; \d+\.\d MiB free of \d+\.\d MiB$/);
    await main.getByRole('link', { name: '1 pack change waiting for a decision' }).waitFor();
    assert.equal(await page.locator('#banner').isHidden(), true);
    // A regulatory manager is not an administrator: no lifecycle form, no users page.
    assert.equal(await page.getByRole('heading', { name: 'Change the lifecycle state' }).count(), 0);
    assert.equal(await page.getByRole('navigation').getByRole('link', { name: 'Users and tokens' }).count(), 0);
    await t.accessible(page, 'overview');
    await t.shot(page, 'overview');
  });

  await t.step('on a tablet (768 × 1024) the pages fit the screen', async () => {
    await page.setViewportSize({ width: 768, height: 1024 });
    for (const [label, heading] of [['Overview'], ['Products', 'Products and formulations'], ['Packs and changes']]) {
      await t.go(page, label, heading);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `${label} is ${overflow}px wider than a tablet`);
    }
    await t.shot(page, 'tablet');
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  await t.step('products: add a product', async () => {
    await t.go(page, 'Products', 'Products and formulations');
    await page.getByRole('link', { name: 'Hydra Serum' }).waitFor();
    const verdicts = await page.locator('main tbody tr').evaluateAll((trs) =>
      Object.fromEntries(trs.map((tr) => [tr.cells[1].textContent, tr.cells[5].querySelector('.verdict').textContent])));
    assert.deepEqual(verdicts, { 'glow-cream': 'fail', 'hydra-serum': 'pass', 'mystery-balm': 'needs review' });
    await page.getByLabel('Name', { exact: true }).fill('Console Toner');
    await page.getByLabel('Id (optional)').fill('console-toner');
    await page.getByLabel('Category').fill('hair_rinse_off');
    await page.getByLabel('Components').fill('Aqua; 7732-18-5; 97.5; %w/w\nSalicylic acid; 69-72-7; 2.5; %w/w');
    await t.accessible(page, 'products');
    await t.shot(page, 'products');
    await page.getByRole('button', { name: 'Add product' }).click();
    await page.getByRole('heading', { level: 1, name: 'Console Toner' }).waitFor();
    await page.getByText('Not evaluated yet.').waitFor();
  });

  await t.step('products: a bad component line says how to write it', async () => {
    await t.go(page, 'Products', 'Products and formulations');
    await page.getByLabel('Name', { exact: true }).fill('Broken');
    await page.getByLabel('Components').fill('Glycerin five percent');
    await page.getByRole('button', { name: 'Add product' }).click();
    await page.getByRole('alert').filter({ hasText: 'needs: substance; CAS; concentration; unit' }).waitFor();
  });

  await t.step('documents: upload a safety report for the product', async () => {
    await t.go(page, 'Documents');
    await page.getByLabel('File').setInputFiles(upload);
    await page.getByLabel('Belongs to (product id, optional)').fill('console-toner');
    await page.getByLabel('Expires (optional)').fill('2099-01-01');
    await page.getByRole('button', { name: 'Upload' }).click();
    await page.getByRole('status').filter({ hasText: 'Uploaded toner-cpsr.txt.' }).waitFor();
    await page.getByRole('cell', { name: 'toner-cpsr.txt', exact: true }).waitFor();
  });

  await t.step('documents: search finds the upload, with the words marked', async () => {
    await page.getByLabel('Words to find').fill('benzoate');
    await page.getByRole('button', { name: 'Search', exact: true }).click();
    const results = page.locator('#search-results');
    await results.getByText('1 found').waitFor();
    await results.locator('mark', { hasText: 'benzoate' }).first().waitFor();
    await t.accessible(page, 'documents');
    await t.shot(page, 'documents');
  });

  await t.step('evaluate the product and open the rule trace behind its verdict', async () => {
    await t.go(page, 'Products', 'Products and formulations');
    await page.getByRole('link', { name: 'Console Toner' }).click();
    await page.getByRole('heading', { level: 1, name: 'Console Toner' }).waitFor();
    await page.getByText('toner-cpsr.txt (cpsr, expires 2099-01-01)').waitFor();
    await page.getByRole('button', { name: 'Evaluate now' }).click();
    await page.getByText('Evaluated; the verdict below is new.').waitFor();
    const verdictLine = page.locator('main p', { hasText: 'Verdict:' });
    assert.equal(await verdictLine.locator('.verdict').textContent(), 'pass');
    const rules = page.locator('details.rule');
    assert.ok(await rules.count() >= 2, 'one row per rule');
    await rules.first().locator('summary').click();
    const trace = rules.first().locator('table');
    await trace.waitFor();
    assert.ok(await trace.locator('tbody tr').count() >= 1, 'the trace has steps');
    await page.getByRole('button', { name: 'Replay this lock' }).click();
    await page.getByText('Replayed: the result is byte-identical.').waitFor();
    await t.accessible(page, 'trace');
    await t.shot(page, 'trace');
  });

  await t.step('ask a question and open the cited passage', async () => {
    await t.go(page, 'Ask');
    await page.getByLabel('Your question').fill('Which preservative does the Console Toner contain?');
    await page.getByRole('button', { name: 'Ask' }).click();
    await page.getByRole('heading', { name: 'Sources' }).waitFor({ timeout: 120000 });
    // A "which" question is answered by quoting what answers it (from a
    // document or the product's record), marked as a quote; its citation
    // opens the source with exactly that span marked.
    const quote = page.locator('li.statement.quoted, li.statement.record').first();
    assert.match(await quote.locator('.kind').textContent(), /Quoted from the document|From this spoke's records/);
    const said = await quote.locator('q').textContent();
    assert.ok(said.length > 10, said);
    await quote.locator('button.cite').first().click();
    await page.locator('#passage mark').waitFor();
    assert.equal(await page.locator('#passage mark').textContent(), said, 'the quoted span is marked');
    assert.ok((await page.locator('#passage .passage').textContent()).includes(said), 'inside its source');
    // The sources list opens whole passages.
    const cites = page.locator('ol.citations button');
    assert.match(await cites.first().textContent(), /^\[1\] .+/);
    const toner = cites.filter({ hasText: 'toner-cpsr.txt' });
    const label = await toner.textContent();
    await toner.click();
    const passage = page.locator('#passage');
    await passage.getByRole('heading', { name: label.replace(/, passage \d+$/, '') }).waitFor();
    const marked = await passage.locator('mark').textContent();
    assert.ok(marked.length > 20 && fs.readFileSync(upload, 'utf8').includes(marked), `the cited passage is shown: ${marked}`);
    assert.equal(await passage.locator('.passage').textContent(), fs.readFileSync(upload, 'utf8'), 'inside its document');
    await t.accessible(page, 'ask');
    await t.shot(page, 'ask');
  });

  await t.step('a viewer sees the pending change but cannot approve it, and the API refuses', async () => {
    const viewer = await t.newPage();
    await t.signIn(viewer, 'viewer');
    const links = await viewer.getByRole('navigation').getByRole('link').allTextContents();
    assert.deepEqual(links, ['Overview', 'Products', 'Documents', 'Ask', 'Packs and changes']);
    await t.go(viewer, 'Packs and changes');
    const card = viewer.locator('section.change[data-status="pending"]');
    await card.getByText('cannot approve pack changes').waitFor();
    const change = await card.locator('dd code').first().textContent();
    assert.equal(await viewer.getByRole('button', { name: 'Approve and apply' }).count(), 0);
    await t.go(viewer, 'Products', 'Products and formulations');
    assert.equal(await viewer.getByRole('heading', { name: 'Add a product or formulation' }).count(), 0);
    const refused = await t.api(viewer, 'POST', `/api/v1/changes/${change}/approve`);
    assert.equal(refused.status, 403);
    assert.equal(refused.body.error.kind, 'forbidden');
    assert.match(refused.body.error.message, /ask an administrator/);
    await t.go(viewer, 'Packs and changes');
    await t.shot(viewer, 'changes-viewer');
    await viewer.close();
  });

  await t.step('a regulatory manager reads the simulator diff and approves the change', async () => {
    await t.go(page, 'Packs and changes');
    const card = page.locator('section.change[data-status="pending"]');
    const row = card.locator('tbody tr', { hasText: 'overall' });
    await row.waitFor();
    assert.deepEqual(await row.locator('td').allTextContents(), ['hydra-serum', 'overall', 'pass', 'fail']);
    await t.accessible(page, 'changes');
    await t.shot(page, 'changes');
    await card.getByRole('button', { name: 'Approve and apply' }).click();
    await page.getByText('Applied: every product was re-evaluated with the new packs.').waitFor();
    assert.equal(await page.locator('section.change[data-status="pending"]').count(), 0);
    await page.getByRole('cell', { name: '2026.2.0' }).waitFor();
    // Undoing it is a change of its own, simulated, then rejected here.
    await page.locator('section.change[data-status="applied"]').first()
      .getByRole('button', { name: 'Propose undoing this change' }).click();
    await page.getByText('Proposed: the rollback waits above').waitFor();
    const back = page.locator('section.change[data-status="pending"]');
    assert.deepEqual(await back.locator('tbody tr', { hasText: 'overall' }).locator('td').allTextContents(),
      ['hydra-serum', 'overall', 'fail', 'pass']);
    await back.getByRole('button', { name: 'Reject' }).click();
    await page.getByText('Rejected: the active packs stay as they were.').waitFor();
    assert.equal(await page.locator('section.change[data-status="pending"]').count(), 0);
  });

  await t.step('audit log: entries and a verified chain', async () => {
    await t.go(page, 'Audit log');
    await page.getByRole('cell', { name: 'change.apply' }).first().waitFor();
    await page.getByRole('button', { name: 'Verify the hash chain' }).click();
    await page.locator('#verify-result').getByText('The chain is intact').waitFor();
    await t.accessible(page, 'audit');
    await t.shot(page, 'audit');
  });

  await t.step('an administrator manages users and tokens, backs up and puts the spoke under legal hold', async () => {
    const admin = await t.newPage();
    await t.signIn(admin, 'admin');
    await t.go(admin, 'Users and tokens');
    await admin.getByRole('cell', { name: 'regulatory_manager' }).first().waitFor();
    await admin.getByLabel('Label').fill('ERP export');
    await admin.getByRole('button', { name: 'Issue token' }).click();
    await admin.getByText('Token "ERP export" for admin: copy this secret now').waitFor();
    assert.match(await admin.locator('#new-secret').textContent(), /^sk_[0-9a-f]{64}$/);
    await admin.getByRole('cell', { name: 'ERP export', exact: true }).waitFor();
    await admin.getByRole('button', { name: 'Revoke token ERP export of admin' }).click();
    await admin.getByRole('cell', { name: 'ERP export', exact: true }).waitFor({ state: 'detached' });
    await t.accessible(admin, 'users');
    await t.shot(admin, 'users');
    // The scheduled backup runs when the spoke starts; then one more by hand.
    await t.go(admin, 'Backups');
    const listed = admin.locator('main tbody tr');
    for (let i = 0; i < 60 && await listed.count() === 0; i += 1) {
      await admin.waitForTimeout(500);
      await t.go(admin, 'Overview');
      await t.go(admin, 'Backups');
    }
    const before = await listed.count();
    assert.ok(before >= 1, 'the scheduled backup is listed');
    await admin.getByRole('button', { name: 'Back up now' }).click();
    await admin.getByText(/^Backup \S+ written: \d+ files/).waitFor();
    assert.equal(await listed.count(), before + 1);
    await t.accessible(admin, 'backups');
    await t.shot(admin, 'backups');
    await t.go(admin, 'Overview');
    await admin.getByLabel('New state').selectOption('LEGAL_HOLD');
    await admin.getByLabel('Reason').fill('litigation 2026-17');
    await admin.getByRole('button', { name: 'Set state' }).click();
    await admin.locator('#banner').getByText('under LEGAL HOLD').waitFor();
    await admin.close();
  });

  await t.step('under legal hold every page shows it, and a refused change says why', async () => {
    await t.go(page, 'Products', 'Products and formulations');
    await page.locator('#banner').getByText('under LEGAL HOLD').waitFor();
    await page.getByRole('link', { name: 'Console Toner' }).click();
    await page.getByRole('button', { name: 'Evaluate now' }).click();
    await page.getByRole('alert').filter({ hasText: 'LEGAL_HOLD' }).waitFor();
    await t.accessible(page, 'legal hold');
    await t.shot(page, 'legal-hold');
  });

  await t.step('signing out revokes the session', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('eurocomply.session')), null);
  });
});
