#!/usr/bin/env node
'use strict';
// Attend with grouped-query head sharing (8 query heads, 2 KV heads) and a
// causal mask, then Forward through the server's demo-mha module.
//
//   node client/node/examples/attend.js --target 127.0.0.1:50051

const { AttentionClient } = require('..');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  const eq = process.argv.find((a) => a.startsWith(`--${name}=`));
  return eq ? eq.slice(name.length + 3) : fallback;
}

function randn(shape) {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = Math.random() * 2 - 1;
  return { data, shape };
}

async function main() {
  const client = new AttentionClient(arg('target', '127.0.0.1:50051'), { timeoutMs: 30000 });
  try {
    const [B, Hq, Hkv, Lq, Lk, Dk, Dv] = [1, 8, 2, 4, 6, 16, 16];
    const { output, variant, timing } = await client.attend({
      query: randn([B, Hq, Lq, Dk]),
      key: randn([B, Hkv, Lk, Dk]),
      value: randn([B, Hkv, Lk, Dv]),
      causal: true,
    });
    console.log(`attend: variant ${variant}, output [${output.shape}], ` +
      `compute ${timing.computeUs} us, ${timing.flops} FLOPs`);
    console.log(`  first row: ${Array.from(output.data.slice(0, 4), (v) => v.toFixed(4)).join(' ')} ...`);

    const modules = await client.listModules();
    console.log(`modules: ${modules.map((m) => m.name).join(', ')}`);
    const mha = modules.find((m) => m.name === 'demo-mha');
    if (mha) {
      const x = randn([1, 3, mha.config.d_model]);
      const fwd = await client.forward({ module: 'demo-mha', query: x, causal: true });
      console.log(`forward demo-mha: output [${fwd.output.shape}], compute ${fwd.timing.computeUs} us`);
    }
  } catch (err) {
    console.error(`failed: ${err.message}`);
    process.exitCode = 1;
  } finally {
    client.close();
  }
}

main();
