// Real-Chromium rendering of Cutover's admin web UI, for the Rust integration tests
// (crates/cutover/tests/it/admin_ui.rs).
//
// Spawned as `node e2e/admin-pages.mjs` with these environment variables:
//   CHROMIUM         path to the Chromium binary (Debian's /usr/bin/chromium; never downloaded)
//   BASE             Cutover's origin, e.g. http://127.0.0.1:PORT
//   USERNAME         the administrator's user principal name
//   SECRET           their Temporary Access Pass (or password, for a member with another
//                    second factor): typed into <input id="password"> on the credential page
//   PATHS            JSON array of admin paths to render, e.g. ["/admin","/admin/users"]
//   PHONE_PATHS      optional JSON array: these are rendered again 390 px wide ("-phone")
//   SCREENSHOT_DIR   where <slug>.png (full page) is saved for every path; failure.png too
//
// Flow: open BASE + PATHS[0]; Cutover sends the browser through its sign-in pages (identifier,
// then the pass or password page); back on the admin page, visit every path (1280×900, then
// the phone paths at 390×844), wait for `load`, and check it.
//
// A page FAILS when: its HTTP status is >= 400; it has no <h1>; the console logged an error;
// the page threw; a request to Cutover's own origin failed or answered >= 400; an input or
// select has no label; a chart (svg.chart) lacks its <title> or <desc>; or, on a phone, the
// page is wider than the screen.
//
// Prints exactly ONE line of JSON on stdout:
//   {"ok":BOOL,"pages":[{"path","view","status","title","h1","charts","consoleErrors",
//     "pageErrors","failedRequests","badResponses","a11y","overflowX","screenshot"}...],
//    "error"?:MSG}
// and exits 0 when every page is clean, 1 otherwise. The run is bounded to 150 s.
// Diagnostics go to stderr.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { CHROMIUM_ARGS, scriptHarness } from './script-harness.mjs';

const TOTAL_MS = 150_000;
const STEP_MS = 20_000;
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };

const env = process.env;
let browser = null;
let page = null;
const pages = [];
const { log, emit, fail } = scriptHarness({
  tag: 'admin-pages',
  totalMs: TOTAL_MS,
  stepMs: STEP_MS,
  getBrowser: () => browser,
  getPage: () => page,
  extra: () => ({ pages }),
});

// What the page being checked collected; null while signing in (the sign-in pages are not
// under test here).
let current = null;

function sameOrigin(url) {
  try {
    return new URL(url).origin === new URL(env.BASE).origin;
  } catch {
    return false;
  }
}

