#!/usr/bin/env bash
# Shows that the simulation bites: plants each mutant (a realistic bug, one patch file each in
# this directory) in turn, runs SEEDS seeds of the simulation against it, and reports which
# seeds caught it, the first one's message, and how long the run took. A mutant no seed
# catches SURVIVED, and the script fails.
#
#   crates/sim/mutants/run.sh [SEEDS] [PATCH...]    (SEEDS: default 200; PATCH: default all)
#   MUTANT_STEPS=300 MUTANT_PROFILE=release crates/sim/mutants/run.sh 1000
#
# Each patch is applied with `git apply` and taken back with `git apply -R` (also when the
# script is interrupted), so the files it touches must have no uncommitted changes.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
seeds="${1:-200}"
shift || true
if [ "$#" -gt 0 ]; then
  patches=("$@")
else
  patches=(crates/sim/mutants/*.patch)
fi
steps="${MUTANT_STEPS:-300}"
profile="${MUTANT_PROFILE:-dev}"
if [ "$profile" = "release" ]; then
  flags=(--release)
  bin=target/release/hallway-sim
else
  flags=()
  bin=target/debug/hallway-sim
fi
export CARGO_INCREMENTAL=0

applied=""
restore() {
  if [ -n "$applied" ]; then
    git apply -R "$applied"
    applied=""
  fi
}
trap restore EXIT INT TERM

survived=0
printf '%-40s %-9s %-12s %-8s %s\n' mutant caught first seconds message
for patch in "${patches[@]}"; do
  name="$(basename "$patch" .patch)"
  git apply --check "$patch"
  git apply "$patch"
  applied="$patch"
  if ! cargo build "${flags[@]}" -q -p hallway-sim 2>/tmp/mutant-build.log; then
    echo "$name: does not build" >&2
    tail -20 /tmp/mutant-build.log >&2
    exit 2
  fi
  start=$(date +%s.%N)
  out="$("$bin" --seeds "$seeds" --steps "$steps" 2>&1 || true)"
  seconds=$(echo "$(date +%s.%N) - $start" | bc)
  restore
  failing="$(echo "$out" | sed -n 's/^seed \([0-9]*\) FAILED.*/\1/p' | sort -n)"
  count="$(echo "$failing" | grep -c . || true)"
  first="$(echo "$failing" | head -1)"
  if [ "$count" -eq 0 ]; then
    survived=$((survived + 1))
    printf '%-40s %-9s %-12s %-8.1f %s\n' "$name" "SURVIVED" "-" "$seconds" "-"
    continue
  fi
  message="$(echo "$out" | grep -m1 "^seed $first FAILED" | sed 's/^seed [0-9]* FAILED after step [0-9]*: //' | cut -c1-150)"
  printf '%-40s %-9s %-12s %-8.1f %s\n' "$name" "$count/$seeds" "seed $first" "$seconds" "$message"
done
[ "$survived" -eq 0 ] || {
  echo "$survived mutant(s) survived" >&2
  exit 1
}
