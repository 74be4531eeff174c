#!/usr/bin/env bash
# Measure what a user sees for each fault and hostile input (docs/RELIABILITY.md): builds the
# router and gateway in release and runs crates/router/examples/reliability.rs against real
# router processes on loopback. Takes about a minute beyond the build; prints table rows.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p sallyport-router -p sallyport-gateway --bins
cargo build --release --locked -p sallyport-router --example reliability
target="${CARGO_TARGET_DIR:-target}"
"$target/release/examples/reliability" "$target/release/sallyport-router" "$target/release/sallyport-gateway"
