#!/usr/bin/env bash
# Fuzz each target for a bounded time and report its executions (not part of CI: CI runs
# ./scripts/test.sh). Needs the nightly toolchain and cargo-fuzz 0.13 (installed if absent).
#
#   ./scripts/fuzz.sh                 # every target, FUZZ_SECONDS (default 120) each
#   FUZZ_SECONDS=30 ./scripts/fuzz.sh seal_open
#
# Each target's corpus is kept in fuzz/corpus/<target>; a crash leaves its input in
# fuzz/artifacts/<target> and makes this script fail.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-120}"
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(router_body router_client_frame router_gateway_frame seal_open tube_frames gateway_offer gateway_candidate)

rustup toolchain list | grep -q '^nightly' || { echo "the nightly toolchain is missing (rustup toolchain install nightly)" >&2; exit 1; }
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --version '^0.13' --locked

cargo +nightly fuzz build -O
status=0
printf '%-22s %14s %10s %s\n' target executions exec/s result
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  log="$(mktemp)"
  if cargo +nightly fuzz run -O "$target" "corpus/$target" -- \
      -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (see fuzz/artifacts/$target and $log)"
    status=1
  fi
  runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
  rate="$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
  printf '%-22s %14s %10s %s\n' "$target" "${runs:-?}" "${rate:-?}" "$result"
  [ "$result" = ok ] && rm -f "$log"
done
exit "$status"
