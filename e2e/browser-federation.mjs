// Real-browser federated / staged-rollout sign-in for Cutover's Rust integration tests.
//
// Spawned as `node e2e/browser-federation.mjs` with these environment variables:
//   CHROMIUM         path to the Chromium binary (Debian's /usr/bin/chromium; never downloaded)
//   AUTH_URL         an OpenID Connect authorization URL on http://127.0.0.1:PORT (Cutover)
//   USERNAME         typed into <input id="username"> on Cutover's identifier page (<button id="next">)
//   UPSTREAM_LOGIN   typed into <input name="login"> on the upstream IdP's login page (oidc-provider
//                    devInteractions; any password is accepted there, the login becomes `sub`)
//   PASSWORD         typed into <input id="password"> on Cutover's password page (<button id="signin">);
//                    only needed when EXPECT=managed
//   REDIRECT_PREFIX  the client's registered redirect URI (nothing has to listen there): any
//                    navigation whose URL starts with it is captured and answered with a tiny page
//   EXPECT           `federated`: after the identifier page Cutover's interstitial ("Taking you to
//                    your organisation's sign-in page", a meta refresh) must take the browser to the
//                    upstream's login form, which is filled in; the upstream sends the browser back
//                    to Cutover's /federation/callback, which redirects to REDIRECT_PREFIX.
//                    `managed`: after the identifier page Cutover's own password page must follow
//                    (reaching the upstream instead is a failure), which is filled in.
//   SCREENSHOT_DIR   optional: identifier.png, interstitial.png (federated: taken while the hop to
//                    the upstream is held back), upstream-login.png, password.png (and failure.png)
//                    are saved there
//
// Every run uses a FRESH browser context (no cookies from earlier runs, none at the upstream).
// The "upstream" is any origin other than AUTH_URL's and REDIRECT_PREFIX's. The first
// navigation there is held until the page it leaves (Cutover's interstitial) has been described
// and photographed, then let go.
//
// Prints exactly ONE line of JSON on stdout and exits 0:
//   {"ok":true,"route":"federated"|"managed","redirect":URL,"sawUpstreamLogin":BOOL,
//    "sawPasswordPage":BOOL,"sawInterstitial":BOOL,
//    "interstitial":null|{"url","title","heading","text","refresh","continueVisible",
//                         "continueHref","continueText","continueIsTheHop"},
//    "navigations":["METHOD URL",...]}
// (interstitial: the Cutover page the browser left for the upstream; sawInterstitial: it had a
// meta refresh and a visible <a id="continue">), or, on any failure, exits 1 after printing:
//   {"ok":false,"error":MSG,"pageUrl":URL,"html":FIRST_2000_CHARS_OF_THE_PAGE,"navigations":[...]}
// (e.g. EXPECT=managed but the browser went to the upstream: the error says so).
// The whole run is bounded to 60 s. Diagnostics go to stderr.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { CHROMIUM_ARGS, scriptHarness, within } from './script-harness.mjs';

const TOTAL_MS = 60_000;
const STEP_MS = 15_000;
const CALLBACK_HTML = '<!doctype html><html><head><title>callback</title></head><body><p id="redirect-captured">redirect captured</p></body></html>';

// What can follow the identifier page, as one selector list (the first visible match wins):
const CUTOVER_PASSWORD = 'input#password[name="password"]';
const UPSTREAM_LOGIN = 'form input[name="login"]';
const CUTOVER_ERROR = 'p#message';                 // Cutover's error pages
const CUTOVER_FORM_ERROR = 'div#error';            // an identifier/password page with an error
const UPSTREAM_ERROR = 'h1:has-text("oops! something went wrong")';
const CAPTURED = 'p#redirect-captured';
const AFTER_IDENTIFIER = [CUTOVER_PASSWORD, UPSTREAM_LOGIN, CUTOVER_ERROR, CUTOVER_FORM_ERROR, UPSTREAM_ERROR, CAPTURED].join(', ');

const env = process.env;
let browser = null;
let page = null;
const navigations = []; // main-frame navigation requests, in order (diagnostics)
const { log, emit, fail, shot, open, closeBrowser } = scriptHarness({
  tag: 'browser-federation',
  totalMs: TOTAL_MS,
  stepMs: STEP_MS,
  getBrowser: () => browser,
  getPage: () => page,
  extra: () => ({ navigations }),
});

