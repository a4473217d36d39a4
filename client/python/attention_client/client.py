"""A NumPy client for the attention.v1 gRPC service."""

import collections
import os

import grpc
import numpy as np

from ._gen.attention.v1 import attention_pb2 as pb2, attention_pb2_grpc as pb2_grpc
from .config import module_config
from .tensors import _as_array, dtype_enum, from_tensor, to_tensor

Timing = collections.namedtuple("Timing", "queue_us compute_us flops")
Timing.__doc__ = "Queue and compute microseconds, and FLOPs, of one request."

AttendResult = collections.namedtuple("AttendResult", "output weights variant timing lse",
                                      defaults=(None,))
AttendResult.__doc__ = """Result of Attend: output [B, Hq, Lq, Dv], weights [B, Hq, Lq, Lk]
(None unless return_weights), variant ("mha", "gqa" or "mqa"), timing, and lse
[B, Hq, Lq] float32, each row's log-sum-exp (None unless return_lse)."""

ForwardResult = collections.namedtuple("ForwardResult", "output weights timing")
ForwardResult.__doc__ = """Result of Forward: output [B, Lq, d_out], weights [B, H, Lq, Lk]
(None unless return_weights) and timing."""

DecodeStep = collections.namedtuple("DecodeStep", "output cached_tokens kv_cache_bytes timing")
DecodeStep.__doc__ = """One Decode chunk's answer: output [B, T, d_out], tokens now cached
per batch row, cache bytes of the whole stream, and timing."""

ModuleInfo = collections.namedtuple(
    "ModuleInfo", "name config parameter_count kv_cache_bytes_per_token")
ModuleInfo.__doc__ = """A registered module; `config` is a dict such as
{"d_model": 64, "mha": {"num_heads": 4}}."""

Estimate = collections.namedtuple(
    "Estimate",
    "parameters kv_cache_bytes_per_token kv_cache_bytes prefill_flops decode_flops_per_token")

_HEALTH_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


class AttentionError(Exception):
    """A failed call: `.code` is the grpc.StatusCode, `.details` the server's message."""

    def __init__(self, code, details):
        self.code = code
        self.details = details or ""
        name = code.name if isinstance(code, grpc.StatusCode) else str(code)
        super().__init__("%s: %s" % (name, self.details))

    @classmethod
    def from_rpc_error(cls, e):
        code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
        details = e.details() if hasattr(e, "details") else str(e)
        return cls(code, details)


def _timing(t):
    return Timing(int(t.queue_us), int(t.compute_us), float(t.flops))


def message_to_dict(msg):
    """Converts a message to a dict, keeping int64 as int and unset optional
    or oneof fields out (enums as their names)."""
    out = {}
    for field in msg.DESCRIPTOR.fields:
        repeated = _is_repeated(field)
        if not repeated and field.has_presence and not msg.HasField(field.name):
            continue
        value = getattr(msg, field.name)
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                value = {k: (message_to_dict(v) if hasattr(v, "DESCRIPTOR") else v)
                         for k, v in value.items()}
            elif repeated:
                value = [message_to_dict(v) for v in value]
            else:
                value = message_to_dict(value)
        elif field.enum_type is not None:
            to_name = field.enum_type.values_by_number
            if repeated:
                value = [to_name[v].name if v in to_name else v for v in value]
            else:
                value = to_name[value].name if value in to_name else value
        elif repeated:
            value = list(value)
        out[field.name] = value
    return out


def _load_safetensors(path):
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise ImportError("state_dict=%r: reading .safetensors files needs the safetensors "
                          "package (pip install \"./client/python[safetensors]\")"
                          % os.fspath(path)) from None
    return load_file(os.fspath(path))


def _is_repeated(field):
    # FieldDescriptor.label is gone from protobuf 7; is_repeated is missing
    # from protobuf 3.21.
    if hasattr(field, "is_repeated"):
        return field.is_repeated
    return field.label == field.LABEL_REPEATED


def _module_info(m):
    return ModuleInfo(m.name, message_to_dict(m.config), int(m.parameter_count),
                      int(m.kv_cache_bytes_per_token))


def _mask(causal, key_lengths, keep, sliding_window=0):
    if not causal and key_lengths is None and keep is None and not sliding_window:
        return None
    mask = pb2.Mask(causal=bool(causal), sliding_window=int(sliding_window))
    if key_lengths is not None:
        mask.key_lengths.extend(int(n) for n in np.asarray(key_lengths).reshape(-1))
    if keep is not None:
        mask.keep.CopyFrom(to_tensor(keep, "bool", "mask.keep"))
    return mask


