// Cutover's passkey ceremonies in the browser (served as /static/passkey.js; no build step,
// no third-party code). The pages work without it: it only adds passkey sign-in on the
// identifier page (autofill through conditional mediation, and a button) and "Add a passkey"
// on the security-info page. The server keeps the challenge state; this file only moves
// bytes between the server's JSON and navigator.credentials.
'use strict';
(function () {
  const b64uToBuf = (s) => {
    const b64 = s.replace(/-/g, '+').replace(/_/g, '/');
    const bin = atob(b64 + '==='.slice((b64.length + 3) % 4));
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  };
  const bufToB64u = (buf) => {
    const bytes = new Uint8Array(buf);
    let bin = '';
    for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  };
  const supported = () => !!(window.PublicKeyCredential && navigator.credentials);

  // Server JSON (base64url strings) -> the ArrayBuffers the WebAuthn API takes.
  function creationOptions(pk) {
    const o = Object.assign({}, pk);
    o.challenge = b64uToBuf(pk.challenge);
    o.user = Object.assign({}, pk.user, { id: b64uToBuf(pk.user.id) });
    if (pk.excludeCredentials) {
      o.excludeCredentials = pk.excludeCredentials.map((c) => Object.assign({}, c, { id: b64uToBuf(c.id) }));
    }
    return o;
  }
  function requestOptions(pk) {
    const o = Object.assign({}, pk);
    o.challenge = b64uToBuf(pk.challenge);
    if (pk.allowCredentials) {
      o.allowCredentials = pk.allowCredentials.map((c) => Object.assign({}, c, { id: b64uToBuf(c.id) }));
    }
    return o;
  }
  // The credential the browser made or used -> JSON for the server.
  function registrationJson(cred) {
    const r = cred.response;
    return {
      id: cred.id,
      rawId: bufToB64u(cred.rawId),
      type: cred.type,
      response: {
        attestationObject: bufToB64u(r.attestationObject),
        clientDataJSON: bufToB64u(r.clientDataJSON),
        transports: typeof r.getTransports === 'function' ? r.getTransports() : [],
      },
      extensions: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
    };
  }
  function assertionJson(cred) {
    const r = cred.response;
    return {
      id: cred.id,
      rawId: bufToB64u(cred.rawId),
      type: cred.type,
      response: {
        authenticatorData: bufToB64u(r.authenticatorData),
        clientDataJSON: bufToB64u(r.clientDataJSON),
        signature: bufToB64u(r.signature),
        userHandle: r.userHandle ? bufToB64u(r.userHandle) : null,
      },
      extensions: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
    };
  }
  async function fetchOptions(url, form) {
    const body = new URLSearchParams();
    for (const el of form.querySelectorAll('input[name]')) {
      if (el.name !== 'credential' && el.name !== 'challenge') body.append(el.name, el.value);
    }
    const res = await fetch(url, { method: 'POST', body, credentials: 'same-origin' });
    const json = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(json.message || ('the server answered ' + res.status));
    return json;
  }
  function showError(msg) {
    let el = document.getElementById('passkey-error');
    if (!el) {
      el = document.createElement('div');
      el.id = 'passkey-error';
      el.className = 'error';
      el.setAttribute('role', 'alert');
      const h1 = document.querySelector('main h1');
      if (h1) h1.after(el);
      else document.querySelector('main').prepend(el);
    }
    el.textContent = msg;
  }
  const explain = (e) =>
    e && e.name === 'NotAllowedError'
      ? 'The passkey request was cancelled or timed out. Try again.'
      : e && e.name === 'InvalidStateError'
        ? 'This authenticator already holds a passkey for your account. Use a different one.'
        : 'The passkey could not be used: ' + (e && e.message ? e.message : e);

  // --- Identifier page: sign in with a passkey -------------------------------------------
  const signForm = document.getElementById('passkey-form');
  if (signForm && supported()) {
    signForm.hidden = false;
    let pending = null; // AbortController of the conditional (autofill) request
    const submit = (challenge, cred) => {
      signForm.elements.challenge.value = challenge;
      signForm.elements.credential.value = JSON.stringify(assertionJson(cred));
      signForm.submit();
    };
    const run = async (conditional) => {
      const opts = await fetchOptions(signForm.dataset.options, signForm);
      const req = { publicKey: requestOptions(opts.publicKey) };
      if (conditional) {
        pending = new AbortController();
        req.mediation = 'conditional';
        req.signal = pending.signal;
      }
      const cred = await navigator.credentials.get(req);
      if (cred) submit(opts.challenge, cred);
    };
    document.getElementById('passkey-signin').addEventListener('click', async () => {
      if (pending) pending.abort();
      pending = null;
      try {
        await run(false);
      } catch (e) {
        showError(explain(e));
      }
    });
    const cma = PublicKeyCredential.isConditionalMediationAvailable;
    if (typeof cma === 'function') {
      cma.call(PublicKeyCredential).then((ok) => {
        if (!ok) return;
        run(true).catch((e) => {
          // An aborted autofill request (the button was used) is not an error.
          if (!e || e.name !== 'AbortError') console.info('passkey autofill ended:', e && e.name);
        });
      });
    }
  }

  // --- Security info: add a passkey ------------------------------------------------------
  const addForm = document.getElementById('add-passkey-form');
  if (addForm) {
    const button = document.getElementById('add-passkey');
    if (!supported()) {
      button.disabled = true;
      showError('This browser cannot create passkeys. Use an up-to-date browser, or a phone.');
    }
    addForm.addEventListener('submit', async (ev) => {
      if (addForm.elements.credential.value) return; // second pass: the real submission
      ev.preventDefault();
      button.disabled = true;
      try {
        const opts = await fetchOptions(addForm.dataset.options, addForm);
        const cred = await navigator.credentials.create({ publicKey: creationOptions(opts.publicKey) });
        addForm.elements.challenge.value = opts.challenge;
        addForm.elements.credential.value = JSON.stringify(registrationJson(cred));
        addForm.submit();
      } catch (e) {
        showError(explain(e));
        button.disabled = false;
      }
    });
  }
})();
