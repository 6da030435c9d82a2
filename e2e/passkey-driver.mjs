// A real headless Chromium with a WebAuthn virtual authenticator, driven line by line by
// Cutover's Rust integration tests (crates/cutover/tests/it/passkey_e2e.rs).
//
// Spawned as `node e2e/passkey-driver.mjs` with:
//   CHROMIUM         path to the Chromium binary (Debian's /usr/bin/chromium; never downloaded)
//   BASE             Cutover's origin, http://localhost:PORT (a WebAuthn RP id is a host name,
//                    so the tests use "localhost", never 127.0.0.1)
//   REDIRECT_PREFIX  the client's redirect URI: requests to it are captured, not sent
//   SCREENSHOT_DIR   optional: screenshots of each step (and failures) are saved there
//
// It reads one JSON command per line on stdin and answers each with ONE JSON line on stdout:
//   {"ok":true, ...result} or {"ok":false,"error":MSG,"url":URL,"html":FIRST_1500_CHARS}
// Commands ({"cmd": NAME, ...}):
//   newContext {userAgent?, model?}  fresh browser context (no cookies) + page + a virtual
//                                  authenticator (ctap2, internal, resident keys, UV); the
//                                  authenticator survives clearCookies but not newContext.
//                                  model: an Android phone's model, sent as the
//                                  Sec-CH-UA-Model client hint where the server asks for it
//                                  (with a reduced User-Agent, as Chrome on Android sends)
//   clearCookies                   forget every cookie (the SSO session): the next sign-in
//                                  shows the pages again
//   signInPass {authUrl, username, pass}   identifier page, then the Temporary Access Pass page;
//                                  waits for the client redirect -> {redirect}
//   signInPassword {authUrl, username, password}  the same with a password
//   security                       open /my/security -> {url, gateAllowed, rows, family, notice, error}
//   addPasskey {name}              on /my/security: name it, "Add a passkey" -> the page after
//   removePasskey {name}           the Remove button of that passkey -> the page after
//   passkeyButton {authUrl}        identifier page, "Sign in with a passkey" -> {redirect} or {error}
//   secretThenPasskey {authUrl, username, secret}  password or pass, then the passkey as the
//                                  second step on /login/mfa -> {redirect, secondStepHeading}
//   passkeyAutofill {authUrl}      identifier page; the autofill (conditional mediation) request
//                                  completes with the authenticator's passkey -> {redirect} or {error}
//   credentials                    the virtual authenticator's credentials (with private keys)
//   restoreCredential {credential} put a credential back as it was (e.g. an older sign count:
//                                  a cloned authenticator)
//   addCredentialForRp {credential, rpId}  a copy of a credential for another RP id
//   lastAssertion                  the last passkey form body the page posted (for replays)
//   replayAssertion {authUrl, credential}  a NEW sign-in: fresh challenge from the server, but
//                                  the OLD assertion is submitted -> {redirect} or {error}
//   foreignOrigin {authUrl, rpId?} the real identifier page asks Cutover for a challenge; a page
//                                  on ANOTHER origin (another port; or another host name with
//                                  rpId) makes the assertion; it is submitted to Cutover
//   goto {url, shot?}              open a page -> {url, status, h1}; a console error is reported
//                                  in consoleErrors like after every command
//   fill {selector, value} / select {selector, value} / check {selector}   form fields
//   submit {selector, shot?}       click a submit button, wait for the next page to load
//                                  -> {url, status, h1, notice, error}
//   attr {selector, name}          an attribute of the first match -> {value} (null if none)
//   texts {selector}               the text of every match -> {texts}
//   shot {name}                    a screenshot now
//   enrolPasskey {url, name}       open the enrolment page (/my/enrol…), read the detected device
//                                  family and its guidance, add a passkey -> {family, detected,
//                                  guidanceTitle, how, notice, error, url, passkeys}
//   close
// Every command is bounded (STEP_MS); the whole run is bounded (TOTAL_MS).
import { chromium } from 'playwright-core';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { CHROMIUM_ARGS, within } from './script-harness.mjs';

const TOTAL_MS = 240_000;
const STEP_MS = 20_000;
const env = process.env;
const log = (...a) => console.error('[passkey-driver]', ...a);
const CALLBACK_HTML = '<!doctype html><title>callback</title><p>redirect captured</p>';

setTimeout(() => {
  log('run time exceeded; exiting');
  process.exit(2);
}, TOTAL_MS).unref();