// --- what each document showed -------------------------------------------------------------
// An init script (it runs in every document, whatever the page's CSP says) describes the page
// at DOMContentLoaded on the console: still there when a meta refresh takes the browser away
// at once. (While a navigation is held, neither playwright's page calls nor the DevTools
// protocol's Runtime/DOM calls are answered by that page; a raw screenshot still works.)
const REPORT_PREFIX = '__cutover_e2e_page__ ';
const pageReports = []; // in order of arrival
let reportWaiters = [];

function describePage(prefix) {
  document.addEventListener('DOMContentLoaded', () => {
    try {
      const a = document.querySelector('a#continue');
      const r = a ? a.getBoundingClientRect() : null;
      const m = document.querySelector('meta[http-equiv="refresh" i]');
      console.debug(prefix + JSON.stringify({
        url: location.href,
        title: document.title,
        heading: document.querySelector('h1')?.textContent ?? null,
        text: (document.body?.innerText ?? '').replace(/\s+/g, ' ').trim().slice(0, 300),
        refresh: m ? m.getAttribute('content') : null,
        continueVisible: !!r && r.width > 0 && r.height > 0,
        continueHref: a ? a.href : null,
        continueText: a ? a.textContent : null,
      }));
    } catch { /* a report is a nicety */ }
  });
}

function onConsole(msg) {
  const text = msg.text();
  if (!text.startsWith(REPORT_PREFIX)) return;
  try {
    pageReports.push(JSON.parse(text.slice(REPORT_PREFIX.length)));
  } catch { return; }
  const waiters = reportWaiters;
  reportWaiters = [];
  for (const w of waiters) w();
}

// The newest report of a document whose URL passes `test`, waiting up to `ms` for one.
function reportOf(test, ms) {
  const find = () => pageReports.findLast((r) => test(r.url)) ?? null;
  const now = find();
  if (now) return Promise.resolve(now);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(find()), ms);
    timer.unref();
    const check = () => {
      const r = find();
      if (r) {
        clearTimeout(timer);
        resolve(r);
      } else {
        reportWaiters.push(check);
      }
    };
    reportWaiters.push(check);
  });
}

// A screenshot through the raw DevTools protocol: works while a navigation is held.
let cdp = null;
async function rawShot(name) {
  if (!env.SCREENSHOT_DIR || !cdp) return;
  const res = await within(5_000, cdp.send('Page.captureScreenshot', { format: 'png' }), null);
  if (!res?.data) {
    log(`screenshot ${name} failed`);
    return;
  }
  fs.mkdirSync(env.SCREENSHOT_DIR, { recursive: true });
  fs.writeFileSync(path.join(env.SCREENSHOT_DIR, `${name}.png`), Buffer.from(res.data, 'base64'));
}

// --- captured redirects (event driven) ------------------------------------------------------
const captured = []; // URLs starting with REDIRECT_PREFIX, one per navigation, in order
let captureWaiters = [];
function capture(url) {
  captured.push(url);
  log('captured redirect', url);
  const waiters = captureWaiters;
  captureWaiters = [];
  for (const w of waiters) w();
}

// The first redirect captured with index >= `from`, or null after `ms`.
function waitForCapture(from, ms) {
  if (captured.length > from) return Promise.resolve(captured[from]);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms);
    timer.unref();
    const check = () => {
      if (captured.length > from) {
        clearTimeout(timer);
        resolve(captured[from]);
      } else {
        captureWaiters.push(check);
      }
    };
    captureWaiters.push(check);
  });
}

// The text of the first visible element matching `selector`, trimmed and shortened.
async function textOf(selector) {
  const t = await within(2_000, page.locator(selector).first().innerText(), '');
  return String(t).replace(/\s+/g, ' ').trim().slice(0, 300);
}


// Which kind of page an element matched by one of the selectors above belongs to.
function kindOf(el) {
  return el.evaluate((e) => {
    if (e.id === 'password') return 'password';
    if (e.getAttribute('name') === 'login') return 'upstream';
    if (e.id === 'message') return 'cutover-error';
    if (e.id === 'error') return 'form-error';
    if (e.id === 'redirect-captured') return 'captured';
    return 'upstream-error';
  });
}

