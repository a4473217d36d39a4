'use strict';
// Node.js client of the attention.v1 gRPC service.
//
// The contract is proto/attention/v1/attention.proto, loaded at run time with
// @grpc/proto-loader (no generated code, no server reflection).
//
// Tensors are plain objects {data, shape}: `data` a Float32Array (or any
// array-like of numbers) holding product(shape) elements row-major, `shape`
// an array of numbers. Results always come back as {data: Float32Array,
// shape, dtype}, whatever the wire dtype ("float32", "float16", "bfloat16").
//
//   const { AttentionClient } = require('attention-client');
//   const client = new AttentionClient('127.0.0.1:50051');
//   const { output } = await client.attend({ query, key, value, causal: true });
//   client.close();

const os = require('node:os');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');
const PROTO_FILE = 'attention/v1/attention.proto';

const packageDefinition = protoLoader.loadSync(PROTO_FILE, {
  includeDirs: [PROTO_ROOT],
  keepCase: true, // field names exactly as in the proto: d_model, key_lengths...
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});
const attentionV1 = grpc.loadPackageDefinition(packageDefinition).attention.v1;

// ---------------------------------------------------------------------------
// Dtypes and tensors

const DTYPES = {
  float32: 'DTYPE_FLOAT32',
  float16: 'DTYPE_FLOAT16',
  bfloat16: 'DTYPE_BFLOAT16',
  bool: 'DTYPE_BOOL',
};
const DTYPE_ALIASES = {
  float32: 'float32', fp32: 'float32', f32: 'float32', float: 'float32',
  float16: 'float16', fp16: 'float16', f16: 'float16', half: 'float16',
  bfloat16: 'bfloat16', bf16: 'bfloat16',
  bool: 'bool',
  DTYPE_FLOAT32: 'float32', DTYPE_FLOAT16: 'float16', DTYPE_BFLOAT16: 'bfloat16',
  DTYPE_BOOL: 'bool', 1: 'float32', 2: 'float16', 3: 'bfloat16', 4: 'bool',
};

function dtypeName(dtype) {
  const name = DTYPE_ALIASES[dtype];
  if (!name) throw new TypeError(`unsupported dtype ${dtype} (float32, float16, bfloat16 or bool)`);
  return name;
}

// undefined/null -> DTYPE_UNSPECIFIED ("the query's dtype").
function dtypeEnum(dtype) {
  return dtype === undefined || dtype === null ? 'DTYPE_UNSPECIFIED' : DTYPES[dtypeName(dtype)];
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

// float32 -> IEEE binary16 bits, round to nearest, ties to even.
function float32ToFloat16Bits(value) {
  scratchF32[0] = value;
  const x = scratchU32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf / NaN
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow
  if (e <= 0) { // subnormal half (or zero)
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1))) half += 1;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half += 1; // may carry to inf
  return sign | half;
}

