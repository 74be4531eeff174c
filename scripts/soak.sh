#!/usr/bin/env bash
# A long run, outside CI: 1,000 launch/close cycles and 10,000 connections against a real router
# and gateway, then what the router, the gateway and the client hold at the start and the end
# (resident memory, file descriptors, threads, runtime tasks). Results in target/soak/bench.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cycles="${1:-1000}"
connections="${2:-10000}"
cargo build --release --locked -p sallyport-cli -p sallyport-router -p sallyport-gateway
./target/release/sallyport bench --soak "$cycles" --soak-connections "$connections" --out target/soak
