// Real-browser sign-in for Cutover's Rust integration tests.
//
// Spawned as `node e2e/browser-signin.mjs` with these environment variables:
//   CHROMIUM         path to the Chromium binary (Debian's /usr/bin/chromium; never downloaded)
//   AUTH_URL         an OpenID Connect authorization URL on http://127.0.0.1:PORT
//   USERNAME         typed into <input id="username"> on the identifier page (<button id="next">)
//   PASSWORD         typed into <input id="password"> on the password page (<button id="signin">)
//   REDIRECT_PREFIX  the client's registered redirect URI (nothing has to listen there): any
//                    request whose URL starts with it is captured and answered with a tiny page
//   SCREENSHOT_DIR   optional: identifier.png, password.png (and failure.png) are saved there
//
// Flow: open AUTH_URL, fill the identifier page, then the password page, and wait (15 s at
// most) for the browser to be sent to REDIRECT_PREFIX. Then open AUTH_URL again in the same
// browser context: the SSO session cookie should send it straight back without a form.
//
// Prints exactly ONE line of JSON on stdout and exits 0:
//   {"ok":true,"first":URL,"second":URL,"secondShowedForm":BOOL,
//    "cookies":[{"name","httpOnly","sameSite","secure"},...]}
// (if the second visit showed a form anyway, it is filled in again and secondShowedForm is true)
// or, on any failure, exits 1 after printing:
//   {"ok":false,"error":MSG,"pageUrl":URL,"html":FIRST_2000_CHARS_OF_THE_PAGE}
// The whole run is bounded to 60 s. Diagnostics go to stderr.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

const TOTAL_MS = 60_000;
const STEP_MS = 15_000;
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const CALLBACK_HTML = '<!doctype html><html><head><title>callback</title></head><body><p>redirect captured</p></body></html>';

const env = process.env;
const log = (...a) => console.error('[browser-signin]', ...a);

let browser = null;
let page = null;
let finished = false;

function emit(obj, code) {
  if (finished) return;
  finished = true;
  // stdout to a pipe or file is synchronous on Linux, so the line is out before exit.
  process.stdout.write(JSON.stringify(obj) + '\n');
  process.exitCode = code;
}

// Resolve to `fallback` if `promise` takes longer than `ms` (or fails).
function within(ms, promise, fallback) {
  return Promise.race([
    Promise.resolve(promise).catch(() => fallback),
    new Promise((r) => setTimeout(r, ms, fallback).unref()),
  ]);
}

async function closeBrowser() {
  if (browser) await within(5_000, browser.close(), undefined);
}

let failing = false;

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
  if (page) {
    try { pageUrl = page.url(); } catch { /* page gone */ }
    html = String(await within(quick ? 1_500 : 3_000, page.content(), '')).slice(0, 2000);
    if (!quick) await shot('failure');
  }
  emit({ ok: false, error: msg, pageUrl, html }, 1);
  if (!quick) await closeBrowser();
  process.exit(1);
}

// Global bound: whatever hangs, the process is gone within TOTAL_MS. The report starts
// 3 s early so that it (at most ~1.5 s) fits inside; a hard exit follows regardless.
setTimeout(() => {
  setTimeout(() => process.exit(1), 2_500).unref();
  fail(`timed out: the sign-in did not finish within ${(TOTAL_MS - 3_000) / 1000} s`, true);
}, TOTAL_MS - 3_000);

process.on('unhandledRejection', (e) => { fail(e); });

async function shot(name) {
  if (!env.SCREENSHOT_DIR || !page) return;
  try {
    fs.mkdirSync(env.SCREENSHOT_DIR, { recursive: true });
    await within(5_000, page.screenshot({ path: path.join(env.SCREENSHOT_DIR, `${name}.png`), fullPage: true }), undefined);
  } catch (e) {
    log(`screenshot ${name} failed: ${e.message}`);
  }
}

// --- captured redirects -------------------------------------------------------------------
const captured = []; // URLs starting with REDIRECT_PREFIX, one per request, in order
function capture(url) {
  captured.push(url);
  log('captured redirect', url);
}

// Wait until a redirect with index >= `from` was captured; returns it, or null after `ms`.
async function waitForCapture(from, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (captured.length > from) return captured[from];
    await new Promise((r) => setTimeout(r, 50));
  }
  return null;
}

async function visible(selector) {
  try {
    return await page.locator(selector).first().isVisible();
  } catch {
    return false;
  }
}

