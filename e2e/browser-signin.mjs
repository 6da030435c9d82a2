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
import { CHROMIUM_ARGS, scriptHarness, within } from './script-harness.mjs';

const TOTAL_MS = 60_000;
const STEP_MS = 15_000;
const CALLBACK_HTML = '<!doctype html><html><head><title>callback</title></head><body><p>redirect captured</p></body></html>';

const env = process.env;
let browser = null;
let page = null;
const { log, emit, fail, shot, open, closeBrowser } = scriptHarness({
  tag: 'browser-signin',
  totalMs: TOTAL_MS,
  stepMs: STEP_MS,
  getBrowser: () => browser,
  getPage: () => page,
  extra: () => ({}),
});

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
