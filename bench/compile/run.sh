#!/usr/bin/env bash
# Compile cost of an ablation study: builds examples/ablation.cpp with 1, 4 and all of its
# distinct configurations (-DTRICKS_ABLATION_CONFIGS=N; "all" = 8 student configurations + the
# distillation teacher = 9 trainer<Model, Recipe> instantiations) and reports, per build, the wall
# and CPU time of the compiler and the size of the binary (as linked and stripped). The marginal
# cost of one more configuration is (all - 1) / (9 - 1).
#
#   bench/compile/run.sh            # from the repository root; CXX, CXXFLAGS override the compiler
#
# The flags are those of the project's Release build of the examples (-O3 -DNDEBUG, -march=native,
# OpenMP). Wall time depends on what else the machine runs; CPU time (user + sys) much less so.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cxx="${CXX:-g++}"
flags=(${CXXFLAGS:--std=c++20 -O3 -DNDEBUG -march=native -fopenmp})
eigen="${EIGEN_INCLUDE:-/usr/include/eigen3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

printf '| configurations | trainer instantiations | compile wall (s) | compile CPU (s) | peak compiler memory (MiB) | binary (KiB) | stripped (KiB) |\n'
printf '|---|---:|---:|---:|---:|---:|---:|\n'
for n in 1 4 all; do
  define=()
  inst=9
  if [[ "$n" != all ]]; then define=(-DTRICKS_ABLATION_CONFIGS="$n"); inst="$n"; fi
  out="$work/ablation_$n"
  /usr/bin/time -f '%e %U %S %M' -o "$work/time_$n" \
    "$cxx" "${flags[@]}" "${define[@]}" -I"$root/include" -isystem "$eigen" \
    "$root/examples/ablation.cpp" -lz -o "$out"
  read -r wall user sys mem_kb < "$work/time_$n"
  strip -o "$out.stripped" "$out"
  size=$(stat -c %s "$out")
  stripped=$(stat -c %s "$out.stripped")
  cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.1f", u + s }')
  printf '| %s | %s | %.1f | %s | %d | %d | %d |\n' "$n" "$inst" "$wall" "$cpu" $((mem_kb / 1024)) $((size / 1024)) $((stripped / 1024))
  echo "$n $inst $wall $cpu $size $stripped" >> "$work/raw"
done

awk 'NR == 1 { w1 = $3; c1 = $4; s1 = $6; i1 = $2 } END {
       d = $2 - i1;
       printf "\nOne more configuration (trainer instantiation): +%.1f s wall, +%.1f s CPU, +%.0f KiB stripped binary\n",
              ($3 - w1) / d, ($4 - c1) / d, ($6 - s1) / d / 1024 }' "$work/raw"
echo "compiler: $("$cxx" --version | head -1); flags: ${flags[*]}; cores: $(nproc); load average at start: $load_before, at end: $(cut -d' ' -f1-3 /proc/loadavg)"