async function formVisible() {
  return (await visible('input#username')) || (await visible('input#password'));
}

// Fill the identifier page, then the password page, then wait for the redirect to be captured.
async function signIn(round) {
  const from = captured.length;
  await page.waitForSelector('input#username[name="username"]', { state: 'visible', timeout: STEP_MS });
  await page.waitForSelector('button#next', { state: 'visible', timeout: STEP_MS });
  await shot(round === 1 ? 'identifier' : `identifier-${round}`);
  await page.fill('input#username', env.USERNAME);
  await page.click('button#next');

  await page.waitForSelector('input#password[name="password"]', { state: 'visible', timeout: STEP_MS });
  await page.waitForSelector('button#signin', { state: 'visible', timeout: STEP_MS });
  await shot(round === 1 ? 'password' : `password-${round}`);
  await page.fill('input#password', env.PASSWORD);
  await page.click('button#signin');

  const url = await waitForCapture(from, STEP_MS);
  if (!url) throw new Error(`no redirect to REDIRECT_PREFIX within ${STEP_MS / 1000} s after signing in (round ${round})`);
  return url;
}

// Navigate; returns page.goto's error message, or null. It rejects e.g. when a redirect hop to
// the unlistened callback is refused by Chromium, or when another navigation interrupts it:
// what counts is the capture, so the error is only reported, not thrown.
async function open(url) {
  try {
    await page.goto(url, { waitUntil: 'domcontentloaded', timeout: STEP_MS });
    return null;
  } catch (e) {
    const msg = e.message.split('\n')[0];
    log(`goto ${url}: ${msg}`);
    return msg;
  }
}

async function main() {
  for (const name of ['AUTH_URL', 'USERNAME', 'PASSWORD', 'REDIRECT_PREFIX']) {
    if (!env[name]) throw new Error(`environment variable ${name} is not set`);
  }
  const executablePath = env.CHROMIUM || '/usr/bin/chromium';
  if (!fs.existsSync(executablePath)) throw new Error(`Chromium not found at ${executablePath}`);
  const prefix = env.REDIRECT_PREFIX;

  // launch() gives a fresh temporary profile (--user-data-dir) that playwright deletes on close.
  browser = await chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS, timeout: STEP_MS });
  const context = await browser.newContext();
  context.setDefaultTimeout(STEP_MS);
  context.setDefaultNavigationTimeout(STEP_MS);

  // Requests to the redirect URI. The request event sees every one of them, including a hop of
  // an HTTP redirect chain (which route handlers do not get, and which Chromium may then refuse,
  // e.g. ERR_UNSAFE_PORT for port 1: harmless, the URL is already recorded). A direct
  // navigation there (form post, meta refresh, script) is answered by the route with a tiny page.
  // Only navigations count (not, say, a favicon fetched from the same origin).
  context.on('request', (req) => {
    if (req.isNavigationRequest() && req.url().startsWith(prefix)) capture(req.url());
  });
  await context.route((u) => u.href.startsWith(prefix), (route) =>
    route.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body: CALLBACK_HTML }));

  page = await context.newPage();

  // Round 1: full sign-in.
  const gotoError = await open(env.AUTH_URL);
  if (captured.length > 0) {
    throw new Error(`AUTH_URL went straight to REDIRECT_PREFIX without a sign-in form: ${captured[0]}`);
  }
  // A network error (refused, unsafe port, bad address...) is final; ERR_ABORTED is not.
  if (gotoError && /net::ERR_(?!ABORTED)/.test(gotoError)) throw new Error(`cannot open AUTH_URL: ${gotoError}`);
  const first = await signIn(1);

  // Round 2: same context; the session cookie should skip the forms.
  const from = captured.length;
  let secondShowedForm = false;
  await open(env.AUTH_URL);
  let second = null;
  const end = Date.now() + STEP_MS;
  while (Date.now() < end) {
    if (captured.length > from) { second = captured[from]; break; }
    if (await formVisible()) { secondShowedForm = true; break; }
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!second && secondShowedForm) {
    log('second visit showed a sign-in form; signing in again');
    second = await signIn(2);
  }
  if (!second) throw new Error(`second visit of AUTH_URL did not redirect to REDIRECT_PREFIX within ${STEP_MS / 1000} s`);

  const cookies = (await context.cookies()).map((c) => ({
    name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite, secure: c.secure,
  }));
  emit({ ok: true, first, second, secondShowedForm, cookies }, 0);
  await closeBrowser();
  process.exit(0);
}

main().catch(fail);
