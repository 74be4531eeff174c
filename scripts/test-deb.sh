#!/usr/bin/env bash
# The router and gateway packages as an administrator uses them, following docs/DEPLOY.md:
# build them (scripts/package-server.sh), install them with dpkg -i, make a CA and the
# router's certificate with openssl, a gateway key, /etc/sallyport/{router,gateway}.toml; start
# both units (systemctl where systemd runs, otherwise each unit's ExecStart as its User, with
# its LogsDirectory and LimitNOFILE, as systemd would); launch through them with the sallyport
# CLI over TLS; reload the router as the unit does; read the launch back with
# `sallyport-router audit`. Then it stops both and purges the packages and what it wrote.
#
#   scripts/test-deb.sh [path/to/sallyport]     (default target/debug/sallyport; needs root)
#   SKIP_BUILD=1 scripts/test-deb.sh             package binaries already in target/release
#
# It refuses to run on a machine whose /etc/sallyport it did not write itself.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

[ "$(id -u)" -eq 0 ] || { echo "test-deb: needs root (dpkg -i, /etc/sallyport)" >&2; exit 1; }
ensure_debian_packages openssl python3 binutils
client=$(realpath "${1:-${CARGO_TARGET_DIR:-target}/debug/sallyport}")
[ -x "$client" ] || { echo "test-deb: no sallyport client at $client (cargo build -p sallyport-cli)" >&2; exit 1; }

