#!/usr/bin/env bash
# The desktop app's Debian package, made by the Tauri bundler's `deb` target: the release
# binary, its icons (icons/) and a desktop entry, with the WebKitGTK and GTK packages it needs
# as dependencies:
#   target/release/bundle/deb/Sallyport_VERSION_ARCH.deb
# Then it checks what the package holds and installs it with dpkg -i (as root; CHECK_INSTALL=0
# skips that).
#
# Not part of ./scripts/test.sh: on the project's two cores the release build of the app
# (Tauri, GTK and WebKit bindings) and the bundling took 663 s (11 min, a CI run of about 22
# min would grow by half), and 1.6 GB of disk beside the debug build the app's tests need;
# nothing in the suite depends on it. The script prints how long it took. Needs root on a fresh Debian machine for the build
# packages.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib.sh
ensure_debian_packages "${TAURI_PACKAGES[@]}"

(cd ui && npm ci --no-audit --no-fund && npm run build)
# The bundler comes with the Tauri CLI, pinned to the tauri crate's version.
(cd packaging/tauri-cli && npm ci --no-audit --no-fund)

started=$(date +%s)
# tauri.conf.json lives at the top (src-tauri/ has a symlink to it); say where the app is.
TAURI_APP_PATH=src-tauri TAURI_FRONTEND_PATH=ui \
  packaging/tauri-cli/node_modules/.bin/tauri build --bundles deb -- --locked
echo "package-app: build and bundle took $(( $(date +%s) - started )) s" >&2

target="${CARGO_TARGET_DIR:-target}"
deb=$(ls -t "$target"/release/bundle/deb/*.deb | head -n 1)
echo "$deb"

# What an administrator installs: the binary, the desktop entry, the icons.
contents=$(dpkg-deb --contents "$deb")
for path in usr/bin/sallyport-app usr/share/applications/Sallyport.desktop \
            usr/share/icons/hicolor/32x32/apps/sallyport-app.png \
            usr/share/icons/hicolor/128x128/apps/sallyport-app.png \
            usr/share/icons/hicolor/512x512/apps/sallyport-app.png; do
  grep -qE " (\./)?$path\$" <<<"$contents" || { echo "package-app: $deb lacks $path" >&2; exit 1; }
done
dpkg-deb --field "$deb" Package Version Depends >&2
if [ "${CHECK_INSTALL:-1}" = 1 ] && [ "$(id -u)" -eq 0 ]; then
  dpkg -i "$deb" >&2
  desktop-file-validate /usr/share/applications/Sallyport.desktop 2>/dev/null || true
  grep -q '^Exec=sallyport-app' /usr/share/applications/Sallyport.desktop
  echo "package-app: installed; the desktop entry starts sallyport-app" >&2
fi
