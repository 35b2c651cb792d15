// A spoke just initialised, with nothing installed: an administrator who has
// never seen the product installs it from a medium through the console
// alone, then adds and evaluates a formulation. Run by tests/console.rs
// against a spoke started with `--media` holding the licensed product
// medium; reads what harness.mjs reads.

import assert from 'node:assert/strict';
import { Harness } from './harness.mjs';

const t = await Harness.start();

await t.run(async () => {
  const page = await t.newPage();

  await t.step('an empty spoke says what to do first', async () => {
    await t.signIn(page, 'admin');
    const main = page.locator('main');
    await main.getByText('No licence installed: import the product medium from your vendor.').waitFor();
    await main.getByText('Nothing imported yet').waitFor();
    await main.getByText('Active packs: none').waitFor();
    await t.accessible(page, 'empty overview');
    await t.shot(page, 'empty-overview');
  });

  await t.step('the product medium is verified and previewed: everything on it is new', async () => {
    await t.go(page, 'Import');
    await page.getByRole('button', { name: 'Verify and preview eurocomply-cosmetics' }).click();
    await page.getByRole('heading', { name: 'eurocomply-cosmetics: signatures verified' }).waitFor();
    const rows = page.locator('#medium section tbody tr');
    const kinds = (await rows.evaluateAll((trs) => trs.map((tr) => `${tr.cells[0].textContent} ${tr.cells[4].textContent}`))).sort();
    assert.deepEqual(kinds, ['pack new', 'pack new', 'pack new', 'pack new', 'pack new', 'product new']);
    await t.shot(page, 'first-preview');
  });

  await t.step('installing it applies the packs at once (nothing to compare against) and the licence', async () => {
    await page.getByRole('button', { name: 'Install', exact: true }).click();
    await page.getByText('Installed 6 bundles.').waitFor();
    await page.locator('#proposed-change').getByText('The pack change was applied at once, as the spoke had no data yet.').waitFor();
    await t.shot(page, 'first-install');
    await t.go(page, 'Overview');
    const main = page.locator('main');
    await main.getByText('Plan growth').waitFor();
    await main.getByText(/^Expires 2099-12-31 \(\d+ days left\)$/).waitFor();
    await main.getByText(/^Active packs: .*@eu\/cosmetics-regulation-1223@2\.0\.0/).waitFor();
  });

  await t.step('a formulation is added and evaluated against the installed rules', async () => {
    await t.go(page, 'Products', 'Products and formulations');
    await page.getByLabel('Name', { exact: true }).fill('First Serum');
    await page.getByLabel('Id (optional)').fill('first-serum');
    await page.getByLabel('Components').fill('Aqua; 7732-18-5; 99; %w/w\nLead acetate; 7439-92-1; 1; %w/w');
    await page.getByRole('button', { name: 'Add product' }).click();
    await page.getByRole('heading', { level: 1, name: 'First Serum' }).waitFor();
    await page.getByRole('button', { name: 'Evaluate now' }).click();
    await page.getByText('Evaluated; the verdict below is new.').waitFor();
    const verdict = page.locator('main p', { hasText: 'Verdict:' }).locator('.verdict');
    assert.equal(await verdict.textContent(), 'fail', 'lead acetate is prohibited (Annex II)');
    const annexII = page.locator('details.rule', { hasText: 'Annex II:' });
    await annexII.locator('summary').click();
    await annexII.getByRole('cell', { name: /Lead acetate/ }).first().waitFor();
    await t.accessible(page, 'first evaluation');
    await t.shot(page, 'first-evaluation');
  });
});