etc=/etc/sallyport
marker="# written by scripts/test-deb.sh"
# One run at a time on a machine: it owns /etc/sallyport while it runs.
exec 8>/run/lock/sallyport-test-deb.lock
flock -w 900 8 || { echo "test-deb: another run holds the lock" >&2; exit 1; }
for config in "$etc"/*.toml; do
  if [ -e "$config" ] && ! grep -qF "$marker" "$config"; then
    echo "test-deb: $config is not this test's: refusing to touch a real deployment" >&2
    exit 1
  fi
done
logs_existed=0
[ -d /var/log/sallyport ] && logs_existed=1

passed=0 failed=0
check() {  # check NAME COMMAND...: run it, count it
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "[PASS] $name" >&2
  else failed=$((failed + 1)); echo "[FAIL] $name" >&2; fi
}

work=$(mktemp -d)
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -d /run/systemd/system ]; then
    systemctl stop sallyport-gateway sallyport-router 2>/dev/null || true
  fi
  dpkg --purge sallyport-router sallyport-gateway >/dev/null 2>&1 || true
  rm -rf "$etc"
  [ "$logs_existed" = 1 ] || rm -rf /var/log/sallyport
  if [ "$rc" -ne 0 ] || [ "$failed" -ne 0 ]; then
    for log in "$work"/*.log; do
      [ -e "$log" ] && { echo "---- $log (last 30 lines)" >&2; tail -n 30 "$log" >&2; }
    done
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
echo_port=$(free_port)

# 1. Build and install (DEPLOY.md step 1).
if [ -z "${SKIP_BUILD:-}" ]; then
  scripts/package-server.sh >"$work/debs"
else
  scripts/package-server.sh --no-build >"$work/debs"
fi
mapfile -t debs <"$work/debs"
dpkg -i "${debs[@]}" >"$work/dpkg.log" 2>&1
installed() {
  [ "$(dpkg-query -W -f='${Status}\n' sallyport-router sallyport-gateway | sort -u)" = "install ok installed" ]
}
check "dpkg -i installs both packages" installed
if command -v systemd-analyze >/dev/null 2>&1; then
  check "systemd-analyze verify accepts both units" systemd-analyze verify \
    /lib/systemd/system/sallyport-router.service /lib/systemd/system/sallyport-gateway.service
fi
check "the packages create the sallyport user and /etc/sallyport (root:sallyport 0750)" \
  bash -c "getent passwd sallyport >/dev/null && [ \"\$(stat -c %U:%G:%a $etc)\" = root:sallyport:750 ]"

# 2. A CA and the router's certificate, made with openssl as DEPLOY.md says.
(
  cd "$work"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=Sallyport test CA" -keyout ca.key -out ca.pem \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=localhost" -keyout router.key -out router.csr
  printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\nbasicConstraints=CA:FALSE\n' >router.ext
  openssl x509 -req -in router.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
    -extfile router.ext -out router.crt
) >"$work/openssl.log" 2>&1
install -d -o root -g sallyport -m 0750 "$etc/tls"
install -o root -g sallyport -m 0644 "$work/router.crt" "$etc/tls/router.crt"
install -o root -g sallyport -m 0640 "$work/router.key" "$etc/tls/router.key"
install -o root -g sallyport -m 0644 "$work/ca.pem" "$etc/ca.pem"

# 3. The gateway's key.
rm -f "$etc/gateway.key"
public_key=$(sallyport-gateway keygen --out "$etc/gateway.key")
chgrp sallyport "$etc/gateway.key"
chmod 0640 "$etc/gateway.key"

# 4. and 5. The configurations, and a target for the gateway: an echo server.
gateway_token=$(openssl rand -hex 24)
client_token=$(openssl rand -hex 24)
cat >"$etc/router.toml" <<EOF
$marker
listen = "127.0.0.1:$port"
audit_log = "/var/log/sallyport/audit.jsonl"

[tls]
cert_file = "$etc/tls/router.crt"
key_file = "$etc/tls/router.key"

[[gateways]]
id = "dc1"
token = "$gateway_token"
public_key = "$public_key"

[[clients]]
name = "alice"
token = "$client_token"
resources = ["echo"]
EOF
cat >"$etc/gateway.toml" <<EOF
$marker
router_url = "https://localhost:$port"
ca_file = "$etc/ca.pem"
gateway_id = "dc1"
token = "$gateway_token"
key_file = "$etc/gateway.key"
connection_log = "/var/log/sallyport/gateway-connections.jsonl"
webrtc_udp = ["127.0.0.1:0"]

[[resources]]
name = "echo"
protocol = "tcp"
target = "127.0.0.1:$echo_port"
EOF
chgrp sallyport "$etc/router.toml" "$etc/gateway.toml"
chmod 0640 "$etc/router.toml" "$etc/gateway.toml"

python3 - "$echo_port" >"$work/echo.log" 2>&1 <<'EOF' &
import asyncio, sys
async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(echo, "127.0.0.1", int(sys.argv[1]))
    async with server:
        await server.serve_forever()
asyncio.run(main())
EOF
pids+=($!)
for _ in $(seq 1 100); do  # until the echo server listens
  (exec 3<>"/dev/tcp/127.0.0.1/$echo_port") 2>/dev/null && break
  sleep 0.1
done

# The value of KEY in the [Service] section of a unit file.
unit_value() { sed -n "s/^$2=//p" "/lib/systemd/system/$1.service" | tail -n 1; }
# Start a unit: with systemd if it runs, else its ExecStart as its User (as systemd would).
start_unit() {
  local unit=$1
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl start "$unit"
    return
  fi
  local user group exec logs limit condition
  user=$(unit_value "$unit" User); group=$(unit_value "$unit" Group)
  exec=$(unit_value "$unit" ExecStart); logs=$(unit_value "$unit" LogsDirectory)
  limit=$(unit_value "$unit" LimitNOFILE); condition=$(unit_value "$unit" ConditionPathExists)
  [ -e "$condition" ] || { echo "test-deb: $unit: $condition missing" >&2; return 1; }
  install -d -o "$user" -g "$group" -m "$(unit_value "$unit" LogsDirectoryMode)" "/var/log/$logs"
  # shellcheck disable=SC2086 # ExecStart is a command line
  # As systemd sets LimitNOFILE; a container may cap the hard limit lower: then that one.
  (ulimit -n "$limit" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
   umask "$(unit_value "$unit" UMask)"
   exec setpriv --reuid="$user" --regid="$group" --init-groups -- $exec) >"$work/$unit.log" 2>&1 &
  pids+=($!)
  eval "${unit//-/_}_pid=$!"   # the unit's main process (setpriv execs the binary)
}
stop_unit() {  # stop_unit UNIT PID: SIGTERM, as systemctl stop does; the exit status
  if [ -d /run/systemd/system ]; then systemctl stop "$1"; return; fi
  kill -TERM "$2" && wait "$2"
}
reload_unit() {  # ExecReload, with $MAINPID
  if [ -d /run/systemd/system ]; then systemctl reload "$1"; return; fi
  local reload
  reload=$(unit_value "$1" ExecReload)
  ${reload//\$MAINPID/$2}
}

since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
start_unit sallyport-router
start_unit sallyport-gateway

# 6. The user: a profile naming the CA and pinning the gateway, the token from the environment.
home="$work/home"
mkdir -p "$home"
cat >"$home/profile.toml" <<EOF
router_url = "https://localhost:$port"
ca_file = "$etc/ca.pem"

[gateways]
dc1 = "$public_key"
EOF
sallyport() { SALLYPORT_HOME="$home" SALLYPORT_TOKEN="$client_token" "$client" "$@"; }

gateway_online() {
  local deadline=$((SECONDS + 30))
  while [ $SECONDS -lt $deadline ]; do
    sallyport resources 2>>"$work/client.log" | grep -Eq '^echo +tcp +dc1 +online' && return 0
    sleep 0.5
  done
  return 1
}
check "the gateway connects to the router over TLS (sallyport resources: echo online)" gateway_online

cat >"$work/client.py" <<'EOF'
import socket, sys
message = b"hello through the packages\n"
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as s:
    s.sendall(message)
    s.shutdown(socket.SHUT_WR)
    reply = b""
    while chunk := s.recv(4096):
        reply += chunk
sys.exit(0 if reply == message else 1)
EOF
check "a launch through the installed router and gateway carries bytes both ways" \
  sallyport launch echo --run "python3 $work/client.py {port}"

audited() {  # the launch's events, in order, attributed to alice
  local deadline=$((SECONDS + 15)) out
  while [ $SECONDS -lt $deadline ]; do
    out=$(sallyport-router audit --config "$etc/router.toml" --since "$since" --user alice --resource echo)
    if grep -q 'session_closed' <<<"$out"; then
      echo "$out" >"$work/audit.out"
      awk '{print $2}' <<<"$out" | grep -E 'launch_requested|tube_connected|session_closed' \
        | tr '\n' ' ' | grep -q 'launch_requested tube_connected session_closed' &&
        grep -q 'session_closed.*reason=client_closed.*bytes_from_client=27 bytes_to_client=27' <<<"$out"
      return
    fi
    sleep 0.3
  done
  return 1
}
check "sallyport-router audit reads the launch back with its outcome and bytes" audited
check "the gateway logged its connection to the target" \
  grep -q "\"event\":\"target_connected\".*\"target\":\"127.0.0.1:$echo_port\"" \
  /var/log/sallyport/gateway-connections.jsonl
check "the logs belong to the sallyport user, mode 0640" \
  bash -c '[ "$(stat -c %U:%a /var/log/sallyport/audit.jsonl)" = sallyport:640 ]'

# A reload (new certificate files) keeps the gateway connected.
reload_router_keeps_gateway() {
  reload_unit sallyport-router "${sallyport_router_pid:-}" || return 1
  sleep 1
  sallyport launch echo --run "python3 $work/client.py {port}" 2>>"$work/client.log" || return 1
  [ "$(sallyport-router audit --config "$etc/router.toml" --since "$since" | grep -c gateway_connected)" = 1 ]
}
check "a reload (ExecReload) keeps the gateway connected and serving" reload_router_keeps_gateway

check "the gateway stops cleanly on SIGTERM" stop_unit sallyport-gateway "${sallyport_gateway_pid:-}"
check "the router stops cleanly on SIGTERM" stop_unit sallyport-router "${sallyport_router_pid:-}"
pids=("${pids[0]}")

echo "deb: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