const browser = await chromium.launch({ executablePath: env.CHROMIUM, headless: true, args: CHROMIUM_ARGS });
let context = null;
let page = null;
let cdp = null;
let authenticatorId = null;
let captured = [];
let lastPasskeyPost = null;
let consoleErrors = [];
let shotNo = 0;

// A page on another origin (same host name "localhost", another port) for the wrong-origin
// test; it only serves a blank page, the test's script runs in it.
const foreign = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end('<!doctype html><title>not cutover</title><p>another site</p>');
});
await new Promise((r) => foreign.listen(0, '127.0.0.1', r));
const foreignPort = foreign.address().port;

async function shot(name) {
  if (!env.SCREENSHOT_DIR || !page) return;
  try {
    fs.mkdirSync(env.SCREENSHOT_DIR, { recursive: true });
    shotNo += 1;
    const file = path.join(env.SCREENSHOT_DIR, `${String(shotNo).padStart(2, '0')}-${name}.png`);
    await within(5_000, page.screenshot({ path: file, fullPage: true }), undefined);
  } catch (e) {
    log(`screenshot ${name} failed: ${e.message}`);
  }
}

async function newContext(userAgent, model) {
  if (context) await within(5_000, context.close(), undefined);
  context = await browser.newContext(userAgent ? { userAgent } : {});
  captured = [];
  consoleErrors = [];
  await context.route(`${env.REDIRECT_PREFIX}**`, (route) => {
    captured.push(route.request().url());
    route.fulfill({ status: 200, contentType: 'text/html', body: CALLBACK_HTML });
  });
  // Autofill runs only when a test asks for it (cookie e2e_autofill=1): otherwise a
  // conditional request the virtual authenticator answers on its own would race the step.
  await context.addInitScript(() => {
    if (window.PublicKeyCredential && !document.cookie.includes('e2e_autofill=1')) {
      window.PublicKeyCredential.isConditionalMediationAvailable = async () => false;
    }
  });
  page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
    log(`console.${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => {
    consoleErrors.push(String(e));
    log(`page error: ${e}`);
  });
  page.on('request', (r) => {
    if (r.method() === 'POST' && r.url() === `${env.BASE}/login/passkey`) lastPasskeyPost = r.postData();
  });
  cdp = await context.newCDPSession(page);
  if (model) {
    const major = (/Chrome\/(\d+)/.exec(userAgent || '') || [])[1] || '124';
    await cdp.send('Emulation.setUserAgentOverride', {
      userAgent: userAgent || await browser.version(),
      userAgentMetadata: {
        brands: [{ brand: 'Chromium', version: major }, { brand: 'Not-A.Brand', version: '99' }],
        fullVersion: `${major}.0.0.0`,
        platform: 'Android',
        platformVersion: '14.0.0',
        architecture: '',
        model,
        mobile: true,
      },
    });
  }
  await cdp.send('WebAuthn.enable', { enableUI: false });
  ({ authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true,
      isUserVerified: true, automaticPresenceSimulation: true,
    },
  }));
  return {};
}

async function waitForCapture(from, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (captured.length > from) return captured[from];
    await new Promise((r) => setTimeout(r, 50));
  }
  return null;
}

// After a step that may end at the client or on a Cutover page with an error.
async function outcome(from, label) {
  const end = Date.now() + STEP_MS;
  while (Date.now() < end) {
    if (captured.length > from) {
      // Let the browser finish arriving at the client, so that the next step's navigation
      // does not collide with this one (a loaded machine is slow to get there).
      await within(STEP_MS, page.waitForURL((u) => u.href.startsWith(env.REDIRECT_PREFIX), { waitUntil: 'load' }), undefined);
      return { redirect: captured[from] };
    }
    const err = await page.locator('#error, #passkey-error').first().textContent({ timeout: 200 }).catch(() => null);
    if (err) {
      await shot(`${label}-error`);
      return { error: err.trim(), url: page.url() };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await shot(`${label}-timeout`);
  throw new Error(`${label}: neither a redirect to the client nor an error page within ${STEP_MS} ms`);
}

async function identifier(authUrl) {
  await page.goto(authUrl, { timeout: STEP_MS });
  await page.waitForSelector('input#username', { state: 'visible', timeout: STEP_MS });
}

async function signInSecret(authUrl, username, secret, label) {
  const from = captured.length;
  await identifier(authUrl);
  await page.fill('input#username', username);
  await page.click('button#next');
  await page.waitForSelector('input#password', { state: 'visible', timeout: STEP_MS });
  await shot(label);
  await page.fill('input#password', secret);
  await page.click('button#signin');
  return outcome(from, label);
}

async function securityState() {
  await page.waitForSelector('h1', { timeout: STEP_MS });
  const rows = await page.$$eval('#passkeys tbody tr', (trs) => trs.map((tr) => ({
    name: tr.querySelector('.passkey-name')?.textContent ?? '',
    authenticator: tr.querySelector('.authenticator')?.textContent ?? '',
    kind: tr.querySelector('.sync')?.textContent ?? '',
    credentialId: tr.dataset.credentialId,
    device: tr.children[2]?.textContent ?? '',
  })));
  const gate = await page.$eval('#gate', (e) => e.dataset.allowed).catch(() => null);
  const family = await page.$eval('#guidance', (e) => e.dataset.family).catch(() => null);
  const guidance = await page.$eval('#guidance', (e) => e.textContent).catch(() => null);
  const notice = await page.$eval('#notice', (e) => e.textContent).catch(() => null);
  const error = await page.$eval('#error, #passkey-error', (e) => e.textContent).catch(() => null);
  return { url: page.url(), gateAllowed: gate === 'true', rows, family, guidance, notice, error, heading: await page.textContent('h1') };
}

async function passkeySignIn(authUrl, conditional) {
  const from = captured.length;
  if (conditional) {
    await context.addCookies([{ name: 'e2e_autofill', value: '1', url: env.BASE }]);
  }
  try {
    return await passkeySignInInner(authUrl, conditional, from);
  } finally {
    if (conditional) await context.clearCookies({ name: 'e2e_autofill' });
  }
}

async function passkeySignInInner(authUrl, conditional, from) {
  if (conditional) {
    // Autofill: the identifier page starts a conditional request on load. A person would
    // pick the passkey from the username field's suggestions; the virtual authenticator
    // answers at once with its discoverable credential, so nothing is clicked here.
    const sawIdentifier = new Promise((resolve) => {
      const onNav = (frame) => {
        if (frame === page.mainFrame() && frame.url().includes('/login?t=')) {
          page.off('framenavigated', onNav);
          resolve(true);
        }
      };
      page.on('framenavigated', onNav);
    });
    await page.goto(authUrl, { timeout: STEP_MS });
    const result = await outcome(from, 'passkey-autofill');
    return { ...result, sawIdentifier: await within(1_000, sawIdentifier, false) };
  }
  await identifier(authUrl);
  await page.waitForSelector('#passkey-form:not([hidden])', { timeout: STEP_MS });
  await shot('identifier-passkey');
  await page.click('#passkey-signin');
  return outcome(from, 'passkey-button');
}

// The form fields of the identifier page's passkey form.
async function passkeyForm() {
  return page.$eval('#passkey-form', (f) => ({ t: f.elements.t.value, csrf: f.elements.csrf.value }));
}

async function freshChallenge() {
  const { t, csrf } = await passkeyForm();
  return page.evaluate(async ({ t, csrf }) => {
    const res = await fetch('/login/passkey/options', { method: 'POST', body: new URLSearchParams({ t, csrf }) });
    return res.json();
  }, { t, csrf });
}

async function submitPasskeyForm(challenge, credentialJson, label) {
  const from = captured.length;
  await page.evaluate(({ challenge, credentialJson }) => {
    const f = document.getElementById('passkey-form');
    f.elements.challenge.value = challenge;
    f.elements.credential.value = credentialJson;
    f.submit();
  }, { challenge, credentialJson });
  return outcome(from, label);
}

async function pageState(resp) {
  await page.waitForSelector('h1', { timeout: STEP_MS }).catch(() => null);
  const text = async (sel) => page.$eval(sel, (e) => e.textContent.trim()).catch(() => null);
  return {
    url: page.url(),
    status: resp ? resp.status() : null,
    h1: await text('h1'),
    notice: await text('#notice'),
    error: await text('#error'),
  };
}

const handlers = {
  async goto(c) {
    const resp = await page.goto(c.url, { timeout: STEP_MS, waitUntil: 'load' });
    const st = await pageState(resp);
    if (c.shot) await shot(c.shot);
    return st;
  },
  async fill(c) { await page.fill(c.selector, c.value, { timeout: STEP_MS }); return {}; },
  async select(c) { await page.selectOption(c.selector, c.value, { timeout: STEP_MS }); return {}; },
  async check(c) { await page.check(c.selector, { timeout: STEP_MS }); return {}; },
  async submit(c) {
    const [resp] = await Promise.all([
      page.waitForNavigation({ timeout: STEP_MS, waitUntil: 'load' }),
      page.click(c.selector, { timeout: STEP_MS }),
    ]);
    const st = await pageState(resp);
    if (c.shot) await shot(c.shot);
    return st;
  },
  async attr(c) {
    return { value: await page.getAttribute(c.selector, c.name, { timeout: STEP_MS }).catch(() => null) };
  },
  async texts(c) { return { texts: await page.$$eval(c.selector, (es) => es.map((e) => e.textContent.trim())) }; },
  async shot(c) { await shot(c.name); return {}; },
  async enrolPasskey(c) {
    await page.goto(c.url, { timeout: STEP_MS, waitUntil: 'load' });
    await page.waitForSelector('#guidance', { timeout: STEP_MS });
    const family = await page.$eval('#guidance', (e) => e.dataset.family);
    const detected = await page.$eval('#detected', (e) => e.dataset.detected);
    const guidanceTitle = await page.$eval('#guidance-title', (e) => e.textContent.trim());
    const guidance = await page.$eval('#guidance', (e) => e.textContent);
    await shot(`enrol-${family}`);
    await page.waitForSelector('#add-passkey', { timeout: STEP_MS });
    await page.fill('#passkey-name', c.name);
    const navigated = page.waitForURL(/\/my\/enrol\?.*(done|error)=/, { timeout: STEP_MS }).then(() => 'navigated');
    const shown = page.waitForSelector('#passkey-error', { timeout: STEP_MS }).then(() => 'shown');
    await page.click('#add-passkey');
    const how = await Promise.race([navigated, shown]);
    navigated.catch(() => {});
    shown.catch(() => {});
    await page.waitForSelector('h1', { timeout: STEP_MS });
    const text = async (sel) => page.$eval(sel, (e) => e.textContent.trim()).catch(() => null);
    const passkeys = await page.$eval('#enrol-status', (e) => Number(e.dataset.passkeys)).catch(() => null);
    await shot(`enrolled-${family}`);
    return { family, detected, guidanceTitle, guidance, how, notice: await text('#notice'), error: await text('#error, #passkey-error'), url: page.url(), passkeys };
  },
  async newContext(c) { return newContext(c.userAgent, c.model); },
  async clearCookies() { await context.clearCookies(); return {}; },
  async signInPass(c) { return signInSecret(c.authUrl, c.username, c.pass, 'pass'); },
  async signInPassword(c) { return signInSecret(c.authUrl, c.username, c.password, 'password'); },
  async security() {
    await page.goto(`${env.BASE}/my/security`, { timeout: STEP_MS });
    const s = await securityState();
    await shot('security');
    return s;
  },
  async addPasskey(c) {
    await page.waitForSelector('#add-passkey', { timeout: STEP_MS });
    await page.fill('#passkey-name', c.name);
    // Either the page comes back (added, or refused by the server) or the script shows
    // the refusal in place (the ceremony could not start).
    const navigated = page.waitForURL(/\/my\/security\?/, { timeout: STEP_MS }).then(() => 'navigated');
    const shown = page.waitForSelector('#passkey-error', { timeout: STEP_MS }).then(() => 'shown');
    await page.click('#add-passkey');
    const how = await Promise.race([navigated, shown]);
    navigated.catch(() => {});
    shown.catch(() => {});
    const s = await securityState();
    await shot(how === 'navigated' ? 'passkey-added' : 'passkey-refused');
    return { ...s, how };
  },
  async removePasskey(c) {
    const row = page.locator('#passkeys tbody tr', { has: page.locator('.passkey-name', { hasText: c.name }) });
    await Promise.all([
      page.waitForURL(/\/my\/security\?/, { timeout: STEP_MS }),
      row.locator('button.remove-passkey').click(),
    ]);
    const s = await securityState();
    await shot('passkey-removed');
    return s;
  },
  async passkeyButton(c) { return passkeySignIn(c.authUrl, false); },
  // A first factor (password or pass) that is not enough for the application, then the
  // passkey as the second step on /login/mfa.
  async secretThenPasskey(c) {
    const from = captured.length;
    await identifier(c.authUrl);
    await page.fill('input#username', c.username);
    await page.click('button#next');
    await page.waitForSelector('input#password', { state: 'visible', timeout: STEP_MS });
    await page.fill('input#password', c.secret);
    await Promise.all([
      page.waitForURL(/\/login\/mfa\?/, { timeout: STEP_MS }),
      page.click('button#signin'),
    ]);
    const heading = await page.textContent('h1');
    await page.waitForSelector('#passkey-form:not([hidden])', { timeout: STEP_MS });
    await shot('second-step');
    await page.click('#passkey-signin');
    return { ...(await outcome(from, 'second-step-passkey')), secondStepHeading: heading };
  },
  async passkeyAutofill(c) { return passkeySignIn(c.authUrl, true); },
  async credentials() {
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    return { credentials };
  },
  async restoreCredential(c) {
    await cdp.send('WebAuthn.removeCredential', { authenticatorId, credentialId: c.credential.credentialId }).catch(() => {});
    await cdp.send('WebAuthn.addCredential', { authenticatorId, credential: c.credential });
    return {};
  },
  async addCredentialForRp(c) {
    // One authenticator holds a credential id once: a copy for another RP id replaces it.
    await cdp.send('WebAuthn.removeCredential', { authenticatorId, credentialId: c.credential.credentialId }).catch(() => {});
    await cdp.send('WebAuthn.addCredential', { authenticatorId, credential: { ...c.credential, rpId: c.rpId } });
    return {};
  },
  async lastAssertion() {
    if (!lastPasskeyPost) throw new Error('no passkey form was posted yet');
    const p = new URLSearchParams(lastPasskeyPost);
    return { challenge: p.get('challenge'), credential: p.get('credential') };
  },
  async replayAssertion(c) {
    await identifier(c.authUrl);
    await page.waitForSelector('#passkey-form:not([hidden])', { timeout: STEP_MS });
    const fresh = await freshChallenge();
    if (!fresh.challenge) throw new Error(`no challenge: ${JSON.stringify(fresh)}`);
    return submitPasskeyForm(fresh.challenge, c.credential, 'replay');
  },
  async foreignOrigin(c) {
    await identifier(c.authUrl);
    const back = page.url();
    await page.waitForSelector('#passkey-form:not([hidden])', { timeout: STEP_MS });
    const fresh = await freshChallenge();
    if (!fresh.challenge) throw new Error(`no challenge: ${JSON.stringify(fresh)}`);
    const host = c.rpId ?? 'localhost';
    await page.goto(`http://${host}:${foreignPort}/`, { timeout: STEP_MS });
    const forged = await page.evaluate(async ({ pk, rpId }) => {
      const b64uToBuf = (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4)), (ch) => ch.charCodeAt(0)).buffer;
      const enc = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
      const cred = await navigator.credentials.get({ publicKey: { ...pk, challenge: b64uToBuf(pk.challenge), rpId, allowCredentials: [] } });
      const r = cred.response;
      return JSON.stringify({
        id: cred.id, rawId: enc(cred.rawId), type: cred.type,
        response: { authenticatorData: enc(r.authenticatorData), clientDataJSON: enc(r.clientDataJSON), signature: enc(r.signature), userHandle: r.userHandle ? enc(r.userHandle) : null },
        extensions: {},
      });
    }, { pk: fresh.publicKey, rpId: host });
    await page.goto(back, { timeout: STEP_MS });
    await page.waitForSelector('#passkey-form', { state: 'attached', timeout: STEP_MS });
    const clientData = JSON.parse(Buffer.from(JSON.parse(forged).response.clientDataJSON, 'base64url').toString());
    const result = await submitPasskeyForm(fresh.challenge, forged, 'foreign-origin');
    return { ...result, signedOrigin: clientData.origin };
  },
  async close() { return {}; },
};

