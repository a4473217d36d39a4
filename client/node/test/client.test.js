'use strict';
// End-to-end tests of the Node client against the real server.
//
//   cd client/node && npm test
//
// The server binary is $ATTENTION_SERVER (default build/bin/attention_server,
// relative to the repository root), started on a free loopback port and
// stopped with SIGTERM at the end.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const {
  AttentionClient, AttentionError, status,
  float32ToFloat16Bits, float16BitsToFloat32, float32ToBfloat16Bits, bfloat16BitsToFloat32,
  roundToFloat16,
} = require('..');

const REPO = path.resolve(__dirname, '..', '..', '..');
let SERVER = process.env.ATTENTION_SERVER || path.join(REPO, 'build', 'bin', 'attention_server');
if (!path.isAbsolute(SERVER)) SERVER = path.join(REPO, SERVER);

let server;
let serverLog = '';
let client;

function startServer() {
  return new Promise((resolve, reject) => {
    if (!fs.existsSync(SERVER)) {
      reject(new Error(`no server binary at ${SERVER} (set ATTENTION_SERVER)`));
      return;
    }
    server = spawn(SERVER, ['--listen=127.0.0.1:0', '--log_calls=false'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const timer = setTimeout(() => reject(new Error(`server printed no port in 30 s:\n${serverLog}`)), 30000);
    const onData = (chunk) => {
      serverLog += chunk.toString();
      const m = /\(port (\d+)\)/.exec(serverLog);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    server.stdout.on('data', onData);
    server.stderr.on('data', onData);
    server.on('error', (e) => { clearTimeout(timer); reject(e); });
    server.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${serverLog}`));
    });
  });
}

function stopServer() {
  return new Promise((resolve) => {
    if (!server || server.exitCode !== null || server.signalCode !== null) {
      resolve();
      return;
    }
    const killTimer = setTimeout(() => server.kill('SIGKILL'), 35000);
    server.on('exit', (code, signal) => {
      clearTimeout(killTimer);
      resolve({ code, signal });
    });
    server.kill('SIGTERM');
  });
}

before(async () => {
  const port = await startServer();
  client = new AttentionClient(`127.0.0.1:${port}`, { timeoutMs: 60000 });
  await client.waitForReady(15000);
});

after(async () => {
  if (client) client.close();
  const result = await stopServer();
  if (result) assert.equal(result.code, 0, `server exit: ${JSON.stringify(result)}\n${serverLog}`);
});

// ---------------------------------------------------------------------------
// Helpers and JS references

// Deterministic uniform(-1, 1) numbers (mulberry32).
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

function randTensor(rand, shape, scale = 1) {
  const n = shape.reduce((a, b) => a * b, 1);
  return { data: Float32Array.from({ length: n }, () => rand() * scale), shape };
}

function assertClose(actual, expected, atol, what = 'tensor') {
  assert.deepEqual(actual.shape, expected.shape, `${what}: shape`);
  assert.equal(actual.data.length, expected.data.length);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < expected.data.length; i++) {
    const d = Math.abs(actual.data[i] - expected.data[i]);
    if (!(d <= worst)) { worst = d; at = i; }
  }
  assert.ok(worst <= atol, `${what}: max |diff| ${worst} at ${at} > ${atol}`);
}

// Attention over projected heads: q [B,Hq,Lq,Dk], k [B,Hkv,Lk,Dk],
// v [B,Hkv,Lk,Dv]; query head h reads kv head floor(h / (Hq / Hkv));
// masked scores are -1e9; causal is bottom-right aligned.
function attentionRef(q, k, v, { causal = false, scale } = {}) {
  const [B, Hq, Lq, Dk] = q.shape;
  const [, Hkv, Lk] = k.shape;
  const Dv = v.shape[3];
  const group = Hq / Hkv;
  const s = scale ?? 1 / Math.sqrt(Dk);
  const out = new Float64Array(B * Hq * Lq * Dv);
  const weights = new Float64Array(B * Hq * Lq * Lk);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const hk = Math.floor(h / group);
      for (let i = 0; i < Lq; i++) {
        const scores = new Float64Array(Lk);
        for (let j = 0; j < Lk; j++) {
          let dot = 0;
          for (let d = 0; d < Dk; d++) {
            dot += q.data[((b * Hq + h) * Lq + i) * Dk + d] * k.data[((b * Hkv + hk) * Lk + j) * Dk + d];
          }
          scores[j] = causal && j > i + (Lk - Lq) ? -1e9 : dot * s;
        }
        const max = Math.max(...scores);
        let sum = 0;
        for (let j = 0; j < Lk; j++) { scores[j] = Math.exp(scores[j] - max); sum += scores[j]; }
        for (let j = 0; j < Lk; j++) {
          const p = scores[j] / sum;
          weights[((b * Hq + h) * Lq + i) * Lk + j] = p;
          for (let d = 0; d < Dv; d++) {
            out[((b * Hq + h) * Lq + i) * Dv + d] += p * v.data[((b * Hkv + hk) * Lk + j) * Dv + d];
          }
        }
      }
    }
  }
  return { output: { data: out, shape: [B, Hq, Lq, Dv] }, weights: { data: weights, shape: [B, Hq, Lq, Lk] } };
}

// Attention with a sliding window W (query i at p = i + Lk - Lq sees keys
// p - W + 1 .. p), a logit soft-cap c (s -> c·tanh(s / c)) and sinks [Hq]
// (one logit per head in each row's denominator); also each row's
// log-sum-exp, [B, Hq, Lq].
function termsRef(q, k, v, { scale, window = 0, softcap = 0, sinks } = {}) {
  const [B, Hq, Lq, Dk] = q.shape;
  const [, Hkv, Lk] = k.shape;
  const Dv = v.shape[3];
  const group = Hq / Hkv;
  const sc = scale ?? 1 / Math.sqrt(Dk);
  const out = new Float64Array(B * Hq * Lq * Dv);
  const lse = new Float64Array(B * Hq * Lq);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const hk = Math.floor(h / group);
      for (let i = 0; i < Lq; i++) {
        const p = i + Lk - Lq;
        const seen = [];
        for (let j = 0; j < Lk; j++) {
          if (window && (j < p - window + 1 || j > p)) continue;
          let dot = 0;
          for (let d = 0; d < Dk; d++) {
            dot += q.data[((b * Hq + h) * Lq + i) * Dk + d] * k.data[((b * Hkv + hk) * Lk + j) * Dk + d];
          }
          let s = dot * sc;
          if (softcap) s = softcap * Math.tanh(s / softcap);
          seen.push([j, s]);
        }
        const sink = sinks ? sinks[h] : -Infinity;
        const max = Math.max(sink, ...seen.map(([, s]) => s));
        let sum = Math.exp(sink - max);
        for (const e of seen) { e[1] = Math.exp(e[1] - max); sum += e[1]; }
        lse[(b * Hq + h) * Lq + i] = Math.log(sum) + max;
        for (const [j, e] of seen) {
          for (let d = 0; d < Dv; d++) {
            out[((b * Hq + h) * Lq + i) * Dv + d] += (e / sum) * v.data[((b * Hkv + hk) * Lk + j) * Dv + d];
          }
        }
      }
    }
  }
  return { output: { data: out, shape: [B, Hq, Lq, Dv] }, lse: { data: lse, shape: [B, Hq, Lq] } };
}

// y = x W^T + b over the last dimension; x {data, shape [..., in]}, w [out, in].
function linear(x, w, b) {
  const [out, inF] = w.shape;
  const rows = x.data.length / inF;
  const y = new Float64Array(rows * out);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < out; o++) {
      let acc = b ? b.data[o] : 0;
      for (let i = 0; i < inF; i++) acc += x.data[r * inF + i] * w.data[o * inF + i];
      y[r * out + o] = acc;
    }
  }
  return { data: y, shape: [...x.shape.slice(0, -1), out] };
}

// [B, L, H*dh] -> [B, H, L, dh] (view(B, L, H, dh).transpose(1, 2)) and back.
function splitHeads(x, H) {
  const [B, L, D] = x.shape;
  const dh = D / H;
  const y = new Float64Array(x.data.length);
  for (let b = 0; b < B; b++) for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) for (let d = 0; d < dh; d++) {
    y[((b * H + h) * L + l) * dh + d] = x.data[((b * L + l) * H + h) * dh + d];
  }
  return { data: y, shape: [B, H, L, dh] };
}
function mergeHeads(x) {
  const [B, H, L, dh] = x.shape;
  const y = new Float64Array(x.data.length);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let l = 0; l < L; l++) for (let d = 0; d < dh; d++) {
    y[((b * L + l) * H + h) * dh + d] = x.data[((b * H + h) * L + l) * dh + d];
  }
  return { data: y, shape: [B, L, H * dh] };
}

// The multi-head attention layer on a PyTorch-style state_dict.
function mhaRef(sd, x, heads, { causal = false } = {}) {
  const q = splitHeads(linear(x, sd['W_q.weight'], sd['W_q.bias']), heads);
  const k = splitHeads(linear(x, sd['W_k.weight'], sd['W_k.bias']), heads);
  const v = splitHeads(linear(x, sd['W_v.weight'], sd['W_v.bias']), heads);
  const { output } = attentionRef(q, k, v, { causal });
  return linear(mergeHeads(output), sd['W_o.weight'], sd['W_o.bias']);
}

function mhaStateDict(rand, dModel) {
  const bound = 1 / Math.sqrt(dModel); // nn.Linear's init range
  const sd = {};
  for (const name of ['W_q', 'W_k', 'W_v', 'W_o']) {
    sd[`${name}.weight`] = randTensor(rand, [dModel, dModel], bound);
    sd[`${name}.bias`] = randTensor(rand, [dModel], bound);
  }
  return sd;
}

function sliceTokens(x, from, to) {
  const [B, L, D] = x.shape;
  const T = to - from;
  const data = new Float32Array(B * T * D);
  for (let b = 0; b < B; b++) data.set(x.data.subarray((b * L + from) * D, (b * L + to) * D), b * T * D);
  return { data, shape: [B, T, D] };
}

function concatTokens(parts) {
  const [B, , D] = parts[0].shape;
  const L = parts.reduce((n, p) => n + p.shape[1], 0);
  const data = new Float32Array(B * L * D);
  let off = 0;
  for (const p of parts) {
    const T = p.shape[1];
    for (let b = 0; b < B; b++) data.set(p.data.subarray(b * T * D, (b + 1) * T * D), (b * L + off) * D);
    off += T;
  }
  return { data, shape: [B, L, D] };
}

// ---------------------------------------------------------------------------
// Tests

test('attend: GQA (Hq=8, Hkv=2) with a causal mask matches the JS reference', async () => {
  const rand = rng(1);
  const [B, Hq, Hkv, Lq, Lk, Dk, Dv] = [2, 8, 2, 3, 5, 8, 6];
  const query = randTensor(rand, [B, Hq, Lq, Dk]);
  const key = randTensor(rand, [B, Hkv, Lk, Dk]);
  const value = randTensor(rand, [B, Hkv, Lk, Dv]);
  const r = await client.attend({ query, key, value, causal: true, returnWeights: true });
  const ref = attentionRef(query, key, value, { causal: true });
  assert.equal(r.variant, 'gqa');
  assert.ok(r.output.data instanceof Float32Array);
  assert.equal(r.output.dtype, 'float32');
  assertClose(r.output, ref.output, 1e-5, 'output');
  assertClose(r.weights, ref.weights, 1e-5, 'weights');
  assert.ok(r.timing.flops > 0);
});

test('attend: computeDtype bfloat16 stays within 1e-2 of float32, and is not float32', async () => {
  const rand = rng(5);
  const query = randTensor(rand, [1, 4, 6, 16]);
  const key = randTensor(rand, [1, 2, 9, 16]);
  const value = randTensor(rand, [1, 2, 9, 16]);
  const ref = attentionRef(query, key, value, { causal: true });
  const r = await client.attend({ query, key, value, causal: true, computeDtype: 'bfloat16' });
  assertClose(r.output, ref.output, 1e-2, 'bf16 output');
  let differs = false;
  for (let i = 0; i < ref.output.data.length; i++) {
    if (Math.abs(r.output.data[i] - ref.output.data[i]) > 1e-6) differs = true;
  }
  assert.ok(differs, 'bf16 rounding had no effect');
});

test('attend: FLOAT16 on the wire', async () => {
  const rand = rng(2);
  const query = randTensor(rand, [1, 4, 4, 8]);
  const key = randTensor(rand, [1, 1, 4, 8]);
  const value = randTensor(rand, [1, 1, 4, 8]);
  const r = await client.attend({ query, key, value, causal: true, dtype: 'float16' });
  assert.equal(r.variant, 'mqa');
  assert.equal(r.output.dtype, 'float16');
  const round = (t) => ({ data: roundToFloat16(t.data), shape: t.shape });
  assertClose(r.output, attentionRef(round(query), round(key), round(value), { causal: true }).output, 1e-2);
});

test('attend: slidingWindow, logitSoftcap, sinks and returnLse match the JS reference', async () => {
  const rand = rng(11);
  const [B, Hq, Hkv, Lq, Lk, D] = [2, 4, 2, 3, 7, 8];
  const query = randTensor(rand, [B, Hq, Lq, D], 3);
  const key = randTensor(rand, [B, Hkv, Lk, D]);
  const value = randTensor(rand, [B, Hkv, Lk, D]);
  const sinks = [0.5, -1, 2, 0];
  const r = await client.attend({
    query, key, value, scale: 0.5, slidingWindow: 3, logitSoftcap: 1.5, sinks, returnLse: true,
  });
  const ref = termsRef(query, key, value, { scale: 0.5, window: 3, softcap: 1.5, sinks });
  assert.equal(r.variant, 'gqa');
  assertClose(r.output, ref.output, 1e-5, 'output');
  assert.equal(r.lse.dtype, 'float32');
  assertClose(r.lse, ref.lse, 1e-5, 'lse');
  // sinks as {data, shape} too; no lse unless asked.
  const r2 = await client.attend({ query, key, value, sinks: { data: Float32Array.from(sinks), shape: [Hq] } });
  assertClose(r2.output, termsRef(query, key, value, { sinks }).output, 1e-5, 'sinks only');
  assert.equal(r2.lse, null);
  await assert.rejects(client.attend({ query, key, value, slidingWindow: -1 }),
    (err) => err.code === status.INVALID_ARGUMENT && /mask\.sliding_window/.test(err.details));
  await assert.rejects(client.attend({ query, key, value, sinks: [1, 2] }),
    (err) => err.code === status.INVALID_ARGUMENT && /sinks/.test(err.details));
});

test('loadModule: sliding_window, logit_softcap and attention_sinks in the config', async () => {
  const rand = rng(12);
  const dModel = 16;
  const heads = 2;
  const sd = mhaStateDict(rand, dModel);
  sd.sinks = randTensor(rand, [heads]);
  const config = { d_model: dModel, mha: { num_heads: heads }, sliding_window: 2, logit_softcap: 3, attention_sinks: true };
  const info = await client.loadModule({ name: 'js-swa', config, stateDict: sd });
  assert.equal(info.config.sliding_window, 2);
  assert.equal(info.config.logit_softcap, 3);
  assert.equal(info.config.attention_sinks, true);
  const x = randTensor(rand, [1, 4, dModel]);
  const q = splitHeads(linear(x, sd['W_q.weight'], sd['W_q.bias']), heads);
  const k = splitHeads(linear(x, sd['W_k.weight'], sd['W_k.bias']), heads);
  const v = splitHeads(linear(x, sd['W_v.weight'], sd['W_v.bias']), heads);
  const want = (window) => linear(mergeHeads(termsRef(q, k, v, { window, softcap: 3, sinks: sd.sinks.data }).output),
    sd['W_o.weight'], sd['W_o.bias']);
  assertClose((await client.forward({ module: 'js-swa', query: x })).output, want(2), 1e-4, 'forward');
  assertClose((await client.forward({ module: 'js-swa', query: x, slidingWindow: 1 })).output, want(1), 1e-4,
    'narrower mask window');
  const mla = { d_model: 16, mla: { num_heads: 2, kv_lora_rank: 8, qk_nope_head_dim: 4, qk_rope_head_dim: 4, v_head_dim: 4, rope_interleave: true } };
  const info2 = await client.loadModule({ name: 'js-mla-il', config: mla, seed: 1 });
  assert.equal(info2.config.mla.rope_interleave, true);
  await client.unloadModule('js-mla-il');
  await client.unloadModule('js-swa');
});

test('loadModule + forward: MHA (d_model 16, 2 heads) with JS-built weights', async () => {
  const rand = rng(3);
  const dModel = 16;
  const heads = 2;
  const sd = mhaStateDict(rand, dModel);
  const info = await client.loadModule({
    name: 'js-mha', config: { d_model: dModel, mha: { num_heads: heads } }, stateDict: sd,
  });
  assert.equal(info.name, 'js-mha');
  assert.deepEqual(info.config, {
    d_model: dModel, mha: { num_heads: heads },
    kv_cache_dtype: 'DTYPE_UNSPECIFIED', compute_dtype: 'DTYPE_UNSPECIFIED',
    qk_norm: false, norm_eps: 0, scale: 0,
    sliding_window: 0, logit_softcap: 0, attention_sinks: false, head_dim: 0,
  });
  assert.equal(info.parameterCount, 4 * (dModel * dModel + dModel));
  assert.equal(info.kvCacheBytesPerToken, 2 * dModel * 4);
  assert.ok((await client.listModules()).some((m) => m.name === 'js-mha'));

  const x = randTensor(rand, [2, 5, dModel]);
  const causal = await client.forward({ module: 'js-mha', query: x, causal: true });
  assertClose(causal.output, mhaRef(sd, x, heads, { causal: true }), 1e-4, 'causal forward');
  const full = await client.forward({ module: 'js-mha', query: x });
  assertClose(full.output, mhaRef(sd, x, heads), 1e-4, 'non-causal forward');

  // Decode in chunks [3, 1, 1] equals one causal Forward.
  const sizes = [3, 1, 1];
  const chunks = [];
  let at = 0;
  for (const n of sizes) { chunks.push(sliceTokens(x, at, at + n)); at += n; }
  const outputs = [];
  const cached = [];
  for await (const step of client.decode('js-mha', chunks)) {
    outputs.push(step.output);
    cached.push(step.cachedTokens);
    assert.equal(step.kvCacheBytes, step.cachedTokens * 2 * info.kvCacheBytesPerToken);
  }
  assert.deepEqual(cached, [3, 4, 5]);
  assertClose(concatTokens(outputs), causal.output, 1e-4, 'decode');

  await client.unloadModule('js-mha');
  await assert.rejects(client.forward({ module: 'js-mha', query: x }),
    (err) => err.code === status.NOT_FOUND && /js-mha/.test(err.details));
});

test('loadModule with weightsPrefix: one layer of Hugging Face-named tensors', async () => {
  const rand = rng(13);
  const dModel = 16;
  const sd = mhaStateDict(rand, dModel);
  const hf = {};
  for (const [k, t] of Object.entries(sd)) {  // W_q.weight -> layers.1.q_proj.weight
    const [proj, part] = k.split('.');
    hf[`layers.1.${proj.slice(-1)}_proj.${part}`] = t;
    hf[`layers.0.${proj.slice(-1)}_proj.${part}`] = { data: t.data.map((v) => v + 1), shape: t.shape };
  }
  await client.loadModule({
    name: 'js-hf', config: { d_model: dModel, mha: { num_heads: 2 } }, stateDict: hf,
    weightsPrefix: 'layers.1.',
  });
  const x = randTensor(rand, [1, 4, dModel]);
  const r = await client.forward({ module: 'js-hf', query: x, causal: true });
  assertClose(r.output, mhaRef(sd, x, 2, { causal: true }), 1e-4, 'prefixed layer');
  await client.unloadModule('js-hf');
  await assert.rejects(client.loadModule({
    name: 'js-file', config: { d_model: dModel, mha: { num_heads: 2 } }, file: 'm.safetensors',
  }), (err) => err.code === status.FAILED_PRECONDITION && /--model_dir/.test(err.details));
});

test('a bad request rejects with INVALID_ARGUMENT (code 3) naming Hkv', async () => {
  const rand = rng(4);
  await assert.rejects(
    client.attend({
      query: randTensor(rand, [1, 6, 2, 4]),
      key: randTensor(rand, [1, 4, 2, 4]),
      value: randTensor(rand, [1, 4, 2, 4]),
    }),
    (err) => {
      assert.ok(err instanceof AttentionError);
      assert.equal(err.code, 3);
      assert.equal(err.code, status.INVALID_ARGUMENT);
      assert.match(err.details, /Hkv/);
      return true;
    },
  );
});

test('unknown module: NOT_FOUND from forward and decode', async () => {
  const x = { data: new Float32Array(8), shape: [1, 1, 8] };
  await assert.rejects(client.forward({ module: 'no-such', query: x }), (err) => err.code === status.NOT_FOUND);
  await assert.rejects(async () => {
    for await (const step of client.decode('no-such', [x])) assert.fail(`unexpected ${step}`);
  }, (err) => err.code === status.NOT_FOUND);
});

test('serverInfo, estimate and health', async () => {
  const info = await client.serverInfo();
  assert.ok(info.version);
  assert.deepEqual([...info.variants].sort(), ['gqa', 'mha', 'mla', 'mqa', 'self_attention']);
  const est = await client.estimate({ config: { d_model: 16, mha: { num_heads: 2 } }, batch: 2, seqLen: 4 });
  assert.equal(est.kvCacheBytesPerToken, 2 * 16 * 4);
  assert.equal(est.kvCacheBytes, 2 * 4 * est.kvCacheBytesPerToken);
  assert.equal(await client.health(), 'SERVING');
});

test('float16 / bfloat16 helpers round to nearest, ties to even', () => {
  assert.equal(float32ToFloat16Bits(1), 0x3c00);
  assert.equal(float32ToFloat16Bits(1 + 2 ** -11), 0x3c00); // tie -> even
  assert.equal(float32ToFloat16Bits(1 + 3 * 2 ** -11), 0x3c02); // tie -> even (up)
  assert.equal(float32ToFloat16Bits(65520), 0x7c00); // rounds to infinity
  assert.equal(float32ToFloat16Bits(2 ** -24), 0x0001); // smallest subnormal
  assert.equal(float16BitsToFloat32(0xc000), -2);
  assert.equal(float32ToBfloat16Bits(1), 0x3f80);
  assert.equal(float32ToBfloat16Bits(1 + 2 ** -8), 0x3f80); // tie -> even
  assert.equal(float32ToBfloat16Bits(1 + 3 * 2 ** -8), 0x3f82);
  assert.equal(bfloat16BitsToFloat32(0xc020), -2.5);
  assert.ok(Number.isNaN(bfloat16BitsToFloat32(float32ToBfloat16Bits(NaN))));
});