function float16BitsToFloat32(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

// float32 -> bfloat16 bits (upper half of binary32), round to nearest, ties
// to even; NaN stays a quiet NaN.
function float32ToBfloat16Bits(value) {
  scratchF32[0] = value;
  const x = scratchU32[0];
  if (Number.isNaN(value)) return (x >>> 16) | 0x40;
  return Math.floor((x + 0x7fff + ((x >>> 16) & 1)) / 65536) & 0xffff;
}

function bfloat16BitsToFloat32(b) {
  scratchU32[0] = (b << 16) >>> 0;
  return scratchF32[0];
}

// Rounds every value to the nearest float16 / bfloat16, as a Float32Array.
function roundToFloat16(data) {
  return Float32Array.from(data, (v) => float16BitsToFloat32(float32ToFloat16Bits(v)));
}
function roundToBfloat16(data) {
  return Float32Array.from(data, (v) => bfloat16BitsToFloat32(float32ToBfloat16Bits(v)));
}

function product(shape) {
  return shape.reduce((a, b) => a * b, 1);
}

// {data, shape} -> attention.v1.Tensor (little-endian bytes).
function toTensor(tensor, dtype = 'float32', field = 'tensor') {
  if (!tensor || tensor.data === undefined || !Array.isArray(tensor.shape)) {
    throw new TypeError(`${field}: expected {data, shape}`);
  }
  const { data, shape } = tensor;
  const n = product(shape);
  if (data.length !== n) {
    throw new RangeError(`${field}: data has ${data.length} elements, shape [${shape}] needs ${n}`);
  }
  const name = dtypeName(dtype);
  let buf;
  if (name === 'float32') {
    if (data instanceof Float32Array && os.endianness() === 'LE') {
      buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    } else {
      buf = Buffer.alloc(4 * n);
      for (let i = 0; i < n; i++) buf.writeFloatLE(data[i], 4 * i);
    }
  } else if (name === 'float16' || name === 'bfloat16') {
    const enc = name === 'float16' ? float32ToFloat16Bits : float32ToBfloat16Bits;
    buf = Buffer.alloc(2 * n);
    for (let i = 0; i < n; i++) buf.writeUInt16LE(enc(data[i]), 2 * i);
  } else {
    buf = Buffer.alloc(n);
    for (let i = 0; i < n; i++) buf[i] = data[i] ? 1 : 0;
  }
  return { dtype: DTYPES[name], shape: shape.map(Number), data: buf };
}

// attention.v1.Tensor -> {data: Float32Array, shape, dtype}; null if unset.
function fromTensor(t) {
  if (!t) return null;
  const shape = t.shape.map(Number);
  const n = product(shape);
  const buf = t.data;
  const data = new Float32Array(n);
  let dtype;
  switch (t.dtype) {
    case 'DTYPE_FLOAT32':
      dtype = 'float32';
      for (let i = 0; i < n; i++) data[i] = buf.readFloatLE(4 * i);
      break;
    case 'DTYPE_FLOAT16':
      dtype = 'float16';
      for (let i = 0; i < n; i++) data[i] = float16BitsToFloat32(buf.readUInt16LE(2 * i));
      break;
    case 'DTYPE_BFLOAT16':
      dtype = 'bfloat16';
      for (let i = 0; i < n; i++) data[i] = bfloat16BitsToFloat32(buf.readUInt16LE(2 * i));
      break;
    case 'DTYPE_BOOL':
      dtype = 'bool';
      for (let i = 0; i < n; i++) data[i] = buf[i] ? 1 : 0;
      break;
    default:
      throw new Error(`tensor has unknown dtype ${t.dtype}`);
  }
  return { data, shape, dtype };
}

function toMask({ causal, keyLengths, keep, slidingWindow = 0 }) {
  if (!causal && !keyLengths && !keep && !slidingWindow) return undefined;
  const mask = {
    causal: Boolean(causal),
    key_lengths: keyLengths ? Array.from(keyLengths, Number) : [],
    sliding_window: Number(slidingWindow),
  };
  if (keep) {
    const isBool = keep.data instanceof Uint8Array || (Array.isArray(keep.data) && typeof keep.data[0] === 'boolean');
    mask.keep = toTensor(keep, isBool ? 'bool' : 'float32', 'mask.keep');
  }
  return mask;
}

function toTiming(t) {
  return t ? { queueUs: Number(t.queue_us), computeUs: Number(t.compute_us), flops: Number(t.flops) }
    : { queueUs: 0, computeUs: 0, flops: 0 };
}

// Drops proto-loader's oneof discriminators ("variant", and "_bias" of the
// proto3 optional field) and unset fields.
function toModuleInfo(m) {
  const config = { ...m.config };
  delete config.variant;
  for (const k of Object.keys(config)) {
    if (k.startsWith('_') || config[k] === null || config[k] === undefined) delete config[k];
  }
  return {
    name: m.name,
    config,
    parameterCount: Number(m.parameter_count),
    kvCacheBytesPerToken: Number(m.kv_cache_bytes_per_token),
  };
}

// ---------------------------------------------------------------------------
// Errors

// A failed call: `code` is the numeric gRPC status (grpc.status.*), `details`
// the server's message (naming the field).
class AttentionError extends Error {
  constructor(code, details, metadata) {
    const codeName = Object.keys(grpc.status).find((k) => grpc.status[k] === code) || String(code);
    super(`${codeName}: ${details}`);
    this.name = 'AttentionError';
    this.code = code;
    this.codeName = codeName;
    this.details = details;
    this.metadata = metadata;
  }

  static from(err) {
    if (err instanceof AttentionError) return err;
    if (err && typeof err.code === 'number') return new AttentionError(err.code, err.details ?? err.message, err.metadata);
    return err;
  }
}

// ---------------------------------------------------------------------------
// The client

const HEALTH_STATUS = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];

