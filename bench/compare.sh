#!/usr/bin/env bash
# Interleaved throughput comparison on the same net, batch and threads: tricks (bench_throughput),
# PyTorch (bench/peers/torch_bench.py) and dlib (bench/peers/dlib_bench.cpp, when dlib is
# installed), each run once per repeat in turn; prints medians and the ratios tricks/peer.
# A benchmark, not a test.
#   bench/compare.sh [repeats=5] [threads=2] [batch=128] [width=16]
# Inference is each side's faster mode: tricks in eval mode through models::inference_pool (the
# same bits as model.forward, which the table also shows); PyTorch the faster of eager (eval,
# no_grad) and frozen (trace + freeze + optimize_for_inference); dlib the faster of its affine
# eval net and the same net after fuse_layers. Also prints each side's peak resident memory (the
# whole process, as the benchmark runs it: PyTorch's includes the frozen copy, dlib's its eval
# copy) and tricks' training GFLOP/s against the machine's FP32 peak (measured by bench_peak_flops,
# and computed from the thread count, clock and vector width /proc/cpuinfo reports).
# dlib trains at ~100 img/s here, so it runs 3 timed iterations per repeat (the others 8).
# tricks runs twice per repeat: with its default convolutions (Winograd for the 3x3 stride-1 layers)
# and with --conv direct (the direct / im2col kernels only), so the table shows what Winograd adds.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-5}; threads=${2:-2}; batch=${3:-128}; width=${4:-16}
scripts/bootstrap.sh --peers
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target bench_throughput bench_peak_flops >/dev/null
dlib=0
if grep -q '^dlib_DIR:PATH=' build/CMakeCache.txt && ! grep -q '^dlib_DIR:PATH=.*NOTFOUND' build/CMakeCache.txt; then
  dlib=1
  cmake --build build -j "$(nproc)" --target bench_dlib >/dev/null
else
  echo "dlib not found by CMake: the dlib peer is skipped" >&2
fi
# Debian's OpenBLAS may not recognise an AVX-512 CPU and fall back to its Prescott kernels (5x slower
# SGEMM): anything linked to OpenBLAS (dlib, parts of PyTorch) gets the SkylakeX kernels unless the
# caller chose a core. tricks does not use OpenBLAS.
if [[ -z "${OPENBLAS_CORETYPE:-}" ]] && grep -qw avx512f /proc/cpuinfo; then
  export OPENBLAS_CORETYPE=SkylakeX
fi
ours_train=(); ours_infer=(); ours_layers=(); ours_rss=(); ours_gflops=(); direct_train=(); direct_infer=()
torch_train=(); torch_eager=(); torch_frozen=(); torch_rss=()
dlib_train=(); dlib_affine=(); dlib_fused=(); dlib_rss=()
# Field $3 of the line whose first two fields are "<side> <name>".
field() { awk -v k="$2" '$2 == k {print $3}' <<<"$1"; }
# Peak resident memory of each whole process (GNU time's %M, kB), as the benchmark runs it.
peak() { awk '/^maxrss_kb/ {print $2}' <<<"$1"; }
for ((i = 0; i < reps; ++i)); do
  o=$( { OMP_NUM_THREADS=$threads /usr/bin/time -f 'maxrss_kb %M' build/bench/bench_throughput --batch "$batch" \
         --threads "$threads" --width "$width" --iters 8; } 2>&1)
  ours_train+=("$(awk '/train images\/s/ {print $3}' <<<"$o")")
  ours_infer+=("$(awk '/infer images\/s/ {print $3}' <<<"$o")")
  ours_layers+=("$(awk '/infer layers/ {print $3}' <<<"$o")")
  ours_gflops+=("$(awk '/train GFLOP\/s/ {print $3}' <<<"$o")")
  ours_rss+=("$(peak "$o")")
  o=$(OMP_NUM_THREADS=$threads build/bench/bench_throughput --batch "$batch" --threads "$threads" --width "$width" \
        --iters 8 --conv direct)
  direct_train+=("$(awk '/train images\/s/ {print $3}' <<<"$o")")
  direct_infer+=("$(awk '/infer images\/s/ {print $3}' <<<"$o")")
  p=$( { /usr/bin/time -f 'maxrss_kb %M' /usr/bin/python3 bench/peers/torch_bench.py --threads "$threads" --batch "$batch" \
         --width "$width" --iters 8; } 2>&1)
  torch_train+=("$(field "$p" train_images_per_s)")
  torch_eager+=("$(field "$p" infer_images_per_s)")
  torch_frozen+=("$(field "$p" infer_frozen_images_per_s)")
  torch_rss+=("$(peak "$p")")
  if ((dlib)); then
    d=$( { OPENBLAS_NUM_THREADS=$threads /usr/bin/time -f 'maxrss_kb %M' build/bench/bench_dlib --threads "$threads" \
           --batch "$batch" --width "$width" --iters 3; } 2>&1)
    dlib_train+=("$(field "$d" train_images_per_s)")
    dlib_affine+=("$(field "$d" infer_images_per_s)")
    dlib_fused+=("$(field "$d" infer_fused_images_per_s)")
    dlib_rss+=("$(peak "$d")")
  fi
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
fmax() { awk -v a="$1" -v b="$2" 'BEGIN {print (a > b) ? a : b}'; }
ot=$(median "${ours_train[@]}"); oi=$(median "${ours_infer[@]}"); orss=$(median "${ours_rss[@]}")
tt=$(median "${torch_train[@]}"); te=$(median "${torch_eager[@]}"); tf=$(median "${torch_frozen[@]}")
ti=$(fmax "$te" "$tf"); trss=$(median "${torch_rss[@]}")
echo "cifar_resnet20-D width $width, batch $batch, $threads threads, $reps interleaved repeats (medians)" \
     "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