// Which of AFTER_IDENTIFIER the page shows now (waits for one to be visible, STEP_MS at most).
async function whatFollows(what) {
  let el;
  try {
    el = await page.waitForSelector(AFTER_IDENTIFIER, { state: 'visible', timeout: STEP_MS });
  } catch {
    const last = pageReports.at(-1);
    const stuck = last?.refresh ? ` (stuck on "${last.heading}", whose meta refresh did not move on)` : '';
    throw new Error(`${what}: none of Cutover's password page, the upstream's login form, an error page or the redirect appeared within ${STEP_MS / 1000} s${stuck}`);
  }
  return kindOf(el);
}

async function describeDeadEnd(kind, what) {
  switch (kind) {
    case 'cutover-error':
      return `${what}: Cutover showed an error page: "${await textOf('main')}"`;
    case 'form-error':
      return `${what}: Cutover showed the form again with an error: "${await textOf('div#error')}"`;
    case 'upstream-error':
      return `${what}: the upstream IdP showed an error page: "${await textOf('body')}"`;
    case 'captured':
      return `${what}: the browser was sent back to the client without signing in: ${captured.at(-1)}`;
    default:
      return `${what}: unexpected page (${kind})`;
  }
}

async function main() {
  for (const name of ['AUTH_URL', 'USERNAME', 'REDIRECT_PREFIX', 'EXPECT']) {
    if (!env[name]) throw new Error(`environment variable ${name} is not set`);
  }
  const expect = env.EXPECT;
  if (expect !== 'federated' && expect !== 'managed') {
    throw new Error(`EXPECT must be "federated" or "managed", not ${JSON.stringify(expect)}`);
  }
  if (expect === 'federated' && !env.UPSTREAM_LOGIN) throw new Error('environment variable UPSTREAM_LOGIN is not set (EXPECT=federated)');
  if (expect === 'managed' && !env.PASSWORD) throw new Error('environment variable PASSWORD is not set (EXPECT=managed)');
  const executablePath = env.CHROMIUM || '/usr/bin/chromium';
  if (!fs.existsSync(executablePath)) throw new Error(`Chromium not found at ${executablePath}`);
  const prefix = env.REDIRECT_PREFIX;
  const cutoverOrigin = new URL(env.AUTH_URL).origin;
  const isUpstream = (u) => {
    const url = typeof u === 'string' ? new URL(u) : u;
    return /^https?:$/.test(url.protocol) && url.origin !== cutoverOrigin && !url.href.startsWith(prefix);
  };

  // launch() gives a fresh temporary profile (--user-data-dir) that playwright deletes on close.
  browser = await chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS, timeout: STEP_MS });
  const context = await browser.newContext();
  context.setDefaultTimeout(STEP_MS);
  context.setDefaultNavigationTimeout(STEP_MS);

  // Redirects to the client: see browser-signin.mjs (the request event sees redirect hops too;
  // a direct navigation there is answered by the route with a tiny page).
  context.on('request', (req) => {
    if (!req.isNavigationRequest()) return;
    let main = false;
    try { main = req.frame() === page?.mainFrame(); } catch { /* no frame (service worker) */ }
    if (main) navigations.push(`${req.method()} ${req.url()}`);
    if (req.url().startsWith(prefix)) capture(req.url());
  });
  await context.route((u) => u.href.startsWith(prefix), (route) =>
    route.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body: CALLBACK_HTML }));

  // The first navigation to the upstream (the interstitial's meta refresh) is held back until
  // the interstitial has been looked at and photographed; every other request goes on at once.
  let sawInterstitial = false;
  let interstitial = null;
  let upstreamReached = null; // the first upstream navigation URL
  await context.route(isUpstream, async (route) => {
    const req = route.request();
    if (req.isNavigationRequest() && !upstreamReached) {
      upstreamReached = req.url();
      log('navigation to the upstream:', req.url());
      interstitial = await reportOf((u) => u.startsWith(`${cutoverOrigin}/`), 10_000);
      sawInterstitial = Boolean(interstitial?.refresh && interstitial?.continueVisible);
      if (interstitial) interstitial.continueIsTheHop = interstitial.continueHref === req.url();
      log('page before the hop to the upstream:', JSON.stringify(interstitial));
      if (sawInterstitial) await rawShot('interstitial');
    }
    await within(STEP_MS, route.continue(), undefined);
  });

  await context.addInitScript(describePage, REPORT_PREFIX);
  page = await context.newPage();
  page.on('console', onConsole);
  cdp = await context.newCDPSession(page);

  // Cutover's identifier page.
  const gotoError = await open(env.AUTH_URL);
  if (captured.length > 0) {
    throw new Error(`AUTH_URL went straight to REDIRECT_PREFIX without a sign-in form: ${captured[0]}`);
  }
  // A network error (refused, unsafe port, bad address...) is final; ERR_ABORTED is not.
  if (gotoError && /net::ERR_(?!ABORTED)/.test(gotoError)) throw new Error(`cannot open AUTH_URL: ${gotoError}`);
  if (upstreamReached) throw new Error(`AUTH_URL went straight to the upstream IdP (${upstreamReached}) without Cutover's identifier page`);
  await page.waitForSelector('input#username[name="username"]', { state: 'visible', timeout: STEP_MS });
  await page.waitForSelector('button#next', { state: 'visible', timeout: STEP_MS });
  await shot('identifier');
  await page.fill('input#username', env.USERNAME);
  await page.click('button#next');

  let sawUpstreamLogin = false;
  let sawPasswordPage = false;
  const from = captured.length;
  const next = await whatFollows('after the identifier page');
  if (next === 'upstream') sawUpstreamLogin = true;
  if (next === 'password') sawPasswordPage = true;

  if (expect === 'federated') {
    if (next === 'password') {
      throw new Error('expected the upstream IdP\'s login page (federated), but Cutover showed its own password page');
    }
    if (next !== 'upstream') throw new Error(await describeDeadEnd(next, 'expected the upstream IdP\'s login page'));
    if (!sawInterstitial) {
      log('note: the interstitial page was not seen before the upstream (sent there without it?)');
    }
    await page.waitForSelector('form input[name="password"]', { state: 'visible', timeout: STEP_MS });
    await shot('upstream-login');
    await page.fill('form input[name="login"]', env.UPSTREAM_LOGIN);
    await page.fill('form input[name="password"]', 'any-upstream-password');
    await page.click('form button[type="submit"]');
  } else {
    if (next === 'upstream') {
      throw new Error(`expected Cutover's password page (managed), but the browser went to the upstream IdP's login page at ${page.url()}`);
    }
    if (next !== 'password') throw new Error(await describeDeadEnd(next, 'expected Cutover\'s password page'));
    if (upstreamReached) {
      throw new Error(`expected Cutover's password page only, but the browser also went to the upstream IdP (${upstreamReached})`);
    }
    await page.waitForSelector('button#signin', { state: 'visible', timeout: STEP_MS });
    await shot('password');
    await page.fill('input#password', env.PASSWORD);
    await page.click('button#signin');
  }

  // Back at the client: the redirect is captured, or an error page explains why not. (A
  // failed wait for an error page means nothing: the capture has its own time limit.)
  const deadEnd = page
    .waitForSelector([CUTOVER_ERROR, CUTOVER_FORM_ERROR, UPSTREAM_ERROR].join(', '), { state: 'visible', timeout: STEP_MS })
    .then(async (el) => ({ deadEnd: await kindOf(el) }))
    .catch(() => new Promise(() => {}));
  const outcome = await Promise.race([
    waitForCapture(from, STEP_MS).then((url) => (url ? { url } : null)),
    deadEnd,
  ]);
  if (!outcome) throw new Error(`no redirect to REDIRECT_PREFIX within ${STEP_MS / 1000} s after signing in (${expect})`);
  if (outcome.deadEnd) throw new Error(await describeDeadEnd(outcome.deadEnd, `after signing in (${expect})`));
  const redirect = outcome.url;

  emit({
    ok: true,
    route: expect,
    redirect,
    sawUpstreamLogin,
    sawPasswordPage,
    sawInterstitial,
    interstitial,
    navigations,
  }, 0);
  await closeBrowser();
  process.exit(0);
}

main().catch(fail);