const used = new Set();
function slug(p, suffix) {
  let s = p.split('#')[0].replace(/^\/+/, '').replace(/[^A-Za-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
  s = (s || 'root').slice(0, 90) + suffix;
  let out = s;
  for (let n = 2; used.has(out); n += 1) out = `${s}-${n}`;
  used.add(out);
  return out;
}

function parseList(name, required) {
  const raw = env[name];
  if (!raw) {
    if (required) throw new Error(`environment variable ${name} is not set`);
    return [];
  }
  const v = JSON.parse(raw);
  if (!Array.isArray(v) || !v.every((p) => typeof p === 'string' && p.startsWith('/'))) {
    throw new Error(`${name} must be a JSON array of paths starting with /`);
  }
  return v;
}

async function signIn(first) {
  const url = env.BASE + first;
  await page.goto(url, { waitUntil: 'domcontentloaded', timeout: STEP_MS });
  await page.waitForSelector('input#username', { state: 'visible', timeout: STEP_MS });
  await page.fill('input#username', env.USERNAME);
  await page.click('button#next');
  await page.waitForSelector('input#password', { state: 'visible', timeout: STEP_MS });
  await page.fill('input#password', env.SECRET);
  await Promise.all([
    page.waitForURL((u) => u.href.startsWith(env.BASE + '/admin'), { timeout: STEP_MS }),
    page.click('button#signin'),
  ]);
  log('signed in; at', page.url());
}

// Checks that need the DOM: labels of form fields, chart titles, width.
async function domChecks() {
  return page.evaluate(() => {
    const problems = [];
    for (const el of document.querySelectorAll('input, select, textarea')) {
      if (el.type === 'hidden') continue;
      const labelled = (el.id && document.querySelector(`label[for="${CSS.escape(el.id)}"]`))
        || el.getAttribute('aria-label') || el.closest('label');
      if (!labelled) problems.push(`unlabelled ${el.tagName.toLowerCase()} name=${el.getAttribute('name')}`);
    }
    for (const svg of document.querySelectorAll('svg.chart')) {
      if (svg.getAttribute('role') !== 'img') problems.push('a chart without role=img');
      if (!svg.querySelector('title') || !svg.querySelector('desc')) problems.push('a chart without <title>/<desc>');
    }
    for (const th of document.querySelectorAll('thead th')) {
      if (!th.getAttribute('scope')) problems.push('a table header without scope');
    }
    const h1 = document.querySelector('h1');
    return {
      problems,
      h1: h1 ? h1.textContent.trim() : '',
      title: document.title,
      charts: document.querySelectorAll('svg.chart').length,
      overflowX: document.documentElement.scrollWidth > window.innerWidth + 1,
    };
  });
}

async function visit(p, view) {
  const size = view === 'phone' ? PHONE : DESKTOP;
  await page.setViewportSize(size);
  current = { consoleErrors: [], pageErrors: [], failedRequests: [], badResponses: [] };
  let status = 0;
  try {
    const res = await page.goto(env.BASE + p, { waitUntil: 'load', timeout: STEP_MS });
    status = res ? res.status() : 0;
  } catch (e) {
    current.pageErrors.push(`navigation failed: ${e.message.split('\n')[0]}`);
  }
  // Late console messages and subresources get a moment to arrive.
  await page.waitForLoadState('networkidle', { timeout: 5_000 }).catch(() => {});
  const dom = await domChecks().catch((e) => ({ problems: [`DOM checks failed: ${e.message}`], h1: '', title: '', charts: 0, overflowX: false }));
  const file = path.join(env.SCREENSHOT_DIR, `${slug(p, view === 'phone' ? '-phone' : '')}.png`);
  await page.screenshot({ path: file, fullPage: true, timeout: STEP_MS }).catch((e) => {
    current.pageErrors.push(`screenshot failed: ${e.message.split('\n')[0]}`);
  });
  const entry = {
    path: p,
    view,
    status,
    title: dom.title,
    h1: dom.h1,
    charts: dom.charts,
    ...current,
    a11y: dom.problems,
    overflowX: view === 'phone' ? dom.overflowX : false,
    screenshot: file,
  };
  current = null;
  entry.ok = status > 0 && status < 400 && entry.h1 !== ''
    && entry.consoleErrors.length === 0 && entry.pageErrors.length === 0
    && entry.failedRequests.length === 0 && entry.badResponses.length === 0
    && entry.a11y.length === 0 && !entry.overflowX;
  log(`${entry.ok ? 'ok  ' : 'FAIL'} ${view} ${p} -> ${status} "${entry.h1}"`);
  pages.push(entry);
}

async function main() {
  for (const name of ['BASE', 'USERNAME', 'SECRET', 'SCREENSHOT_DIR']) {
    if (!env[name]) throw new Error(`environment variable ${name} is not set`);
  }
  const paths = parseList('PATHS', true);
  const phone = parseList('PHONE_PATHS', false);
  if (paths.length === 0) throw new Error('PATHS is empty');
  const executablePath = env.CHROMIUM || '/usr/bin/chromium';
  if (!fs.existsSync(executablePath)) throw new Error(`Chromium not found at ${executablePath}`);
  fs.mkdirSync(env.SCREENSHOT_DIR, { recursive: true });

  browser = await chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS, timeout: STEP_MS });
  const context = await browser.newContext({ viewport: DESKTOP });
  context.setDefaultTimeout(STEP_MS);
  page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') {
      log(`console.error: ${m.text()}`);
      if (current) current.consoleErrors.push(m.text());
    }
  });
  page.on('pageerror', (e) => {
    log(`page error: ${e}`);
    if (current) current.pageErrors.push(String(e));
  });
  page.on('requestfailed', (r) => {
    if (current && sameOrigin(r.url())) current.failedRequests.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`);
  });
  page.on('response', (r) => {
    if (current && sameOrigin(r.url()) && r.status() >= 400) current.badResponses.push(`${r.status()} ${r.url()}`);
  });

  await signIn(paths[0]);
  for (const p of paths) await visit(p, 'desktop');
  for (const p of phone) await visit(p, 'phone');
  const ok = pages.every((p) => p.ok);
  emit({ ok, pages }, ok ? 0 : 1);
  await browser.close().catch(() => {});
  process.exit(ok ? 0 : 1);
}

main().catch((e) => fail(e));
