#!/usr/bin/env bash
# Install the system and Node packages Cutover's test suite needs (Debian 12).
#
# Idempotent and fast when everything is already there: it only checks for files
# and commands, and calls apt-get (update + install) just for what is missing.
#
#   PostgreSQL server  -> /usr/lib/postgresql/<ver>/bin/{initdb,pg_ctl,postgres}
#   Chromium           -> /usr/bin/chromium   (Debian's build; never a downloaded one)
#   Node.js + npm      -> only if `node` / `npm` are missing
#   OpenLDAP           -> /usr/sbin/slapd, ldapadd etc. (slapd, ldap-utils; for scripts/slapd-start.sh)
#   curl, ca-certificates
#   Python aiosmtpd    -> python3-aiosmtpd (and python3) when no `python3` (nor /usr/bin/python3)
#                         can `import aiosmtpd`; for e2e/smtp-sink.py and scripts/smtp-start.sh
#   e2e/node_modules   -> playwright-core, from e2e/package-lock.json
#
# Runs as root, or through sudo when it is available. Usage: scripts/install-deps.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
E2E_DIR="$ROOT/e2e"
export DEBIAN_FRONTEND=noninteractive

log() { printf '[install-deps] %s\n' "$*" >&2; }

have_postgres() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null; }
have_chromium() { [ -x /usr/bin/chromium ]; }
have_slapd() { [ -x /usr/sbin/slapd ] && [ -x /usr/sbin/slapadd ] && [ -x /usr/sbin/slappasswd ]; }
have_ldap_utils() { command -v ldapadd >/dev/null 2>&1 && command -v ldapsearch >/dev/null 2>&1; }
# Debian's python3-aiosmtpd is visible to the system Python only; a pyenv `python3` on PATH
# does not see it, so /usr/bin/python3 counts too (scripts/smtp-start.sh tries both).
have_aiosmtpd() {
  local py
  for py in python3 /usr/bin/python3; do
    command -v "$py" >/dev/null 2>&1 && "$py" -c 'import aiosmtpd' >/dev/null 2>&1 && return 0
  done
  return 1
}

# --- work out which Debian packages are missing -----------------------------------------
missing=()
have_postgres || missing+=(postgresql)
have_chromium || missing+=(chromium)
# (slapd's own default instance is never used: scripts/slapd-start.sh runs throwaway ones)
have_slapd || missing+=(slapd)
have_ldap_utils || missing+=(ldap-utils)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v curl >/dev/null 2>&1 || missing+=(curl)
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
have_aiosmtpd || missing+=(python3-aiosmtpd)
# runuser (util-linux) is used by pg-start.sh when running as root; it is essential on Debian.

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    AS_ROOT=()
  elif command -v sudo >/dev/null 2>&1; then
    AS_ROOT=(sudo -E)
  else
    log "missing packages: ${missing[*]} -- and not root, no sudo; install them by hand"
    exit 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    log "missing packages: ${missing[*]} -- and no apt-get on this system; install them by hand"
    exit 1
  fi

  apt_install() {
    { "${AS_ROOT[@]}" apt-get update -qq &&
        "${AS_ROOT[@]}" apt-get install -y -qq --no-install-recommends "$@"; } >&2
  }
  log "installing: ${missing[*]}"
  if ! apt_install "${missing[@]}"; then
    # Seen once on this kind of machine: apt's temporary folder vanished mid-install.
    # A second attempt (after letting dpkg finish anything half-configured) worked.
    log "apt-get failed; retrying once"
    sleep 3
    "${AS_ROOT[@]}" dpkg --configure -a || true
    apt_install "${missing[@]}"
  fi

  have_postgres || { log "PostgreSQL server binaries still missing under /usr/lib/postgresql/*/bin"; exit 1; }
  have_chromium || { log "/usr/bin/chromium still missing"; exit 1; }
  have_slapd || { log "/usr/sbin/slapd (slapadd, slappasswd) still missing"; exit 1; }
  have_ldap_utils || { log "ldapadd / ldapsearch still missing"; exit 1; }
  command -v node >/dev/null 2>&1 || { log "node still missing"; exit 1; }
  command -v npm >/dev/null 2>&1 || { log "npm still missing"; exit 1; }
  have_aiosmtpd || { log "aiosmtpd still missing: neither python3 nor /usr/bin/python3 can import it"; exit 1; }
fi

# playwright-core (pinned in e2e/package.json) wants Node >= 20; Debian 12's own nodejs is 18.
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 20 ]; then
  log "warning: node $(node --version) is older than 20, which playwright-core $(sed -n 's/.*"playwright-core": *"\([^"]*\)".*/\1/p' "$E2E_DIR/package.json" | head -n 1) asks for"
fi

# --- Node packages for the browser tests ------------------------------------------------
if [ ! -d "$E2E_DIR/node_modules/playwright-core" ] || [ ! -d "$E2E_DIR/node_modules/oidc-provider" ]; then
  log "installing Node packages in e2e/"
  # Browsers are never downloaded: the tests drive Debian's /usr/bin/chromium.
  export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
  if [ -f "$E2E_DIR/package-lock.json" ]; then
    (cd "$E2E_DIR" && npm ci --no-audit --no-fund) >&2
  else
    (cd "$E2E_DIR" && npm install --no-audit --no-fund) >&2
  fi
  [ -d "$E2E_DIR/node_modules/playwright-core" ] || { log "playwright-core did not install in e2e/"; exit 1; }
  [ -d "$E2E_DIR/node_modules/oidc-provider" ] || { log "oidc-provider did not install in e2e/"; exit 1; }
fi

# --- one-line summary -------------------------------------------------------------------
PGBIN="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
pg_v="$("$PGBIN/postgres" --version 2>/dev/null | awk '{print $3}')"
chromium_v="$(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}')"
pw_v="$(sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' "$E2E_DIR/node_modules/playwright-core/package.json" | head -n 1)"
echo "deps ok: postgresql ${pg_v:-?}, chromium ${chromium_v:-?}, node $(node --version 2>/dev/null || echo '?'), npm $(npm --version 2>/dev/null || echo '?'), playwright-core ${pw_v:-?}"
