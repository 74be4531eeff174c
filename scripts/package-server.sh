#!/usr/bin/env bash
# The router's and the gateway's Debian packages, one each:
#   target/debian/sallyport-router_VERSION_ARCH.deb
#   target/debian/sallyport-gateway_VERSION_ARCH.deb
# Each holds its release binary (stripped), its systemd unit, a logrotate rule, an example
# configuration and docs/DEPLOY.md; installing it creates the `sallyport` system user,
# /etc/sallyport (root:sallyport 0750) and /var/log/sallyport. docs/DEPLOY.md goes on from there.
#
#   scripts/package-server.sh            # build, then package
#   scripts/package-server.sh --no-build # package binaries already in target/release
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
[ "${1:-}" = "--no-build" ] && build=0
target="${CARGO_TARGET_DIR:-target}"
if [ "$build" = 1 ]; then
  started=$(date +%s)
  cargo build --release --locked -p sallyport-router -p sallyport-gateway
  echo "package-server: release build took $(( $(date +%s) - started )) s" >&2
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)
out="$target/debian"
mkdir -p "$out"

# The newest glibc symbol version a binary needs: the floor of its libc6 dependency.
glibc_floor() {
  objdump -T "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1
}

package() {
  local part=$1 summary=$2 description=$3 example=$4
  local binary="$target/release/sallyport-$part"
  [ -x "$binary" ] || { echo "package-server: no $binary (build it first)" >&2; exit 1; }
  local stage="$out/stage-$part"
  rm -rf "$stage"
  install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" \
    "$stage/etc/logrotate.d" "$stage/usr/share/doc/sallyport-$part/examples"
  install -m 0755 "$binary" "$stage/usr/bin/sallyport-$part"
  strip --strip-unneeded "$stage/usr/bin/sallyport-$part"
  install -m 0644 "packaging/systemd/sallyport-$part.service" "$stage/lib/systemd/system/"
  install -m 0644 "packaging/logrotate/sallyport-$part" "$stage/etc/logrotate.d/"
  install -m 0644 "examples/$example" "$stage/usr/share/doc/sallyport-$part/examples/"
  install -m 0644 docs/DEPLOY.md docs/PROTOCOL.md packaging/debian/copyright \
    "$stage/usr/share/doc/sallyport-$part/"
  for script in postinst prerm postrm; do
    sed "s/@PART@/$part/g" "packaging/debian/$script" >"$stage/DEBIAN/$script"
    chmod 0755 "$stage/DEBIAN/$script"
  done
  echo "/etc/logrotate.d/sallyport-$part" >"$stage/DEBIAN/conffiles"
  local size glibc
  size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
  glibc=$(glibc_floor "$stage/usr/bin/sallyport-$part")
  {
    echo "Package: sallyport-$part"
    echo "Version: $version"
    echo "Architecture: $arch"
    echo "Maintainer: Sallyport developers <sallyport@localhost>"
    echo "Installed-Size: $size"
    echo "Depends: libc6 (>= $glibc), passwd"
    echo "Section: net"
    echo "Priority: optional"
    echo "Description: $summary"
    sed 's/^/ /' <<<"$description"   # continuation lines start with a space
  } >"$stage/DEBIAN/control"
  local deb="$out/sallyport-${part}_${version}_${arch}.deb"
  dpkg-deb --build --root-owner-group "$stage" "$deb" >/dev/null
  rm -rf "$stage"
  echo "$deb"
}

package router "Sallyport router: signalling for privileged-access sessions" \
"The router authenticates clients and gateways by token, forwards the clients'
sealed signalling to the gateways over HTTPS and WSS, and keeps an audit trail.
It never sees a session's bytes." router.toml
package gateway "Sallyport gateway: tubes to the resources beside it" \
"The gateway connects out to the router, answers WebRTC offers from clients and
bridges each connection of a tube to the target its configuration names." gateway.toml
