#!/usr/bin/env bash
# Interleaved throughput comparison of the image-folder data pipeline (read, JPEG decode, augment,
# normalise; no model): tricks (bench_data_pipeline: batch_loader<folder_source<>>) against
# PyTorch's DataLoader with torchvision's ImageFolder and PIL transforms
# (bench/peers/torch_data_pipeline.py), batch 64, 224 px, train (the paper's augmentation) and
# eval (resize 256 + centre crop) modes, with 1 and 2 workers (threads for tricks, processes for
# PyTorch). Each configuration runs tricks, torch, tricks, torch, ... `repeats` times; prints the
# medians and the ratio tricks/torch per core (images/s per worker). A benchmark, not a test.
#   bench/data_compare.sh [repeats=3] [epochs=2] [workers="1 2"]
# The photos (out/bench/photos: 1000 train JPEGs of ~500x375 made from scikit-image's sample
# photographs by bench/make_photo_folder.py) are made when missing. Needs Debian's python3-torch,
# python3-torchvision, python3-pil and python3-skimage. Configures build/ (Release) only when it
# has no CMakeCache.txt yet, and builds only the bench_data_pipeline target.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}; epochs=${2:-2}; worker_counts=${3:-"1 2"}
py=/usr/bin/python3
photos=out/bench/photos
if ! $py -c 'import torch, torchvision, PIL, numpy, skimage' 2>/dev/null; then
  echo "data_compare: needs python3-torch python3-torchvision python3-pil python3-numpy python3-skimage" >&2
  exit 1
fi
if [[ ! -d $photos/train ]]; then
  $py bench/make_photo_folder.py --out "$photos" --train 1000 --val 200 --seed 1
fi
if [[ ! -f build/CMakeCache.txt ]]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build build --target bench_data_pipeline >/dev/null
bin=build/bench/bench_data_pipeline
# The value of key=... in the line starting with $1.
field() {
  awk -v p="$1" -v k="$2" '$1 == p { for (i = 2; i <= NF; ++i) { split($i, kv, "="); if (kv[1] == k) print kv[2] } }'
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A ours theirs
for mode in train eval; do
  flag=(); [[ $mode == eval ]] && flag=(--eval)
  for w in $worker_counts; do
    for ((i = 0; i < reps; ++i)); do
      o=$("$bin" "$photos" --workers "$w" --epochs "$epochs" "${flag[@]}")
      ours[$mode,$w]+="$(field tricks_data images_per_s <<<"$o") "
      p=$($py bench/peers/torch_data_pipeline.py "$photos" --workers "$w" --epochs "$epochs" "${flag[@]}")
      theirs[$mode,$w]+="$(field torch_data images_per_s <<<"$p") "
    done
  done
done
n=$(find "$photos/train" -name '*.jpg' | wc -l)
kb=$(find "$photos/train" -name '*.jpg' -printf '%s\n' | awk '{s += $1} END {printf "%.0f", s / NR / 1000}')
echo "Data pipeline, $n JPEGs (~500x375, mean $kb kB) -> 224x224 float batches of 64, $epochs epochs per run," \
     "$reps interleaved repeats (medians), $(nproc) cores"
echo
echo "| mode  | workers | tricks img/s | tricks per core | torch img/s | torch per core | tricks/torch per core |"
echo "|-------|--------:|-------------:|----------------:|------------:|---------------:|----------------------:|"
for mode in train eval; do
  for w in $worker_counts; do
    # shellcheck disable=SC2086
    a=$(median ${ours[$mode,$w]}); b=$(median ${theirs[$mode,$w]})
    awk -v m="$mode" -v w="$w" -v a="$a" -v b="$b" 'BEGIN {
      printf "| %-5s | %7d | %12.0f | %15.0f | %11.0f | %14.0f | %21.2f |\n", m, w, a, a / w, b, b / w, a / b }'
  done
done
echo
echo "all runs (img/s):"
for mode in train eval; do
  for w in $worker_counts; do
    echo "  $mode workers=$w  tricks: ${ours[$mode,$w]} torch: ${theirs[$mode,$w]}"
  done
done