class AttentionClient {
  // target: "host:port". options.timeoutMs: default deadline of every call;
  // options.token: sent as "authorization: Bearer <token>";
  // options.credentials: grpc ChannelCredentials (default insecure).
  constructor(target, options = {}) {
    this.target = target;
    this.timeoutMs = options.timeoutMs;
    this.metadata = new grpc.Metadata();
    if (options.token) this.metadata.set('authorization', `Bearer ${options.token}`);
    this.stub = new attentionV1.AttentionService(
      target,
      options.credentials || grpc.credentials.createInsecure(),
      {
        'grpc.max_send_message_length': -1,
        'grpc.max_receive_message_length': -1,
        ...(options.channelOptions || {}),
      },
    );
  }

  close() {
    this.stub.close();
  }

  _callOptions(timeoutMs) {
    const ms = timeoutMs ?? this.timeoutMs;
    return ms === undefined || ms === null ? {} : { deadline: new Date(Date.now() + ms) };
  }

  _unary(method, request, timeoutMs) {
    return new Promise((resolve, reject) => {
      this.stub[method](request, this.metadata, this._callOptions(timeoutMs), (err, resp) => {
        if (err) reject(AttentionError.from(err));
        else resolve(resp);
      });
    });
  }

  // Resolves once connected; rejects after timeoutMs.
  waitForReady(timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      this.stub.waitForReady(new Date(Date.now() + timeoutMs), (err) => {
        if (err) reject(new AttentionError(grpc.status.UNAVAILABLE, `no connection to ${this.target}: ${err.message}`));
        else resolve();
      });
    });
  }

  // Stateless attention over projected heads:
  //   query [B, Hq, Lq, Dk], key [B, Hkv, Lk, Dk], value [B, Hkv, Lk, Dv];
  //   query head h uses kv head floor(h / (Hq / Hkv)).
  // causal (bottom-right aligned), keyLengths (one per batch row), keep
  // ({data, shape} broadcastable mask, nonzero keeps), scale (0: 1/sqrt(Dk)),
  // returnWeights, dtype (wire dtype of the inputs, default "float32"),
  // outputDtype (default: the query's), computeDtype ('bfloat16': products
  // in bf16 with float32 accumulation; default float32).
  // slidingWindow W (0: none): the query at position p = i + Lk - Lq sees
  // keys p - W + 1 .. p only (so it is causal too). logitSoftcap c (0: none):
  // scores s -> c·tanh(s / c). sinks: one logit per query head ([Hq]; an
  // array of numbers, a Float32Array or {data, shape}) joining each softmax
  // row's denominator. returnLse: each row's log-sum-exp (sink included).
  // Resolves to {output, weights (null unless returnWeights), variant, timing,
  // lse (float32 [B, Hq, Lq]; null unless returnLse)}.
  async attend({ query, key, value, causal = false, keyLengths, keep, scale = 0,
    returnWeights = false, dtype = 'float32', outputDtype, computeDtype, timeoutMs,
    slidingWindow = 0, logitSoftcap = 0, sinks, returnLse = false } = {}) {
    if (sinks && !sinks.shape) sinks = { data: sinks, shape: [sinks.length] };
    const req = {
      query: toTensor(query, dtype, 'query'),
      key: toTensor(key, dtype, 'key'),
      value: toTensor(value, dtype, 'value'),
      mask: toMask({ causal, keyLengths, keep, slidingWindow }),
      scale,
      return_weights: returnWeights,
      output_dtype: dtypeEnum(outputDtype),
      compute_dtype: dtypeEnum(computeDtype),
      logit_softcap: logitSoftcap,
      sinks: sinks ? toTensor(sinks, dtype, 'sinks') : undefined,
      return_lse: returnLse,
    };
    const resp = await this._unary('Attend', req, timeoutMs);
    return {
      output: fromTensor(resp.output),
      weights: fromTensor(resp.weights),
      variant: resp.variant,
      timing: toTiming(resp.timing),
      lse: fromTensor(resp.lse),
    };
  }

  // Registers a layer. config uses the proto's field names, e.g.
  //   {d_model: 16, mha: {num_heads: 2}} or
  //   {d_model: 64, gqa: {num_q_heads: 8, num_kv_heads: 2}, bias: true}.
  // stateDict maps PyTorch names ("W_q.weight", ...) to {data, shape};
  // omitted: random initialisation from `seed`. weightsPrefix picks one
  // layer of a whole model's tensors (the server strips it and takes
  // Hugging Face's q_proj... for mha/gqa/mqa); file names a .safetensors
  // the server reads under its --model_dir instead of stateDict.
  // Resolves to {name, config, parameterCount, kvCacheBytesPerToken}.
  async loadModule({ name, config, stateDict, seed = 0, replace = false,
    weightsDtype = 'float32', weightsPrefix = '', file = '', timeoutMs } = {}) {
    const weights = {};
    for (const [k, t] of Object.entries(stateDict || {})) {
      if (!k.startsWith(weightsPrefix)) continue;  // the server ignores them
      weights[k] = toTensor(t, weightsDtype, `weights['${k}']`);
    }
    const resp = await this._unary('LoadModule', {
      name, config, weights, random_seed: seed, replace, weights_prefix: weightsPrefix, file,
    }, timeoutMs);
    return toModuleInfo(resp);
  }

  async listModules({ timeoutMs } = {}) {
    const resp = await this._unary('ListModules', {}, timeoutMs);
    return resp.modules.map(toModuleInfo);
  }

  async unloadModule(name, { timeoutMs } = {}) {
    await this._unary('UnloadModule', { name }, timeoutMs);
  }

  // Runs a registered layer: query [B, Lq, d_model]; key/value [B, Lk,
  // d_model] for cross-attention (omitted: self-attention). Masks and dtypes
  // as attend(); slidingWindow narrows the layer's own window (config
  // sliding_window), the narrower applies. Resolves to {output, weights, timing}.
  async forward({ module, query, key, value, causal = false, keyLengths, keep,
    returnWeights = false, dtype = 'float32', outputDtype, positionOffset = 0, timeoutMs,
    slidingWindow = 0 } = {}) {
    const req = {
      module,
      position_offset: positionOffset,
      query: toTensor(query, dtype, 'query'),
      key: key ? toTensor(key, dtype, 'key') : undefined,
      value: value ? toTensor(value, dtype, 'value') : undefined,
      mask: toMask({ causal, keyLengths, keep, slidingWindow }),
      return_weights: returnWeights,
      output_dtype: dtypeEnum(outputDtype),
    };
    const resp = await this._unary('Forward', req, timeoutMs);
    return {
      output: fromTensor(resp.output),
      weights: fromTensor(resp.weights),
      timing: toTiming(resp.timing),
    };
  }

  // Streams token chunks ({data, shape} [B, T, d_model]; an array or any
  // (async) iterable) through the module's KV cache. An async generator of
  // {output, cachedTokens, kvCacheBytes, timing}, one per chunk. Breaking
  // out of the loop cancels the stream.
  async* decode(module, chunks, { batch, maxTokens = 0, dtype = 'float32', timeoutMs } = {}) {
    const call = this.stub.Decode(this.metadata, this._callOptions(timeoutMs));
    let stopped = false; // the reader is done (finished, failed or abandoned)
    let inputError = null; // a failure of the caller's chunks (iteration or conversion)
    const ended = new Promise((resolve) => {
      call.once('status', resolve);
      call.once('error', resolve);
      call.once('close', resolve);
    });
    const send = async (msg) => {
      if (!call.write(msg)) await Promise.race([new Promise((r) => call.once('drain', r)), ended]);
    };
    const writer = (async () => {
      let started = false;
      try {
        for await (const chunk of chunks) {
          if (stopped) return;
          const tokens = toTensor(chunk, dtype, 'tokens');
          if (!started) {
            await send({ start: { module, batch: batch ?? chunk.shape[0], max_tokens: maxTokens } });
            started = true;
          }
          await send({ tokens });
        }
      } catch (e) {
        inputError = e;
        call.cancel();
        return;
      }
      if (!stopped) call.end();
    })();
    let finished = false;
    try {
      for await (const resp of call) {
        yield {
          output: fromTensor(resp.output),
          cachedTokens: Number(resp.cached_tokens),
          kvCacheBytes: Number(resp.kv_cache_bytes),
          timing: toTiming(resp.timing),
        };
      }
      finished = true;
    } catch (e) {
      throw inputError || AttentionError.from(e);
    } finally {
      stopped = true;
      if (!finished) call.cancel(); // abandoned or failed: free the server's cache
    }
    await writer;
    if (inputError) throw inputError;
  }

  // Costs of a config without computing: resolves to {parameters,
  // kvCacheBytesPerToken, kvCacheBytes, prefillFlops, decodeFlopsPerToken}.
  async estimate({ config, batch, seqLen, timeoutMs } = {}) {
    const r = await this._unary('Estimate', { config, batch, seq_len: seqLen }, timeoutMs);
    return {
      parameters: Number(r.parameters),
      kvCacheBytesPerToken: Number(r.kv_cache_bytes_per_token),
      kvCacheBytes: Number(r.kv_cache_bytes),
      prefillFlops: Number(r.prefill_flops),
      decodeFlopsPerToken: Number(r.decode_flops_per_token),
    };
  }

  // The server's version, oneDNN version, CPU ISA, threads, limits, variants
  // and KV-cache use (field names as in the proto).
  serverInfo({ timeoutMs } = {}) {
    return this._unary('GetServerInfo', {}, timeoutMs);
  }

  // grpc.health.v1 Check, with the two tiny messages encoded by hand.
  // Resolves to "SERVING", "NOT_SERVING", "UNKNOWN" or "SERVICE_UNKNOWN".
  health(service = '', { timeoutMs } = {}) {
    const name = Buffer.from(service, 'utf8');
    if (name.length > 127) throw new RangeError('health: service name too long');
    const request = name.length ? Buffer.concat([Buffer.from([0x0a, name.length]), name]) : Buffer.alloc(0);
    return new Promise((resolve, reject) => {
      this.stub.makeUnaryRequest(
        '/grpc.health.v1.Health/Check', (b) => b, (b) => b, request, this.metadata,
        this._callOptions(timeoutMs), (err, resp) => {
          if (err) return reject(AttentionError.from(err));
          // HealthCheckResponse{status = 1 (varint)}: 0x08 <status>.
          const status = resp.length >= 2 && resp[0] === 0x08 ? resp[1] : 0;
          return resolve(HEALTH_STATUS[status] || 'UNKNOWN');
        },
      );
    });
  }
}

module.exports = {
  AttentionClient,
  AttentionError,
  status: grpc.status,
  toTensor,
  fromTensor,
  float32ToFloat16Bits,
  float16BitsToFloat32,
  float32ToBfloat16Bits,
  bfloat16BitsToFloat32,
  roundToFloat16,
  roundToBfloat16,
  PROTO_ROOT,
};
