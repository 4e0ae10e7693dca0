// Runs ONNX models in ONNX Runtime (npm's onnxruntime-node, CPU) on raw float32 input and writes
// the first output as raw float32: the ORT side of tests/examples/onnx_parity.sh.
//   node tests/tools/ort_run.js [--threads N] MODEL.onnx:INPUT.f32:N,C,H,W:OUTPUT.f32 ...
// onnxruntime-node is looked up in $TRICKS_ORT_MODULES (a node_modules folder), else in the
// repository's .deps/ort/node_modules (scripts/bootstrap.sh --peers installs it there).
'use strict';
const fs = require('fs');
const path = require('path');

function loadOrt() {
  const modules = process.env.TRICKS_ORT_MODULES || path.join(__dirname, '..', '..', '.deps', 'ort', 'node_modules');
  return require(path.join(path.resolve(modules), 'onnxruntime-node'));
}

async function main() {
  const args = process.argv.slice(2);
  let threads = 1;
  const jobs = [];
  for (let i = 0; i < args.length; ++i) {
    if (args[i] === '--threads') threads = Number(args[++i]);
    else jobs.push(args[i]);
  }
  if (!jobs.length || !(threads >= 1)) {
    console.error('usage: ort_run.js [--threads N] MODEL.onnx:INPUT.f32:N,C,H,W:OUTPUT.f32 ...');
    process.exit(2);
  }
  const ort = loadOrt();
  for (const job of jobs) {
    const [model, input, dims, output] = job.split(':');
    const shape = dims.split(',').map(Number);
    const bytes = fs.readFileSync(input);
    const data = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    const want = shape.reduce((a, b) => a * b, 1);
    if (data.length !== want) throw new Error(`${input}: ${data.length} floats, expected ${want} for [${shape}]`);
    const session = await ort.InferenceSession.create(model, {
      intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
    });
    const feeds = {[session.inputNames[0]]: new ort.Tensor('float32', Float32Array.from(data), shape)};
    const result = await session.run(feeds);
    const y = result[session.outputNames[0]];
    fs.writeFileSync(output, Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength));
    console.log(`${path.basename(model)}: ${session.inputNames[0]} [${shape}] -> ${session.outputNames[0]} [${y.dims}]`);
    if (session.release) await session.release();
  }
}

main().catch((e) => {
  console.error(`ort_run.js: ${e.message || e}`);
  process.exit(1);
});
