#!/usr/bin/env bash
# The whole test suite, from a fresh Debian clone: installs what the tests need, then runs
# every test of the workspace, then the desktop app's. The core crates' tests build no
# Tauri, GTK or WebKit.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib.sh
# Targets and tools of the end-to-end tests; they are started by the tests themselves.
ensure_debian_packages openssh-server openssh-client postgresql postgresql-client \
  keyutils dbus gnome-keyring pkg-config coturn redis-server

# The real OpenID provider of the single sign-on tests (tests/sso.rs starts it on loopback):
# oidc-provider from the npm registry, at the version package-lock.json pins.
command -v node >/dev/null && command -v npm >/dev/null || {
  echo "the SSO tests need Node.js (node and npm) on PATH" >&2
  exit 1
}
(cd tests/oidc && npm ci --no-audit --no-fund --loglevel=error)

# The kernel keyring needs a session keyring the process possesses (a login session's is
# not, on a headless machine): run under a new one.
# The app crate is left out here: it builds Tauri, and is tested by scripts/test-app.sh.
keyctl session - cargo test --workspace --exclude sallyport-app --locked "$@"

# An independent client (Python, aiortc; written from README.md and docs/PROTOCOL.md only)
# against the lab: any behaviour that differs from the documents fails.
tests/interop/run.sh target/debug/sallyport --strict

# The router and gateway as Debian packages: built, installed with dpkg -i, configured as
# docs/DEPLOY.md says, started as their systemd units run them, launched through over TLS.
./scripts/test-deb.sh target/debug/sallyport

# The desktop app: UI unit tests and the real binary end to end.
./scripts/test-app.sh
