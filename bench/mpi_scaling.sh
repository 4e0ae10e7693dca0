#!/usr/bin/env bash
# Data-parallel scaling of the main job (examples/train: cifar_resnet20d, Fashion-MNIST, batch 128)
# on this machine: 1 rank x 2 threads against 2 ranks x 1 thread (the same 2 cores), and simulated
# larger worlds (4 and 8 ranks x 1 thread, oversubscribed: more ranks than cores). For each, the
# training images/s (metrics.csv; the global batch's images per second of training steps) and the
# share of the steps rank 0 spent in the gradient sums (train's own line; waiting for slower ranks
# included). Configurations run in turn, `repeats` times (interleaved); prints every run and the
# medians. A benchmark, not a test. Needs Open MPI (scripts/bootstrap.sh) and a build with MPI.
#   bench/mpi_scaling.sh [repeats=3] [steps=40] [worlds="2 4 8"]
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}; steps=${2:-40}; worlds=${3:-"2 4 8"}
if [[ ! -f build/CMakeCache.txt ]]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build build --target train >/dev/null
train=build/examples/train
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
args=(--epochs 1 --steps "$steps" --batch 128 --quiet)
declare -A rates shares
run() {  # name ranks threads
  local name=$1 np=$2 threads=$3 log="$work/$1.log" rate share
  if [[ $np == 1 ]]; then
    "$train" "${args[@]}" --threads "$threads" --out "$work/$name" > "$log" 2>&1
  else
    mpirun -np "$np" --oversubscribe --bind-to none "$train" "${args[@]}" --threads "$threads" --out "$work/$name" > "$log" 2>&1
  fi
  rate=$(awk -F, 'NR == 2 { printf "%.0f", $6 }' "$work/$name/metrics.csv")
  share=$(sed -n 's/.*in the gradient sums (waiting for the other ranks included), \([0-9.]*\)%.*/\1/p' "$log")
  share=${share:--}
  printf "%-16s %6s img/s   gradient sums %s%%\n" "$name" "$rate" "$share"
  rates[$name]+="$rate "
  shares[$name]+="$share "
}
# The median of the numbers in a space-separated list ("-" when there are none; "-" entries skipped).
median() { tr ' ' '\n' | awk '$1 != "" && $1 != "-"' | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else print a[int((NR + 1) / 2)] }'; }
names=("1rank_x_2thr")
for r in $(seq "$reps"); do
  echo "== repeat $r"
  run 1rank_x_2thr 1 2
  for w in $worlds; do
    run "${w}ranks_x_1thr" "$w" 1
    [[ $r == 1 ]] && names+=("${w}ranks_x_1thr")
  done
done
echo
echo "| configuration (2 cores) | img/s (median of $reps) | vs 1 rank x 2 threads | gradient sums, share of the steps |"
echo "|---|---:|---:|---:|"
base=$(echo "${rates[1rank_x_2thr]}" | median)
for n in "${names[@]}"; do
  m=$(echo "${rates[$n]}" | median)
  s=$(echo "${shares[$n]}" | median)
  [[ $s == - ]] || s="$s%"
  printf "| %s | %s | %.2fx | %s |\n" "$n" "$m" "$(awk -v a="$m" -v b="$base" 'BEGIN { print a / b }')" "$s"
done
