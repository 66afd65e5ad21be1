#!/usr/bin/env bash
# One-time (idempotent, quiet when done) set-up for building and testing Orrery on Debian 12:
# rustfmt/clippy, the wasm toolchain, wasm-bindgen-cli of exactly the locked version, PostgreSQL's
# server programs, Chromium for browser tests, and the browser-test driver from npm.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

say() { printf '== %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  say "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
have() { command -v "$1" >/dev/null 2>&1; }

# --- Rust components ------------------------------------------------------------------------
if have rustup; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || { say "rustup component add $c"; rustup component add "$c"; }
  done
fi

# --- system packages ------------------------------------------------------------------------
missing=()
pg_bin_ok() { have initdb || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }
pg_bin_ok || missing+=(postgresql)
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium fonts-dejavu-core)
have node || missing+=(nodejs npm)
have pgrep || missing+=(procps)
have curl || missing+=(curl ca-certificates)
# Certificates for the HTTPS test.
have openssl || missing+=(openssl)
have cc || missing+=(gcc libc6-dev)
have make || missing+=(make)
# Reference implementations for the cron differential tests: Quartz (Java) and cronsim (Python).
have java || missing+=(default-jre-headless)
[ -f /usr/share/java/quartz2.jar ] || missing+=(libquartz2-java)
have python3 || missing+=(python3)
# The MySQL side of `sql` tasks is tested against a private MariaDB (backend/testkit starts it).
[ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
python3 -c "import ensurepip, venv" 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
# Debian's postgresql and mariadb-server packages start servers on 5432 and 3306; Orrery's tests
# never use them (they run their own).

# --- the wasm toolchain -----------------------------------------------------------------------
wasm_mode_file=target/.wasm-toolchain
mkdir -p target
if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  echo rustup > "$wasm_mode_file"
elif have rustup && timeout 300 rustup target add wasm32-unknown-unknown >/dev/null 2>&1; then
  say "rustup target add wasm32-unknown-unknown"
  echo rustup > "$wasm_mode_file"
else
  # No download of rustup's wasm std possible: Debian ships std's sources, cargo builds std itself.
  if [ ! -d /usr/lib/rustlib/src/rust/library ] || ! have wasm-ld || [ ! -x /usr/bin/cargo ]; then
    apt_install rustc-web cargo-web rust-web-src lld
  fi
  echo debian > "$wasm_mode_file"
fi

# --- wasm-bindgen-cli, exactly the version in Cargo.lock ----------------------------------------
want=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
  say "cargo install wasm-bindgen-cli $want (once per machine, several minutes)"
  # Its own lock file first; the registry may no longer serve a version it names (a yanked
  # webpki-roots has done that), and then the newest compatible dependencies.
  locked_log=$(mktemp)
  if ! cargo install -q wasm-bindgen-cli --version "=$want" --locked --no-default-features 2>"$locked_log"; then
    say "its locked dependencies are not all available ($(grep -m1 '^error' "$locked_log")); installing with current ones"
    cargo install -q wasm-bindgen-cli --version "=$want" --no-default-features
  fi
  rm -f "$locked_log"
fi

# --- cronsim, the Unix-cron reference, in a private venv ----------------------------------------
if ! target/venv/bin/python -c "import cronsim" 2>/dev/null; then
  say "python venv with cronsim (cron reference)"
  python3 -m venv target/venv
  target/venv/bin/pip install -q -r infra/dev/cron-reference/requirements.txt
fi

# --- browser-test driver ----------------------------------------------------------------------
if [ ! -d e2e/node_modules/playwright-core ] || [ e2e/package-lock.json -nt e2e/node_modules/.package-lock.json ]; then
  say "npm ci (e2e)"
  (cd e2e && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
exit 0
