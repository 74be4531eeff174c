# Shared by the scripts and tests/targets: install missing Debian packages (as root),
# serialized across concurrent callers, without letting their maintainer scripts start
# system services (sshd on 0.0.0.0:22, a PostgreSQL cluster on :5432).
ensure_debian_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]}; run as root or install them" >&2
    return 1
  fi
  echo "installing ${missing[*]}" >&2
  (
    flock -w 900 9 || { echo "timed out waiting for the apt lock" >&2; exit 1; }
    policy_added=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\n# temporary, from sallyport scripts/lib.sh\nexit 101\n' >/usr/sbin/policy-rc.d
      chmod 0755 /usr/sbin/policy-rc.d
      policy_added=1
    fi
    trap '[ -n "$policy_added" ] && rm -f /usr/sbin/policy-rc.d' EXIT
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >&2
  ) 9>/run/lock/sallyport-apt.lock
}

# The Tauri app's build and run dependencies.
TAURI_PACKAGES=(libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev
                libsoup-3.0-dev libjavascriptcoregtk-4.1-dev libxdo-dev pkg-config xvfb xauth)
