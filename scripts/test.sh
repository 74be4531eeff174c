#!/usr/bin/env bash
# The whole test suite, from a fresh Debian clone: installs what the tests need, then runs
# every test of the workspace, then the desktop app's. The core crates' tests build no
# Tauri, GTK or WebKit.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
command -v keyctl >/dev/null 2>&1 || need+=(keyutils)
command -v dbus-run-session >/dev/null 2>&1 || need+=(dbus)
command -v gnome-keyring-daemon >/dev/null 2>&1 || need+=(gnome-keyring)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: missing ${need[*]}; run as root or install them" >&2
    exit 1
  fi
  echo "scripts/test.sh: installing ${need[*]}" >&2
  # Keep package installs from starting system services (sshd on :22, a cluster on :5432).
  policy_added=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    policy_added=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ "$policy_added" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

# The kernel keyring needs a possessed session keyring (PLATFORM.md): run under a new one.
# The app crate is left out here: it builds Tauri, and is tested by scripts/test-app.sh.
keyctl session - cargo test --workspace --exclude sallyport-app --locked "$@"

# The desktop app: UI unit tests and the real binary end to end.
./scripts/test-app.sh
