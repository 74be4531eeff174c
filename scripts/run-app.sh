#!/usr/bin/env bash
# The main job: the desktop app. With no router configured it starts the embedded lab
# (router, gateway, demo targets on loopback), so a first click on a resource launches.
# Installs what it needs on a fresh Debian machine (as root), builds the UI, runs the app.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev
      libsoup-3.0-dev libjavascriptcoregtk-4.1-dev libxdo-dev pkg-config xvfb xauth)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/run-app.sh: missing ${missing[*]}; run as root or install them" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

(cd ui && npm ci --no-audit --no-fund && npm run build)
cargo build -p sallyport-app --locked

if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
  echo "scripts/run-app.sh: no display; running under Xvfb (see docs/screenshots for what it shows)" >&2
  exec xvfb-run -a -s "-screen 0 1280x800x24" ./target/debug/sallyport-app
fi
exec ./target/debug/sallyport-app