def _dtype_field(value, field):
    """A DType enum field (compute_dtype, kv_cache_dtype) from None, an enum
    value or a name ("bfloat16", "bf16", "int8", "DTYPE_INT8", np.float16...)."""
    if value is None:
        return pb2.DTYPE_UNSPECIFIED
    if isinstance(value, int):
        return value
    name = str(value).lower()
    if name in ("int8", "i8", "dtype_int8"):
        return pb2.DTYPE_INT8
    try:
        return dtype_enum(value)
    except ValueError:
        raise ValueError("%s: unsupported dtype %r" % (field, value)) from None


class AttentionClient:
    """Client of the attention.v1 AttentionService.

    client = AttentionClient("127.0.0.1:50051")
    out = client.attend(q, k, v, causal=True).output

    `timeout` (seconds) is the default deadline of every call; each method
    also takes `timeout=` to override it. `token` adds an
    "authorization: Bearer <token>" header to every call. Arrays are NumPy
    arrays (or anything np.asarray accepts, PyTorch tensors included) of
    floating-point values; integer, bool or complex arrays raise TypeError
    naming the argument (masks take bool or numbers). The `dtype` argument
    picks the wire dtype of inputs ("float32", "float16", "bfloat16", or
    np.float32 / np.float16; float input of any precision is rounded to it)
    and `output_dtype` that of the results (None: the same as the query's). FLOAT16 results come back as
    float16 arrays, BFLOAT16 results as float32 arrays holding bfloat16
    values. Failures raise AttentionError with `.code` and `.details`.
    """

    def __init__(self, target, timeout=None, token=None, credentials=None, options=None):
        opts = [("grpc.max_send_message_length", -1),
                ("grpc.max_receive_message_length", -1)]
        opts.extend(options or [])
        if credentials is not None:
            self._channel = grpc.secure_channel(target, credentials, options=opts)
        else:
            self._channel = grpc.insecure_channel(target, options=opts)
        self._stub = pb2_grpc.AttentionServiceStub(self._channel)
        self._health = self._channel.unary_unary("/grpc.health.v1.Health/Check")
        self.target = target
        self.timeout = timeout
        self._metadata = (("authorization", "Bearer " + token),) if token else None

    # -- plumbing ---------------------------------------------------------

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def wait_for_ready(self, timeout=10.0):
        """Blocks until the channel is connected; raises AttentionError
        (UNAVAILABLE) if it is not within `timeout` seconds."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise AttentionError(grpc.StatusCode.UNAVAILABLE,
                                 "no connection to %s within %s s" % (self.target, timeout)) from None

    def _deadline(self, timeout):
        return self.timeout if timeout is None else timeout

    def _call(self, method, request, timeout):
        try:
            return method(request, timeout=self._deadline(timeout), metadata=self._metadata)
        except grpc.RpcError as e:
            raise AttentionError.from_rpc_error(e) from None

    # -- Attend -----------------------------------------------------------

    def attend(self, q, k, v, causal=False, key_lengths=None, keep=None, scale=0.0,
               return_weights=False, dtype=np.float32, output_dtype=None, compute_dtype=None,
               timeout=None, sliding_window=0, logit_softcap=0.0, sinks=None, return_lse=False):
        """Scaled-dot-product attention over projected heads.

        q [B, Hq, Lq, Dk], k [B, Hkv, Lk, Dk], v [B, Hkv, Lk, Dv]; query head
        h uses kv head h // (Hq // Hkv). `causal` is bottom-right aligned,
        `key_lengths` gives one valid length per batch row, `keep` is a
        broadcastable mask (nonzero keeps). `scale` 0 means 1/sqrt(Dk).
        `compute_dtype` "bfloat16" computes the products in bf16 (None:
        float32). `sliding_window` W (0: none) lets the query at position
        p = i + Lk - Lq see keys p - W + 1 .. p only (so it is causal too);
        `logit_softcap` c (0: none) maps the scaled scores s to c*tanh(s/c);
        `sinks` [Hq] (array-like, sent as `dtype`) adds one logit per query
        head to each softmax row's denominator; `return_lse` returns each
        row's log-sum-exp (sink included) as `lse` [B, Hq, Lq] float32.
        Returns AttendResult(output, weights, variant, timing, lse).
        """
        req = pb2.AttendRequest(
            query=to_tensor(q, dtype, "query"), key=to_tensor(k, dtype, "key"),
            value=to_tensor(v, dtype, "value"),
            scale=float(scale), return_weights=bool(return_weights),
            output_dtype=dtype_enum(output_dtype),
            compute_dtype=_dtype_field(compute_dtype, "compute_dtype"),
            logit_softcap=float(logit_softcap), return_lse=bool(return_lse))
        if sinks is not None:
            if isinstance(sinks, (list, tuple)):
                sinks = np.asarray(sinks, np.float64)  # [0, 1.5] as numbers
            req.sinks.CopyFrom(to_tensor(sinks, dtype, "sinks"))
        mask = _mask(causal, key_lengths, keep, sliding_window)
        if mask is not None:
            req.mask.CopyFrom(mask)
        resp = self._call(self._stub.Attend, req, timeout)
        weights = from_tensor(resp.weights) if resp.HasField("weights") else None
        lse = from_tensor(resp.lse) if resp.HasField("lse") else None
        return AttendResult(from_tensor(resp.output), weights, resp.variant, _timing(resp.timing),
                            lse)

    # -- Modules ----------------------------------------------------------

    def load_module(self, name, config, state_dict=None, seed=0, replace=False,
                    weights_dtype=np.float32, timeout=None, weights_prefix="", file=None):
        """Registers an attention layer.

        `config` is a dict such as {"d_model": 64, "mha": {"num_heads": 4}}
        or {"d_model": 64, "gqa": {"num_q_heads": 8, "num_kv_heads": 2},
        "bias": True} (field names of ModuleConfig), or a ModuleConfig; a
        field that ModuleConfig lacks or a value of the wrong type raises
        ConfigError naming it ("gqa.num_q_heads") before anything is sent.
        `state_dict` maps PyTorch parameter names ("W_q.weight", ...) to
        float arrays or tensors (e.g. module.state_dict()), or is the path of
        a .safetensors file holding them (needs the `safetensors` package:
        pip install "./client/python[safetensors]"); None: random
        initialisation from `seed`. Weights go over the wire as
        `weights_dtype`. `weights_prefix` picks one layer out of a whole
        model's tensors: the server strips it from every name and ignores
        names without it (only those are sent), and for mha, gqa and mqa
        takes Hugging Face's q_proj, k_proj, v_proj, o_proj beside W_q....
        `file` names a .safetensors file the server reads itself, relative
        to its --model_dir (then no state_dict). Returns ModuleInfo.
        """
        req = pb2.LoadModuleRequest(name=name, config=module_config(config),
                                    random_seed=int(seed), replace=bool(replace),
                                    weights_prefix=weights_prefix, file=file or "")
        if isinstance(state_dict, (str, os.PathLike)):
            state_dict = _load_safetensors(state_dict)
        for key, value in (state_dict or {}).items():
            if not key.startswith(weights_prefix):
                continue
            req.weights[key].CopyFrom(to_tensor(value, weights_dtype, "weights[%r]" % key))
        return _module_info(self._call(self._stub.LoadModule, req, timeout))

    def list_modules(self, timeout=None):
        """The registered modules (list of ModuleInfo), sorted by name."""
        resp = self._call(self._stub.ListModules, pb2.ListModulesRequest(), timeout)
        return [_module_info(m) for m in resp.modules]

    def unload_module(self, name, timeout=None):
        """Removes a module; AttentionError NOT_FOUND if there is none."""
        self._call(self._stub.UnloadModule, pb2.UnloadModuleRequest(name=name), timeout)

    def forward(self, module, query, key=None, value=None, causal=False, key_lengths=None,
                keep=None, return_weights=False, dtype=np.float32, output_dtype=None,
                timeout=None, position_offset=0, sliding_window=0):
        """Runs a registered layer on query [B, Lq, d_model] (self-attention),
        or with key/value [B, Lk, d_model] (cross-attention). `position_offset`
        is the position of the first token for a layer with rotary
        embeddings (config "rope"). `sliding_window` W (0: none) is the
        mask's window; the narrower of it and the config's applies.
        Returns ForwardResult(output, weights, timing)."""
        req = pb2.ForwardRequest(module=module, query=to_tensor(query, dtype, "query"),
                                 return_weights=bool(return_weights),
                                 position_offset=int(position_offset),
                                 output_dtype=dtype_enum(output_dtype))
        if key is not None:
            req.key.CopyFrom(to_tensor(key, dtype, "key"))
        if value is not None:
            req.value.CopyFrom(to_tensor(value, dtype, "value"))
        mask = _mask(causal, key_lengths, keep, sliding_window)
        if mask is not None:
            req.mask.CopyFrom(mask)
        resp = self._call(self._stub.Forward, req, timeout)
        weights = from_tensor(resp.weights) if resp.HasField("weights") else None
        return ForwardResult(from_tensor(resp.output), weights, _timing(resp.timing))

    def decode(self, module, chunks, batch=None, max_tokens=0, dtype=np.float32,
               kv_cache_dtype=None, timeout=None):
        """Streams token chunks through a module's KV cache.

        `chunks` is an iterable (a generator works: chunks are sent as they
        are produced) of arrays [B, T, d_model]; `batch` defaults to the
        first chunk's B. Yields one DecodeStep(output, cached_tokens,
        kv_cache_bytes, timing) per chunk. Closing the generator early
        cancels the stream (the server frees its cache). `kv_cache_dtype`
        ("bfloat16", "float16", "int8"; None: the module's) sets this
        stream's cache.
        """
        kv_enum = _dtype_field(kv_cache_dtype, "kv_cache_dtype")
        it = iter(chunks)
        try:
            first = _as_array(next(it))
        except StopIteration:
            return
        if batch is None:
            batch = int(first.shape[0])
        failure = []

        def requests():
            try:
                yield pb2.DecodeRequest(start=pb2.DecodeStart(
                    module=module, batch=int(batch), max_tokens=int(max_tokens),
                    kv_cache_dtype=kv_enum))
                yield pb2.DecodeRequest(tokens=to_tensor(first, dtype, "tokens"))
                for chunk in it:
                    yield pb2.DecodeRequest(tokens=to_tensor(chunk, dtype, "tokens"))
            except Exception as e:  # surfaced to the caller below
                failure.append(e)
                raise

        call = self._stub.Decode(requests(), timeout=self._deadline(timeout),
                                 metadata=self._metadata)
        try:
            for resp in call:
                yield DecodeStep(from_tensor(resp.output), int(resp.cached_tokens),
                                 int(resp.kv_cache_bytes), _timing(resp.timing))
        except grpc.RpcError as e:
            if failure:
                raise failure[0]
            raise AttentionError.from_rpc_error(e) from None
        finally:
            call.cancel()  # no-op once the call has finished
        if failure:
            raise failure[0]

    # -- Estimate / server ------------------------------------------------

    def estimate(self, config, batch, seq_len, timeout=None):
        """Parameters, KV cache size and FLOPs of a config (nothing is computed)."""
        req = pb2.EstimateRequest(config=module_config(config), batch=int(batch),
                                  seq_len=int(seq_len))
        r = self._call(self._stub.Estimate, req, timeout)
        return Estimate(int(r.parameters), int(r.kv_cache_bytes_per_token),
                        int(r.kv_cache_bytes), float(r.prefill_flops),
                        float(r.decode_flops_per_token))

    def server_info(self, timeout=None):
        """The server's version, oneDNN version, CPU ISA, threads, limits,
        variants and KV-cache use, as a dict."""
        return message_to_dict(
            self._call(self._stub.GetServerInfo, pb2.GetServerInfoRequest(), timeout))

    def health(self, service="", timeout=None):
        """grpc.health.v1 Check: "SERVING", "NOT_SERVING", "UNKNOWN" or
        "SERVICE_UNKNOWN" ("" asks about the whole server)."""
        # HealthCheckRequest{string service = 1}, encoded by hand (no health
        # stubs are needed).
        raw = service.encode("utf-8")
        req = (b"\x0a" + _varint(len(raw)) + raw) if raw else b""
        data = self._call(self._health, req, timeout)
        return _HEALTH_STATUS.get(_parse_health_status(data), "UNKNOWN")


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(data, i):
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def _parse_health_status(data):
    """HealthCheckResponse{ServingStatus status = 1}: field 1's varint."""
    i, status = 0, 0
    while i < len(data):
        tag, i = _read_varint(data, i)
        wire = tag & 7
        if wire == 0:
            value, i = _read_varint(data, i)
            if tag >> 3 == 1:
                status = value
        elif wire == 2:
            n, i = _read_varint(data, i)
            i += n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            break
    return status
