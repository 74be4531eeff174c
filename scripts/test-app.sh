#!/usr/bin/env bash
# The desktop app's tests: the UI's unit tests (Vitest), then the real app binary under Xvfb
# driven through tauri-driver and WebKitWebDriver (tests/app/e2e.mjs), its tray icon docked in a
# real tray host (trayer) and clicked through xdotool. Needs root on a fresh Debian machine to
# install the Tauri, WebDriver and tray packages.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib.sh
ensure_debian_packages "${TAURI_PACKAGES[@]}" webkit2gtk-driver dbus dbus-x11 at-spi2-core \
  fonts-dejavu-core trayer xdotool python3-gi gir1.2-atspi-2.0

echo "== ui: unit tests and build" >&2
(cd ui && npm ci --no-audit --no-fund && npm test && npm run build)

echo "== app: build" >&2
cargo build -p sallyport-app --locked
command -v tauri-driver >/dev/null 2>&1 || cargo install tauri-driver --locked

echo "== app: end to end under Xvfb" >&2
home="$(mktemp -d)"   # no profile: the app starts the embedded lab
shots="${SCREENSHOTS:-target/screenshots}"
mkdir -p "$shots"
export SALLYPORT_HOME="$home" SHOTS="$(realpath "$shots")" APP="$(realpath target/debug/sallyport-app)"
status=0
# The screen is taller than the window (1280x800, placed at 0,0 with no window manager) so the
# tray host's panel along the bottom edge is not under it: clicks reach the docked icon.
xvfb-run -a -s "-screen 0 1280x880x24" dbus-run-session -- bash -c '
  set -o pipefail
  trayer --edge bottom --align right --widthtype pixel --width 200 --height 32 --transparent false \
    >"$SALLYPORT_HOME/trayer.log" 2>&1 &
  tray=$!
  timeout 30 xdotool search --sync --onlyvisible --class trayer >/dev/null ||
    echo "trayer has not shown its panel; see $SALLYPORT_HOME/trayer.log" >&2
  tauri-driver --port 4444 --native-driver /usr/bin/WebKitWebDriver >"$SALLYPORT_HOME/driver.log" 2>&1 &
  driver=$!
  for _ in $(seq 1 50); do
    (exec 3<>/dev/tcp/127.0.0.1/4444) 2>/dev/null && break
    sleep 0.2
  done
  rc=0
  node tests/app/e2e.mjs "$APP" "$SHOTS" | tee "$SALLYPORT_HOME/e2e.out" || rc=$?
  kill $driver $tray 2>/dev/null || true
  wait $driver $tray 2>/dev/null || true
  exit $rc
' || status=$?
# The run's closing line again, after whatever the app printed as Xvfb went away.
echo "app: $(tail -n 1 "$home/e2e.out" 2>/dev/null || echo "0 passed, 1 failed")"
exit $status