row() { printf '%-14s %12.0f %12.0f %12.0f   %s\n' "$1" "$2" "$3" "$(($4 / 1024))" "$5"; }
ratio() { awk -v n="$1" -v a="$2" -v b="$3" -v c="$4" -v d="$5" -v e="$6" -v f="$7" \
            'BEGIN {printf "%-14s %12.2f %12.2f %12.2f\n", n, a / b, c / d, e / f}'; }
printf '%-14s %12s %12s %12s   %s\n' "" "train img/s" "infer img/s" "peak RSS MB" "inference modes (img/s)"
row tricks "$ot" "$oi" "$orss" "eval, inference_pool (a model copy per thread, measured sub-batch size)"
printf '%-14s %12s %12.0f %12s   %s\n' "tricks layers" "" "$(median "${ours_layers[@]}")" "" \
  "eval, model.forward (every layer split over the threads)"
printf '%-14s %12.0f %12.0f %12s   %s\n' "tricks direct" "$(median "${direct_train[@]}")" "$(median "${direct_infer[@]}")" "" \
  "eval, --conv direct (no Winograd)"
row torch "$tt" "$ti" "$trss" "$(printf 'eager %.0f, frozen %.0f' "$te" "$tf")"
if ((dlib)); then
  dt=$(median "${dlib_train[@]}"); da=$(median "${dlib_affine[@]}"); df=$(median "${dlib_fused[@]}")
  di=$(fmax "$da" "$df"); drss=$(median "${dlib_rss[@]}")
  row dlib "$dt" "$di" "$drss" "$(printf 'affine %.0f, fused %.0f' "$da" "$df")"
fi
ratio tricks/torch "$ot" "$tt" "$oi" "$ti" "$orss" "$trss"
if ((dlib)); then ratio tricks/dlib "$ot" "$dt" "$oi" "$di" "$orss" "$drss"; fi
echo "(ratios: throughput above 1 and memory below 1 favour tricks; each peer's infer img/s is its faster mode)"
og=$(median "${ours_gflops[@]}")
# The machine's FP32 peak, measured (independent FMA chains, no memory traffic, $threads threads:
# bench/peak_flops.cpp), and as computed from what /proc/cpuinfo reports (threads x nominal clock x
# vector width x 2 FMA units x 2 FLOP), which over- or understates it when the CPU boosts above its
# nominal clock or executes 512-bit FMAs in two halves (AMD Zen 4).
measured=$(OMP_NUM_THREADS=$threads build/bench/bench_peak_flops --threads "$threads" --seconds 2 | awk '$1 == "peak_gflops" {print $3}')
mhz=$(awk -F: '/^cpu MHz/ {print $2; exit}' /proc/cpuinfo)
lanes=8; grep -qw avx512f /proc/cpuinfo && lanes=16
awk -v g="$og" -v t="$threads" -v m="$mhz" -v l="$lanes" -v p="$measured" 'BEGIN {
  c = t * m / 1000 * l * 2 * 2
  printf "tricks training: %.1f GFLOP/s = %.0f%% of the measured FP32 peak %.0f GFLOP/s (%d threads, bench_peak_flops)\n", g, 100 * g / p, p, t
  printf "                 (direct-equivalent: 2 x the convolutions MACs x 3 passes per second; Winograd does\n"
  printf "                 2.25-4x fewer multiplies in the 3x3 stride-1 layers, so this can exceed the peak)\n"
  printf "                 (%.0f%% of %.0f GFLOP/s computed from /proc/cpuinfo: %d threads x %.2f GHz x %d lanes x 2 FMA units x 2)\n", 100 * g / c, c, t, m / 1000, l }'
