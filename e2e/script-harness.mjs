// Shared plumbing of the browser scripts (browser-signin.mjs, browser-federation.mjs): one JSON
// line on stdout, a global time bound, failure reports with the page's URL, HTML and a
// screenshot, and Chromium's launch flags. Each script keeps its own `browser` and `page` and
// hands them over through the getters.
import fs from 'node:fs';
import path from 'node:path';

export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

// Resolve to `fallback` if `promise` takes longer than `ms` (or fails).
export function within(ms, promise, fallback) {
  return Promise.race([
    Promise.resolve(promise).catch(() => fallback),
    new Promise((r) => setTimeout(r, ms, fallback).unref()),
  ]);
}

// tag: the log prefix; totalMs: the whole run's bound; stepMs: one navigation's bound;
// getBrowser/getPage: the script's current browser and page (or null); extra(): fields added
// to a failure report.
export function scriptHarness({ tag, totalMs, stepMs, getBrowser, getPage, extra = () => ({}) }) {
  const env = process.env;
  const log = (...a) => console.error(`[${tag}]`, ...a);
  let finished = false;
  let failing = false;

  function emit(obj, code) {
    if (finished) return;
    finished = true;
    // stdout to a pipe or file is synchronous on Linux, so the line is out before exit.
    process.stdout.write(JSON.stringify(obj) + '\n');
    process.exitCode = code;
  }

  async function closeBrowser() {
    const browser = getBrowser();
    if (browser) await within(5_000, browser.close(), undefined);
  }

  async function shot(name) {
    const page = getPage();
    if (!env.SCREENSHOT_DIR || !page) return;
    try {
      fs.mkdirSync(env.SCREENSHOT_DIR, { recursive: true });
      await within(5_000, page.screenshot({ path: path.join(env.SCREENSHOT_DIR, `${name}.png`), fullPage: true }), undefined);
    } catch (e) {
      log(`screenshot ${name} failed: ${e.message}`);
    }
  }

  // Report a failure and exit 1. `quick` (the global timer) skips the screenshot and the
  // orderly browser close; playwright kills Chromium when node exits anyway.
  async function fail(error, quick = false) {
    if (finished || (failing && !quick)) return;
    failing = true;
    // playwright's messages carry terminal colour codes; drop them.
    // eslint-disable-next-line no-control-regex
    const msg = (error instanceof Error ? error.message : String(error)).replace(/\u001b\[[0-9;]*m/g, '').trim();
    log('FAILED:', msg);
    let pageUrl = '';
    let html = '';
    const page = getPage();
    if (page) {
      try { pageUrl = page.url(); } catch { /* page gone */ }
      html = String(await within(quick ? 1_500 : 3_000, page.content(), '')).slice(0, 2000);
      if (!quick) await shot('failure');
    }
    emit({ ok: false, error: msg, pageUrl, html, ...extra() }, 1);
    if (!quick) await closeBrowser();
    process.exit(1);
  }

  // Global bound: whatever hangs, the process is gone within totalMs. The report starts 3 s
  // early so that it (at most ~1.5 s) fits inside; a hard exit follows regardless.
  setTimeout(() => {
    setTimeout(() => process.exit(1), 2_500).unref();
    fail(`timed out: the sign-in did not finish within ${(totalMs - 3_000) / 1000} s`, true);
  }, totalMs - 3_000);

  process.on('unhandledRejection', (e) => { fail(e); });

  // Navigate; returns page.goto's error message, or null. It rejects e.g. when a redirect hop
  // to the unlistened callback is refused by Chromium, or when another navigation interrupts
  // it: what counts is what the browser shows next, so the error is only reported, not thrown.
  async function open(url) {
    try {
      await getPage().goto(url, { waitUntil: 'domcontentloaded', timeout: stepMs });
      return null;
    } catch (e) {
      const msg = e.message.split('\n')[0];
      log(`goto ${url}: ${msg}`);
      return msg;
    }
  }

  return { log, emit, fail, shot, open, closeBrowser };
}