const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  let c;
  try {
    c = JSON.parse(line);
  } catch (e) {
    process.stdout.write(JSON.stringify({ ok: false, error: `bad command line: ${e.message}` }) + '\n');
    continue;
  }
  const h = handlers[c.cmd];
  let reply;
  try {
    if (!h) throw new Error(`unknown command ${c.cmd}`);
    const result = await Promise.race([
      h(c),
      new Promise((_, rej) => setTimeout(() => rej(new Error(`${c.cmd} took longer than ${STEP_MS * 2} ms`)), STEP_MS * 2).unref()),
    ]);
    reply = { ok: true, consoleErrors: consoleErrors.splice(0), ...result };
  } catch (e) {
    // eslint-disable-next-line no-control-regex
    const msg = String(e && e.message ? e.message : e).replace(/\u001b\[[0-9;]*m/g, '').trim();
    log(`${c.cmd} FAILED: ${msg}`);
    await shot(`${c.cmd}-failure`);
    let url = '';
    let html = '';
    try { url = page ? page.url() : ''; } catch { /* gone */ }
    if (page) html = String(await within(3_000, page.content(), '')).slice(0, 1500);
    reply = { ok: false, error: msg, url, html };
  }
  process.stdout.write(JSON.stringify(reply) + '\n');
  if (c.cmd === 'close') break;
}
foreign.close();
await within(5_000, browser.close(), undefined);
process.exit(0);
