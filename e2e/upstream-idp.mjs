// An "upstream" OpenID Connect provider for Cutover's federation tests: a real oidc-provider
// (panva, pinned in e2e/package.json) on 127.0.0.1 only, on an ephemeral port.
//
// Spawned as `node e2e/upstream-idp.mjs` by crates/cutover/tests/it/upstream.rs, with
//   UPSTREAM_CONFIG  JSON:
//     { "clients":  [ { "client_id", "client_secret", "redirect_uris": [...],
//                       "mode": "normal" | "wrong-audience" | "bad-signature" | "token-error" } ],
//       "accounts": { "<login>": { "<claim>": <value>, ... } } }
//
// When it listens it prints exactly ONE line on stdout:
//   {"ready":true,"issuer":"http://127.0.0.1:PORT"}
// Diagnostics go to stderr. It exits on SIGTERM, SIGINT and when its stdin closes, so a test
// runner that dies never leaves it behind (run it by hand with `node upstream-idp.mjs < /dev/tty`
// or `sleep infinity | node upstream-idp.mjs`).
//
// Sign-in (devInteractions, no consent screen):
//   GET /auth?...                 -> 303 /interaction/UID (sets the _interaction cookies)
//   GET /interaction/UID          -> 200 HTML form, action=/interaction/UID, fields
//                                    prompt=login (hidden), login, password
//   POST /interaction/UID         -> 303 /auth/UID (any password is accepted)
//   GET /auth/UID                 -> 303 REDIRECT_URI?code=...&state=...&iss=...
// The login name becomes `sub`. A login listed in `accounts` gets that object's claims; every
// login also gets `preferred_username` = the login (unless its account sets one). All of them
// are put in the ID token itself.
//
// Token endpoint tampering, per client `mode` (the token response for that client):
//   normal          untouched
//   wrong-audience  the ID token's `aud` becomes "someone-else", re-signed with the provider's
//                   own key, so the signature is still valid against the published JWKS
//   bad-signature   one character in the middle of the ID token's signature is changed
//   token-error     HTTP 500 with a JSON error body; no token is ever handed out
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const log = (...a) => console.error('[upstream-idp]', ...a);

function fail(msg) {
  log(msg);
  process.exit(2);
}

// --- configuration --------------------------------------------------------------------------
const MODES = new Set(['normal', 'wrong-audience', 'bad-signature', 'token-error']);
const TOKEN_PATH = '/token';

let input;
try {
  input = JSON.parse(process.env.UPSTREAM_CONFIG || '{}');
} catch (e) {
  fail(`UPSTREAM_CONFIG is not JSON: ${e.message}`);
}
const accounts = input.accounts ?? {};
if (typeof accounts !== 'object' || Array.isArray(accounts)) fail('accounts must be a JSON object');
const modeOf = new Map();
const clients = (input.clients ?? []).map((c) => {
  const mode = c.mode ?? 'normal';
  if (!MODES.has(mode)) fail(`client ${c.client_id}: unknown mode ${mode}`);
  if (!c.client_id || !c.client_secret || !Array.isArray(c.redirect_uris)) {
    fail(`client ${JSON.stringify(c)}: client_id, client_secret and redirect_uris are required`);
  }
  modeOf.set(c.client_id, mode);
  return {
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: c.redirect_uris,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
  };
});
if (clients.length === 0) fail('UPSTREAM_CONFIG has no clients');

// Every claim any account has, plus preferred_username, is released under the `openid` scope
// (and so, with conformIdTokenClaims off, lands in the ID token).
const claimNames = new Set(['sub', 'preferred_username']);
for (const claims of Object.values(accounts)) {
  for (const name of Object.keys(claims ?? {})) claimNames.add(name);
}

// The signing key: ours, so that wrong-audience can re-sign with it.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = {
  ...privateKey.export({ format: 'jwk' }),
  kid: `upstream-${crypto.randomBytes(6).toString('hex')}`,
  use: 'sig',
  alg: 'RS256',
};

