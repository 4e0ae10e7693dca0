#!/usr/bin/env bash
# ctest mpi.*: data-parallel training over real MPI ranks (Open MPI's mpirun; more ranks than cores
# with --oversubscribe). usage: mpi_checks.sh PART MPIEXEC MPI_CHECK TRAIN WORK_DIR (TRAIN: - for checks)
#   PART = checks: tests/tools/mpi_check.cpp's modes (fixed-order sums on 2 and 3 ranks, one step's
#          gradient against the shard-by-shard one on 2 and 4 ranks, and against the one-pass
#          gradient of the global batch with frozen and with synchronised batch norms, a fit that is the same bits for
#          1 and 2 threads per rank and across reruns, refused settings, resume on the world size,
#          a failing rank ending the job with its reason)
#   PART = train: `mpirun -np 2 train` (the main job's model on a slice of Fashion-MNIST) twice, with
#          1 and 2 threads per rank: the same trained weights; the report names the world size
set -euo pipefail
part=$1
mpiexec=$2
check=$3
train=$4
work=$5
rm -rf "$work"
mkdir -p "$work"
# Containers often run as root and forbid the kernel's cross-memory attach: allow the first, use
# shared-memory copies instead of the second. Ranks are not pinned (the tests oversubscribe).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
mpi() { local np=$1; shift; timeout 600 "$mpiexec" -np "$np" --oversubscribe --bind-to none "$@"; }
fail() { echo "FAIL: $*"; exit 1; }

if [ "$part" = checks ]; then
    mpi 2 "$check" sum
    mpi 3 "$check" sum
    mpi 2 "$check" gradient
    mpi 4 "$check" gradient
    mpi 2 "$check" train "$work"
    first=$(cat "$work/weights.hash")
    mpi 2 "$check" train "$work"
    again=$(cat "$work/weights.hash")
    [ "$first" = "$again" ] || fail "a rerun of the 2-rank fit gave weights hash $again, the first run $first"
    echo "ok   a rerun of the 2-rank fit: the same weights (hash $first)"
    mpi 2 "$check" settings
    mpi 2 "$check" resume "$work"
    status=0
    mpi 2 "$check" fail > "$work/fail.log" 2>&1 || status=$?
    cat "$work/fail.log"
    [ "$status" -ne 0 ] || fail "the job with a failing rank exited 0"
    [ "$status" -ne 124 ] || fail "the job with a failing rank hung (killed after 600 s)"
    grep -q "rank 1 of 2: tricks::trainer: training images (synthetic) are 14x14" "$work/fail.log" ||
        fail "the failing rank's reason is not in the output"
    echo "ok   a rank that fails ends the job (status $status) with its reason"
elif [ "$part" = train ]; then
    args=(--epochs 2 --train-images 2048 --steps 8 --batch 64 --quiet)
    mpi 2 "$train" "${args[@]}" --threads 1 --out "$work/t1" > "$work/t1.log" 2>&1 || { cat "$work/t1.log"; fail "mpirun -np 2 train"; }
    mpi 2 "$train" "${args[@]}" --threads 2 --out "$work/t2" > "$work/t2.log" 2>&1 || { cat "$work/t2.log"; fail "mpirun -np 2 train"; }
    cat "$work/t1.log"
    cmp "$work/t1/model.safetensors" "$work/t2/model.safetensors" ||
        fail "2 ranks x 1 thread and 2 ranks x 2 threads trained different weights"
    grep -q "world_size.*2" "$work/t1/report.md" || fail "report.md does not name world_size 2"
    [ "$(grep -c "^test top-1" "$work/t1.log")" = 1 ] || fail "expected one result line (rank 0's)"
    echo "ok   mpirun -np 2 train: the same weights for 1 and 2 threads per rank; the report names world_size 2"
else
    fail "unknown part '$part'"
fi
