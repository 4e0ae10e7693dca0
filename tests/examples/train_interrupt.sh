#!/usr/bin/env bash
# ctest example.train_interrupt: examples/train stopped by SIGINT inside an epoch writes its
# checkpoint, says where it stopped and exits with 130 (128 + SIGINT); the same command with
# --resume then completes the run.
# usage: train_interrupt.sh TRAIN OUT_DIR
set -euo pipefail
set -m  # job control: a background job of a non-interactive shell would otherwise ignore SIGINT
train=$1
out=$2
rm -rf "$out"
mkdir -p "$out"
# 32 steps an epoch on one thread: several seconds, so the signal lands inside epoch 1
args=(--epochs 2 --train-images 2048 --batch 64 --threads 1 --workers 1 --out "$out")
log=$out/interrupted.log

"$train" "${args[@]}" > "$log" 2>&1 &
pid=$!
# The data is loaded before the run's description is printed; training starts right after it.
for _ in $(seq 1200); do
    grep -q "^tricks: recipe" "$log" && break
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.1
done
sleep 2
kill -INT "$pid"
status=0
wait "$pid" || status=$?
cat "$log"
fail() { echo "FAIL: $*"; exit 1; }
[ "$status" -eq 130 ] || fail "exit status $status after SIGINT, expected 130"
# (a process that SIGINT killed before fit() handled it would also show 130: the message proves otherwise)
grep -q "SIGINT: stopped after" "$log" || fail "no 'stopped after' message"
grep -q -- "--resume $out/model.ckpt" "$log" || fail "no resume hint"
[ -f "$out/model.ckpt" ] || fail "no checkpoint $out/model.ckpt"

"$train" "${args[@]}" --quiet --resume "$out/model.ckpt" > "$out/resumed.log" 2>&1 || {
    cat "$out/resumed.log"
    fail "the resumed run failed"
}
cat "$out/resumed.log"
grep -q "^| 2 |" "$out/resumed.log" || fail "the resumed run has no epoch 2"
echo "PASS: interrupted with status 130, resumed to the end"
