// What the console's browser tests share: Debian's chromium launched through
// Playwright with a fresh profile, steps that print "ok -"/"not ok -" and
// end with "N passed, N failed", axe-core checks, screenshots, and signing in.
// Reads CONSOLE_URL (the spoke), CONSOLE_PASSWORD (of the users named after
// their roles), CONSOLE_SCREENSHOTS (a directory) and CHROMIUM (default
// /usr/bin/chromium), as tests/console.rs sets them.

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** An environment variable the Rust test sets. */
export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set; run this through \`cargo test --test console\``);
  return v;
}

const axeSource = fs.readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

export class Harness {
  constructor(context, profile) {
    this.context = context;
    this.profile = profile;
    this.base = env('CONSOLE_URL');
    this.password = env('CONSOLE_PASSWORD');
    this.shots = env('CONSOLE_SCREENSHOTS');
    this.passed = 0;
    this.problems = [];
  }

  /** Launches chromium (headless, no network of its own, a fresh profile). */
  static async start() {
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'console-chromium-'));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      viewport: { width: 1280, height: 900 },
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    return new Harness(context, profile);
  }

  /** Runs `steps`, then checks no page logged a script error or a CSP violation. */
  async run(steps) {
    try {
      await steps();
      await this.step('no script errors and no CSP violations on any page', async () => {
        assert.deepEqual(this.problems, []);
      });
      console.log(`${this.passed} passed, 0 failed`);
    } catch {
      console.log(`${this.passed} passed, 1 failed`);
      process.exitCode = 1;
    } finally {
      await this.context.close();
      fs.rmSync(this.profile, { recursive: true, force: true });
    }
  }

  /** One named step; a failure screenshots every open page and stops the run. */
  async step(name, work) {
    try {
      await work();
      this.passed += 1;
      console.log(`ok - ${name}`);
    } catch (err) {
      console.log(`not ok - ${name}\n${err.stack || err}`);
      for (const [i, p] of this.context.pages().entries()) {
        await p.screenshot({ path: path.join(this.shots, `failed-${i}.png`), fullPage: true }).catch(() => {});
      }
      throw err;
    }
  }

  /** Runs axe-core on the page; fails on serious or critical violations. */
  async accessible(page, label) {
    // Evaluated through the DevTools protocol, which the page's CSP does not
    // govern (a <script> tag would rightly be refused by it).
    await page.evaluate(axeSource);
    const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
    const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    assert.deepEqual(bad.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`), [],
      `axe-core on ${label}`);
  }

  async shot(page, name) {
    await page.screenshot({ path: path.join(this.shots, `${name}.png`), fullPage: true });
  }

  /** A page of its own (its own sessionStorage, so its own sign-in). */
  async newPage() {
    const page = await this.context.newPage();
    page.setDefaultTimeout(20000);
    page.on('console', (m) => {
      if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) this.problems.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => this.problems.push(`page error: ${e.message}`));
    return page;
  }

  async signIn(page, user) {
    await page.goto(this.base);
    await page.getByLabel('User name').fill(user);
    await page.getByLabel('Password').fill(this.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    await page.locator('main[aria-busy="false"]').waitFor();
  }

  /** Opens a page from the navigation and waits until it has loaded. */
  async go(page, label, heading) {
    await page.getByRole('navigation').getByRole('link', { name: label }).click();
    await page.getByRole('heading', { level: 1, name: heading || label }).waitFor();
    // The page has drawn everything it loads.
    await page.locator('main[aria-busy="false"]').waitFor();
  }

  /** Calls the API from the page with its own session's token. */
  async api(page, method, path) {
    return page.evaluate(async ([m, p]) => {
      const { secret } = JSON.parse(sessionStorage.getItem('eurocomply.session'));
      const r = await fetch(p, { method: m, headers: { authorization: `Bearer ${secret}` } });
      return { status: r.status, body: await r.json() };
    }, [method, path]);
  }
}
