#!/usr/bin/env bash
# Instructions per request for each case of benches/instructions.rs, counted by
# callgrind inside `measured` only, minus the bare route's: what scopegate adds.
#   bash benches/instructions.sh [requests]   (default 2000)
# CASES="bare guarded" runs only those cases (the first is the baseline).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
cargo bench -p scopegate-benches --bench instructions --no-run 2>/dev/null
bin=$(ls -t target/release/deps/instructions-* | grep -v '\.d$' | head -n 1)
count() {
  local out
  out=$(mktemp)
  valgrind --tool=callgrind --fair-sched=yes --toggle-collect='*measured*' --callgrind-out-file="$out" \
    "$bin" "$1" "$2" >/dev/null 2>&1
  # Both runs (10 warm-up requests and n) are counted: subtract a 10-request run.
  local total
  total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  rm -f "$out"
  echo "$total"
}
printf '| case | instructions/request | added over bare |\n|---|---|---|\n'
bare=""
for case in ${CASES:-bare floor floor_wrapped handwritten layer guarded guarded_wrapped many malformed miss}; do
  big=$(count "$case" "$n")
  small=$(count "$case" 0)
  per=$(( (big - small) / n ))
  [ -z "$bare" ] && bare=$per
  printf '| %s | %d | %d |\n' "$case" "$per" "$((per - bare))"
done
# No HTTP here: the gate refusing a malformed token, all of it scopegate's.
if [ -z "${CASES:-}" ]; then
  printf '\nThe gate alone (ScopeGate::authenticate), no HTTP:\n\n| refuses | instructions |\n|---|---|\n'
  for case in refusal refusal_short; do
    big=$(count "$case" "$n")
    small=$(count "$case" 0)
    printf '| %s | %d |\n' "$case" "$(( (big - small) / n ))"
  done
fi
