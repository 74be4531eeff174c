#!/usr/bin/env bash
# Independent interop test: start `sallyport lab` on loopback, run the Python client
# (written from README.md and docs/PROTOCOL.md only) against it, stop the lab.
#
#   tests/interop/run.sh [path/to/sallyport] [extra interop_test.py args, e.g. --strict]
#
# Exit status: non-zero if any functional check fails (or, with --strict, if the servers
# differ from PROTOCOL.md anywhere the suite checks).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${1:-$ROOT/target/debug/sallyport}
shift || true
if [ ! -x "$BIN" ]; then
    echo "run.sh: no sallyport binary at $BIN" >&2
    echo "build it: CARGO_TARGET_DIR=$ROOT/target cargo build -p sallyport-cli" >&2
    exit 2
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

PY=${PYTHON:-python3.11}
VENV=$HERE/.venv
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sallyport-interop.XXXXXX")
free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BLACKHOLE_PORT=$(free_port)

LAB_PID=
cleanup() {
    rc=$?
    if [ -n "$LAB_PID" ] && kill -0 "$LAB_PID" 2>/dev/null; then
        kill -INT "$LAB_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$LAB_PID" 2>/dev/null || break; sleep 0.1; done
        kill -TERM "$LAB_PID" 2>/dev/null || true
        wait "$LAB_PID" 2>/dev/null || true
    fi
    if [ "$rc" -ne 0 ]; then
        echo "---- lab log (last 40 lines): $WORK/lab.log" >&2
        tail -n 40 "$WORK/lab.log" >&2 || true
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT INT TERM

# demo-refused: a closed loopback port (target_refused)
# demo-unreachable: the broadcast address, which connect() rejects locally (target_unreachable)
# demo-blackhole: a loopback listener whose accept queue the test fills, so the dial hangs
SALLYPORT_HOME="$WORK/home" "$BIN" lab \
    --listen 127.0.0.1:0 \
    --profile-file "$WORK/profile.toml" \
    --no-local-services \
    --resource demo-refused=tcp@127.0.0.1:9 \
    --resource demo-unreachable=tcp@255.255.255.255:9 \
    --resource "demo-blackhole=tcp@127.0.0.1:$BLACKHOLE_PORT" \
    >"$WORK/lab.log" 2>&1 &
LAB_PID=$!

for _ in $(seq 1 300); do
    [ -s "$WORK/profile.toml" ] && grep -q '^\[gateways\]' "$WORK/profile.toml" && break
    kill -0 "$LAB_PID" 2>/dev/null || { echo "run.sh: the lab exited" >&2; exit 1; }
    sleep 0.1
done
[ -s "$WORK/profile.toml" ] || { echo "run.sh: no profile after 30 s" >&2; exit 1; }
cat "$WORK/lab.log"

"$VENV/bin/python" "$HERE/interop_test.py" "$WORK/profile.toml" \
    --blackhole-port "$BLACKHOLE_PORT" "$@"
