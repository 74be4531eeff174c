#!/usr/bin/env bash
# The main job: the desktop app. With no router configured it starts the embedded lab
# (router, gateway, demo targets on loopback), so a first click on a resource launches.
# Installs what it needs on a fresh Debian machine (as root), builds the UI, runs the app.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib.sh
ensure_debian_packages "${TAURI_PACKAGES[@]}"

(cd ui && npm ci --no-audit --no-fund && npm run build)
cargo build -p sallyport-app --locked

if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
  echo "scripts/run-app.sh: no display; running under Xvfb (see docs/screenshots for what it shows)" >&2
  exec xvfb-run -a -s "-screen 0 1280x800x24" ./target/debug/sallyport-app
fi
exec ./target/debug/sallyport-app