const configuration = {
  clients,
  // Both client authentication methods a confidential client may use here.
  clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
  jwks: { keys: [signingJwk] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  scopes: ['openid', 'offline_access', 'profile', 'email'],
  claims: {
    openid: [...claimNames],
    profile: ['preferred_username', 'name'],
    email: ['email', 'email_verified'],
  },
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  // PKCE (S256) is accepted and checked when sent, never required.
  pkce: { required: () => false },
  routes: { token: TOKEN_PATH },
  ttl: {
    AuthorizationCode: 60,
    IdToken: 600,
    AccessToken: 600,
    RefreshToken: 3600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { preferred_username: id, ...(accounts[id] ?? {}), sub: id };
      },
    };
  },
  // No consent screen: every requested OpenID scope and claim is granted at once.
  async loadExistingGrant(ctx) {
    const { oidc } = ctx;
    const accountId = oidc.session.accountId;
    const clientId = oidc.client.clientId;
    const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(clientId);
    let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
    if (!grant || grant.accountId !== accountId || grant.clientId !== clientId) {
      grant = new oidc.provider.Grant({ accountId, clientId });
    }
    const scopes = [...oidc.requestParamOIDCScopes];
    if (scopes.length) grant.addOIDCScope(scopes.join(' '));
    const claims = [...oidc.requestParamClaims];
    if (claims.length) grant.addOIDCClaims(claims);
    await grant.save();
    return grant;
  },
};

// --- tampering ------------------------------------------------------------------------------
const b64u = (buf) => Buffer.from(buf).toString('base64url');

function reaudience(jwt) {
  const [header, payload] = jwt.split('.');
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  claims.aud = 'someone-else';
  const signingInput = `${header}.${b64u(JSON.stringify(claims))}`;
  const signature = crypto.sign('sha256', Buffer.from(signingInput), privateKey); // RS256
  return `${signingInput}.${b64u(signature)}`;
}

function breakSignature(jwt) {
  const [header, payload, signature] = jwt.split('.');
  const sig = [...signature];
  const i = Math.floor(sig.length / 2);
  sig[i] = sig[i] === 'A' ? 'B' : 'A';
  return `${header}.${payload}.${sig.join('')}`;
}

function tokenError(ctx, mode) {
  ctx.status = 500;
  ctx.type = 'application/json';
  ctx.set('Cache-Control', 'no-store');
  ctx.body = { error: 'server_error', error_description: `upstream test mode ${mode}` };
}

// The client a token request names in its Basic credentials (RFC 6749 2.3.1 form-encodes them).
function basicClientId(ctx) {
  const auth = ctx.get('authorization');
  const m = /^basic\s+(\S+)$/i.exec(auth);
  if (!m) return undefined;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  try {
    return decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
}

async function start() {
  const server = http.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;

  const provider = new Provider(issuer, configuration);
  provider.on('server_error', (_ctx, err) => log('server_error', err));

  provider.use(async (ctx, next) => {
    const isToken = ctx.method === 'POST' && ctx.path === TOKEN_PATH;
    // token-error with Basic credentials: refuse before the provider ever looks at the code.
    if (isToken && modeOf.get(basicClientId(ctx)) === 'token-error') {
      log(`token-error: refusing the token request of ${basicClientId(ctx)}`);
      return tokenError(ctx, 'token-error');
    }
    await next();
    if (!isToken || ctx.oidc?.route !== 'token') return;
    const clientId = ctx.oidc.client?.clientId;
    const mode = modeOf.get(clientId) ?? 'normal';
    if (mode === 'token-error') {
      // client_secret_post: the response is replaced, so the token never leaves.
      log(`token-error: replacing the token response of ${clientId}`);
      return tokenError(ctx, mode);
    }
    const body = ctx.body;
    if (ctx.status !== 200 || !body || typeof body.id_token !== 'string') return;
    if (mode === 'wrong-audience') {
      body.id_token = reaudience(body.id_token);
      log(`wrong-audience: re-signed the ID token of ${clientId} for aud someone-else`);
    } else if (mode === 'bad-signature') {
      body.id_token = breakSignature(body.id_token);
      log(`bad-signature: broke the ID token signature of ${clientId}`);
    }
  });

  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ ready: true, issuer })}\n`);

  const stop = (why) => {
    log(`stopping (${why})`);
    server.close();
    server.closeAllConnections?.();
    process.exit(0);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.stdin.on('end', () => stop('stdin closed'));
  process.stdin.on('close', () => stop('stdin closed'));
  process.stdin.on('error', () => stop('stdin error'));
  process.stdin.resume();
}

start().catch((e) => fail(`failed to start: ${e?.stack ?? e}`));
