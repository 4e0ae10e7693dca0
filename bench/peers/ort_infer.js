// ONNX Runtime's CPU inference throughput for an .onnx file (npm's onnxruntime-node): intra-op
// threads as given, one inter-op thread, sequential execution, graph optimisation "all"; random
// float32 input [batch, channels, size, size]; images/s from the median of repeated runs after
// warm-up. bench/onnx_compare.sh runs it against tricks' bench_infer. A benchmark, not a test.
//   node bench/peers/ort_infer.js MODEL.onnx [--batch 16] [--size 224] [--channels 3] [--threads 2]
//        [--iters 10] [--warmup 2]
// onnxruntime-node is looked up in $TRICKS_ORT_MODULES, else in the repository's .deps/ort/node_modules.
'use strict';
const path = require('path');

async function main() {
  const args = process.argv.slice(2);
  const o = {batch: 16, size: 224, channels: 3, threads: 2, iters: 10, warmup: 2};
  let model = null;
  for (let i = 0; i < args.length; ++i) {
    const k = args[i].replace(/^--/, '');
    if (args[i].startsWith('--') && k in o) o[k] = Number(args[++i]);
    else if (!model) model = args[i];
    else throw new Error(`unexpected argument ${args[i]}`);
  }
  if (!model || Object.values(o).some((v) => !(v >= 0))) {
    console.error('usage: ort_infer.js MODEL.onnx [--batch N] [--size N] [--channels N] [--threads N] [--iters N] [--warmup N]');
    process.exit(2);
  }
  const modules = process.env.TRICKS_ORT_MODULES || path.join(__dirname, '..', '..', '.deps', 'ort', 'node_modules');
  const ort = require(path.join(path.resolve(modules), 'onnxruntime-node'));
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: o.threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
  });
  const shape = [o.batch, o.channels, o.size, o.size];
  const x = new Float32Array(shape.reduce((a, b) => a * b, 1));
  let s = 12345;
  for (let i = 0; i < x.length; ++i) {  // deterministic pseudo-random values in [-1, 1)
    s = (s * 1103515245 + 12345) % 2147483648;
    x[i] = s / 1073741824 - 1;
  }
  const feeds = {[session.inputNames[0]]: new ort.Tensor('float32', x, shape)};
  for (let i = 0; i < o.warmup; ++i) await session.run(feeds);
  const times = [];
  for (let i = 0; i < o.iters; ++i) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  times.sort((a, b) => a - b);
  const med = times[Math.floor(times.length / 2)];
  console.log(`onnxruntime-node ${ort.env.versions ? ort.env.versions.common : ''}, ${path.basename(model)}, ` +
              `[${shape}], ${o.threads} threads, ${(med * 1e3).toFixed(1)} ms per batch (median of ${o.iters})`);
  console.log(`infer_images_per_s ${(o.batch / med).toFixed(1)}`);
}

main().catch((e) => {
  console.error(`ort_infer.js: ${e.message || e}`);
  process.exit(1);
});
