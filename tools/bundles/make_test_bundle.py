#!/usr/bin/env python3
"""Write a random-weight `latentd-bundle/1` test bundle (see docs/bundles.md).

The bundle follows the ACE-Step v1.5 export conventions at small widths, so the runtime
paths a real exported bundle takes (names, layouts, dynamic axes, patching, optional
`context_latents`) are exercised by a bundle that is built here in seconds:

- `dit.onnx`: `hidden_states [B,T,C]`, `timestep [B]`, `encoder_hidden_states [B,L,D]`,
  `context_latents [B,T,2C]` (left out with `--no-context`) -> `velocity [B,T,C]`.
  Patch 2 (T a multiple of 2), input projection of cat(x, context), sinusoidal timestep
  embedding -> MLP -> adaptive RMSNorm modulation (shift / scale / gate), N layers of
  self-attention with RoPE + cross-attention to the text + SiLU-gated MLP, output
  projection, unpatch.
- `decoder.onnx`: `latents [B,C,T]` -> `audio [B,A,T*rate/fps]`: 1x1 conv, strided
  transposed-conv upsampling stages with SiLU, output conv, a linear-phase FIR per channel
  that imposes a random smooth spectral envelope, tanh. With `--decoder-frame-offset` it
  also takes `frame_offset [1] int64` (the window's first latent frame in the loop) and adds
  a 40 Hz tone in the loop's own time, `FRAME_TONE_GAIN * sin(2 pi t / 1201)` at loop
  sample `t`: a partial that continues across decode windows only if latentd passes each
  window's place.
  With `--decoder stft`: `latents [B,C,T]` -> `stft [B,A,N,F,2]` (n_fft 1920, hop 480,
  N = 4T, F = 961; the host inverts it): 1x1 conv, one transposed-conv stage to the STFT
  frame rate with SiLU, a 1x1 conv to A*F*2 channels, tanh, scale, reshape / transpose,
  times a random smooth spectral envelope (drawn like the audio decoder's).
- `encoder.onnx`: `audio [B,A,S]` -> `latents [B,C,S*fps/rate]`: the decoder's rough mirror.
- `text.onnx`: `ids [1,L] int64` -> `encoder_hidden_states [1,L,D]`: embedding of the
  tag ids (line numbers of `tags.txt`, from 0) + a residual SiLU MLP.
- `--fault KIND` writes a broken bundle instead (see FAULTS), for the tests that latentd
  refuses it with one clear error.
- `bundle.toml`: the manifest (docs/bundles.md), plus a `[parity]` section whose
  expected outputs are computed by `onnx.reference.ReferenceEvaluator` (the ONNX package's
  own numpy implementation of the operators; onnxruntime is not needed here), so a runtime
  that loads the bundle can prove it computes what the graphs mean.

Weights come from numpy's PCG64 seeded with `--seed`: the same arguments write the same
bytes; another seed writes other weights, hence another sound. Every graph is checked with
`onnx.checker.check_model(full_check=True)` before it is written.

Needs: python3, `onnx` (1.23.2) and numpy; `scripts/setup.sh` installs them.

    python3 tools/bundles/make_test_bundle.py --preset tiny --out target/bundles/tiny
    python3 tools/bundles/make_test_bundle.py --preset acestep-shaped --out /tmp/acestep
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

FORMAT = "latentd-bundle/1"
# Opset 17 / IR 8: within what ONNX Runtime 1.22-1.32 and TensorRT 10 take.
OPSET = 17
IR_VERSION = 8
# ACE-Step v1.5 geometry: 48 kHz stereo, 64 latent channels at 25 frames/s.
SAMPLE_RATE = 48000
AUDIO_CHANNELS = 2
LATENT_CHANNELS = 64
LATENT_FRAME_RATE = 25
PATCH = 2
TIMESTEP_FREQS = 256
TIMESTEP_SCALE = 1000.0
ROPE_THETA = 10000.0
RMS_EPS = 1e-6
MLP_RATIO = 3
DEFAULT_STEPS = 8
DEFAULT_SHIFT = 3.0
DECODER_CONTEXT_FRAMES = 8
# `--decoder-frame-offset`: the tone the decoder adds in loop time (40 Hz: its period, 1201
# samples, a prime, divides no whole number of latent frames short of 1201, so a window
# given another place shows).
FRAME_TONE_PERIOD = 1201
FRAME_TONE_GAIN = 0.05
# `--decoder stft`: the STFT geometry of latentd's own model (4 STFT frames per latent frame).
STFT_N_FFT = 1920
STFT_HOP = 480
# Scales the tanh'd STFT so that the inverse is around -20 dBFS RMS.
STFT_GAIN = 6.0
# The decoders' spectral envelope: random dB (this deviation) at log-spaced anchors from
# ENVELOPE_LOW_HZ to Nyquist, interpolated in log frequency. It makes another seed colour the
# sound differently by construction (random conv stacks alone give similar spectra).
ENVELOPE_ANCHORS = 10
ENVELOPE_DB = 10.0
ENVELOPE_LOW_HZ = 20.0
# The audio decoder imposes the envelope with a linear-phase FIR of this many taps (odd), a
# Hann-windowed frequency-sampling design: it resolves the envelope above about 750 Hz and
# its low end as a coarser tilt, at 127 multiply-adds a sample and channel (about what the
# tiny decoder's conv stack costs).
ENVELOPE_FIR_TAPS = 127
ENVELOPE_FIR_GRID = 4096
# `--fault dit-nan-late`: timesteps below this give NaN. Under the last step of the default
# schedule (8 steps at shift 3 end at t = 0.3), above the load probe's t = 1.
NAN_BELOW_TIMESTEP = 0.45
# The timbre graph (--timbre): reference frames in, condition rows out.
TIMBRE_FRAMES = 50
TIMBRE_ROWS = 2
PARITY_ATOL = 1e-4
PARITY_RTOL = 1e-3
# Weight scale of the conv stacks: keeps the signal's level through the SiLU stages.
CONV_GAIN = 1.8
# Output scales: decoded audio around -15 dBFS RMS before the tanh bites; encoded latents
# of a half-scale tone near unit scale.
DECODER_OUT_GAIN = 0.12
ENCODER_OUT_GAIN = 6.0
# The upsampling stages never go below this many channels.
MIN_CONV_CHANNELS = 8

PRESETS = {
    # The CI bundle: a few hundred KB.
    "tiny": dict(width=32, layers=1, heads=2, conv_width=32, name="tiny-random"),
    # The CPU benchmark bundle (docs/PERFORMANCE.md; about 3.4 M DiT parameters).
    "acestep-shaped": dict(
        width=192, layers=4, heads=4, conv_width=128, name="acestep-shaped-random"
    ),
}

# Broken bundles for the refusal tests: what --fault breaks.
FAULTS = {
    "dit-output-name": "the DiT's output is named noise_pred, not velocity",
    "dit-output-rank": "the DiT's output is [B, T*C], rank 2",
    "dit-nan": "the DiT's velocity is all NaN",
    "dit-nan-late": "the DiT's velocity is NaN for timesteps below 0.45 (the load probe passes; runs fail)",
    "decoder-nan": "the decoder's audio is all NaN",
    "stft-output-name": "(with --decoder stft) the decoder's output is named spectrum, not stft",
    "stft-bins": "(with --decoder stft) the decoder's stft has n_fft/2 bins, not n_fft/2+1",
}

TAGS = """ambient acoustic bass bells bright brass calm cello choir classical clean cold
dark distorted drums electronic energetic ensemble epic fast flute groove guitar happy
hihat house instrumental jazz kick lofi melodic minimal organ pad percussion piano pop
rock sad slow snare solo strings synth techno violin vocal warm""".split()


class Graph:
    """Builds one ONNX graph: initializers from a seeded generator, nodes, fresh names."""

    def __init__(self, rng: np.random.Generator, prefix: str):
        self.rng = rng
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def fresh(self, hint: str) -> str:
        self.count += 1
        return f"{self.prefix}/{hint}_{self.count}"

    def const(self, array: np.ndarray, hint: str = "w") -> str:
        name = self.fresh(hint)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def weight(self, shape, std: float, hint: str = "w") -> str:
        return self.const(self.rng.normal(0.0, std, size=shape).astype(np.float32), hint)

    def op(self, op_type: str, inputs, hint: str | None = None, outputs: int = 1, **attrs):
        names = [self.fresh(hint or op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, **attrs))
        return names[0] if outputs == 1 else names

    def named(self, op_type: str, inputs, output: str, **attrs) -> str:
        """A node writing a graph output by its fixed name."""
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], **attrs))
        return output

    # Layers ---------------------------------------------------------------------------

    def linear(self, x: str, d_in: int, d_out: int, bias: bool = True, gain: float = 1.0):
        y = self.op("MatMul", [x, self.weight((d_in, d_out), gain / math.sqrt(d_in))])
        if bias:
            y = self.op("Add", [y, self.weight((d_out,), 0.02, "b")])
        return y

    def silu(self, x: str) -> str:
        return self.op("Mul", [x, self.op("Sigmoid", [x])], "silu")

    def rms_norm(self, x: str, dim: int, affine: bool = True) -> str:
        ms = self.op("ReduceMean", [self.op("Mul", [x, x])], axes=[-1], keepdims=1)
        inv = self.op(
            "Reciprocal", [self.op("Sqrt", [self.op("Add", [ms, self.const(np.float32(RMS_EPS), "eps")])])]
        )
        y = self.op("Mul", [x, inv], "rms")
        if affine:
            scale = (1.0 + self.rng.normal(0.0, 0.1, size=(dim,))).astype(np.float32)
            y = self.op("Mul", [y, self.const(scale, "g")])
        return y

    def modulate(self, x: str, shift: str, scale: str) -> str:
        one = self.const(np.float32(1.0), "one")
        return self.op("Add", [self.op("Mul", [x, self.op("Add", [scale, one])]), shift])

    def heads(self, x: str, n_heads: int, head_dim: int) -> str:
        """[B,N,D] -> [B,H,N,hd]."""
        shape = self.const(np.array([0, 0, n_heads, head_dim], np.int64), "shape")
        return self.op("Transpose", [self.op("Reshape", [x, shape])], perm=[0, 2, 1, 3])

    def merge_heads(self, x: str, dim: int) -> str:
        """[B,H,N,hd] -> [B,N,D]."""
        y = self.op("Transpose", [x], perm=[0, 2, 1, 3])
        return self.op("Reshape", [y, self.const(np.array([0, 0, dim], np.int64), "shape")])

    def attention(self, q: str, k: str, v: str, head_dim: int) -> str:
        kt = self.op("Transpose", [k], perm=[0, 1, 3, 2])
        scores = self.op("MatMul", [q, kt])
        scores = self.op("Mul", [scores, self.const(np.float32(1.0 / math.sqrt(head_dim)), "scale")])
        return self.op("MatMul", [self.op("Softmax", [scores], axis=-1), v])

    def rope(self, x_tokens: str, head_dim: int) -> tuple[str, str, str]:
        """cos, sin [N,hd] for the token axis of x_tokens [B,N,*], and the rotate-half matrix."""
        shape = self.op("Shape", [x_tokens])
        n = self.op("Gather", [shape, self.const(np.array(1, np.int64), "idx")], axis=0)
        pos = self.op(
            "Range", [self.const(np.array(0, np.int64), "zero"), n, self.const(np.array(1, np.int64), "one")]
        )
        pos = self.op("Unsqueeze", [self.op("Cast", [pos], to=TensorProto.FLOAT), self.const(np.array([1], np.int64), "ax")])
        half = head_dim // 2
        inv_freq = (1.0 / ROPE_THETA ** (np.arange(half, dtype=np.float64) / half)).astype(np.float32)
        freqs = self.op("MatMul", [pos, self.const(inv_freq[None, :], "inv_freq")])
        emb = self.op("Concat", [freqs, freqs], axis=-1)
        rot = np.zeros((head_dim, head_dim), np.float32)
        for i in range(half):
            rot[i + half, i] = -1.0  # out[:, i] = -x[:, i + half]
            rot[i, i + half] = 1.0  # out[:, i + half] = x[:, i]
        return self.op("Cos", [emb]), self.op("Sin", [emb]), self.const(rot, "rotate_half")

    def apply_rope(self, x: str, cos: str, sin: str, rot: str) -> str:
        rotated = self.op("MatMul", [x, rot])
        return self.op("Add", [self.op("Mul", [x, cos]), self.op("Mul", [rotated, sin])])

    def conv(self, x: str, c_in: int, c_out: int, kernel: int, stride: int = 1, pad: int = 0, gain: float = CONV_GAIN):
        w = self.weight((c_out, c_in, kernel), gain / math.sqrt(c_in * kernel))
        return self.op(
            "Conv", [x, w, self.weight((c_out,), 0.02, "b")],
            kernel_shape=[kernel], strides=[stride], pads=[pad, pad],
        )

    def conv_transpose(self, x: str, c_in: int, c_out: int, stride: int):
        pad = (stride + 1) // 2
        kernel = stride + 2 * pad  # output length = input length * stride
        taps = max(1, kernel // stride)
        w = self.weight((c_in, c_out, kernel), CONV_GAIN / math.sqrt(c_in * taps))
        return self.op(
            "ConvTranspose", [x, w, self.weight((c_out,), 0.02, "b")],
            kernel_shape=[kernel], strides=[stride], pads=[pad, pad],
        )

    def model(self, name: str, inputs, outputs, doc: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="latentd make_test_bundle.py",
            doc_string=doc,
        )
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model, full_check=True)
        return model


def f32_input(name: str, dims) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def upsample_factors(samples_per_frame: int) -> list[int]:
    """rate/fps split greedily into stride factors <= 8 (1920 -> 8, 8, 6, 5)."""
    factors, rest = [], samples_per_frame
    while rest > 1:
        factor = next((d for d in range(8, 1, -1) if rest % d == 0), rest)
        factors.append(factor)
        rest //= factor
    return factors


def conv_widths(conv_width: int, stages: int) -> list[int]:
    """Channels before each upsampling stage and after the last: halving, floored."""
    return [max(MIN_CONV_CHANNELS, conv_width >> i) for i in range(stages + 1)]


def build_dit(args, rng) -> onnx.ModelProto:
    c, d, heads = LATENT_CHANNELS, args.width, args.heads
    head_dim = d // heads
    g = Graph(rng, "dit")
    x = "hidden_states"
    inputs = [
        f32_input("hidden_states", ["B", "T", c]),
        f32_input("timestep", ["B"]),
        f32_input("encoder_hidden_states", ["B", "L", d]),
    ]
    in_channels = c
    if not args.no_context:
        inputs.append(f32_input("context_latents", ["B", "T", 2 * c]))
        x = g.op("Concat", ["hidden_states", "context_latents"], axis=-1)
        in_channels = 3 * c
    # Patch: [B,T,Cin] -> [B,T/2,2*Cin] (frame pairs side by side), then project.
    x = g.op("Reshape", [x, g.const(np.array([0, -1, PATCH * in_channels], np.int64), "shape")], "patch")
    x = g.linear(x, PATCH * in_channels, d)

    # Timestep: sinusoidal(t * 1000) -> Linear -> SiLU -> Linear.
    half = TIMESTEP_FREQS // 2
    freqs = np.exp(-math.log(10000.0) * np.arange(half, dtype=np.float64) / half)
    t = g.op("Unsqueeze", ["timestep", g.const(np.array([1], np.int64), "ax")])
    args_t = g.op("MatMul", [t, g.const((freqs * TIMESTEP_SCALE).astype(np.float32)[None, :], "freqs")])
    temb = g.op("Concat", [g.op("Cos", [args_t]), g.op("Sin", [args_t])], axis=-1)
    temb = g.linear(g.silu(g.linear(temb, TIMESTEP_FREQS, d)), d, d)
    temb_act = g.silu(temb)
    # Six modulation vectors per layer [B,6,D]: the shared projection + a per-layer table.
    temb6 = g.op("Reshape", [g.linear(temb_act, d, 6 * d), g.const(np.array([0, 6, d], np.int64), "shape")])

    cos, sin, rot = g.rope(x, head_dim)
    ctx = "encoder_hidden_states"
    for _ in range(args.layers):
        table = g.weight((6, d), 1.0 / math.sqrt(d), "scale_shift_table")
        mods = g.op("Add", [temb6, table])
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = g.op(
            "Split", [mods, g.const(np.ones(6, np.int64), "split")], outputs=6, axis=1
        )
        # Self-attention with RoPE.
        h = g.modulate(g.rms_norm(x, d), shift_a, scale_a)
        q = g.apply_rope(g.heads(g.linear(h, d, d, bias=False), heads, head_dim), cos, sin, rot)
        k = g.apply_rope(g.heads(g.linear(h, d, d, bias=False), heads, head_dim), cos, sin, rot)
        v = g.heads(g.linear(h, d, d, bias=False), heads, head_dim)
        attn = g.linear(g.merge_heads(g.attention(q, k, v, head_dim), d), d, d, bias=False)
        x = g.op("Add", [x, g.op("Mul", [attn, gate_a])])
        # Cross-attention to the text.
        h = g.rms_norm(x, d)
        q = g.heads(g.linear(h, d, d, bias=False), heads, head_dim)
        k = g.heads(g.linear(ctx, d, d, bias=False), heads, head_dim)
        v = g.heads(g.linear(ctx, d, d, bias=False), heads, head_dim)
        x = g.op("Add", [x, g.linear(g.merge_heads(g.attention(q, k, v, head_dim), d), d, d, bias=False)])
        # SiLU-gated MLP.
        h = g.modulate(g.rms_norm(x, d), shift_m, scale_m)
        hidden = MLP_RATIO * d
        mlp = g.op("Mul", [g.silu(g.linear(h, d, hidden, bias=False)), g.linear(h, d, hidden, bias=False)])
        x = g.op("Add", [x, g.op("Mul", [g.linear(mlp, hidden, d, bias=False), gate_m])])

    shift, scale = g.op(
        "Split", [g.op("Reshape", [g.linear(temb_act, d, 2 * d), g.const(np.array([0, 1, 2 * d], np.int64), "shape")]),
                  g.const(np.array([d, d], np.int64), "split")],
        outputs=2, axis=-1,
    )
    x = g.modulate(g.rms_norm(x, d, affine=False), shift, scale)
    x = g.linear(x, d, PATCH * c)
    if args.fault == "dit-nan":
        x = g.op("Mul", [x, g.const(np.float32(np.nan), "nan")])
    if args.fault == "dit-nan-late":
        late = g.op("Less", ["timestep", g.const(np.float32(NAN_BELOW_TIMESTEP), "cut")])
        poison = g.op("Where", [late, g.const(np.float32(np.nan), "nan"), g.const(np.float32(0.0), "zero")])
        poison = g.op("Reshape", [poison, g.const(np.array([-1, 1, 1], np.int64), "shape")])
        x = g.op("Add", [x, poison])
    # Unpatch: [B,T/2,2C] -> [B,T,C].
    output, unpatch, dims = "velocity", [0, -1, c], ["B", "T", c]
    if args.fault == "dit-output-name":
        output = "noise_pred"
    if args.fault == "dit-output-rank":
        unpatch, dims = [0, -1], ["B", "TC"]
    g.named("Reshape", [x, g.const(np.array(unpatch, np.int64), "shape")], output)
    return g.model(
        "dit", inputs, [f32_input(output, dims)],
        f"ACE-Step-shaped random DiT: width {d}, {args.layers} layers, {heads} heads, seed {args.seed}",
    )


def spectral_envelope(rng: np.random.Generator, freqs: np.ndarray) -> np.ndarray:
    """Linear gain at `freqs` (Hz) of a random smooth envelope (see ENVELOPE_DB)."""
    anchors = np.geomspace(ENVELOPE_LOW_HZ, SAMPLE_RATE / 2, ENVELOPE_ANCHORS)
    db = rng.normal(0.0, ENVELOPE_DB, size=ENVELOPE_ANCHORS)
    at = np.log(np.maximum(freqs, ENVELOPE_LOW_HZ))
    return 10.0 ** (np.interp(at, np.log(anchors), db) / 20.0)


def envelope_fir(rng: np.random.Generator) -> np.ndarray:
    """ENVELOPE_FIR_TAPS linear-phase taps whose response follows a random envelope,
    scaled to unit power gain for white input (so the decoder's level stays put)."""
    taps = ENVELOPE_FIR_TAPS
    freqs = np.fft.rfftfreq(ENVELOPE_FIR_GRID, 1.0 / SAMPLE_RATE)
    zero_phase = np.fft.irfft(spectral_envelope(rng, freqs), ENVELOPE_FIR_GRID)
    h = np.roll(zero_phase, taps // 2)[:taps] * np.hanning(taps + 2)[1:-1]
    return h / np.sqrt(np.sum(h * h))


def build_decoder(args, rng) -> onnx.ModelProto:
    factors = upsample_factors(SAMPLE_RATE // LATENT_FRAME_RATE)
    widths = conv_widths(args.conv_width, len(factors))
    g = Graph(rng, "decoder")
    x = g.conv("latents", LATENT_CHANNELS, widths[0], 1)
    for i, stride in enumerate(factors):
        x = g.conv_transpose(g.silu(x), widths[i], widths[i + 1], stride)
    x = g.conv(g.silu(x), widths[-1], AUDIO_CHANNELS, 7, pad=3, gain=DECODER_OUT_GAIN)
    # The seed's spectral envelope: the same FIR on every channel (a depthwise conv).
    fir = np.tile(envelope_fir(g.rng).astype(np.float32), (AUDIO_CHANNELS, 1, 1))
    pad = ENVELOPE_FIR_TAPS // 2
    x = g.op("Conv", [x, g.const(fir, "envelope")], kernel_shape=[ENVELOPE_FIR_TAPS],
             pads=[pad, pad], group=AUDIO_CHANNELS)
    if args.fault == "decoder-nan":
        x = g.op("Mul", [x, g.const(np.float32(np.nan), "nan")])
    inputs = [f32_input("latents", ["B", LATENT_CHANNELS, "T"])]
    if args.decoder_frame_offset:
        g.named("Identity", [add_frame_tone(g, g.op("Tanh", [x]))], "audio")
        inputs.append(helper.make_tensor_value_info("frame_offset", TensorProto.INT64, [1]))
    else:
        g.named("Tanh", [x], "audio")
    return g.model(
        "decoder",
        inputs,
        [f32_input("audio", ["B", AUDIO_CHANNELS, "S"])],
        f"random transposed-conv decoder, strides {factors}, envelope FIR, seed {args.seed}"
        + (", 40 Hz tone in loop time" if args.decoder_frame_offset else ""),
    )


def add_frame_tone(g: Graph, audio: str) -> str:
    """`audio + FRAME_TONE_GAIN * sin(2 pi t / FRAME_TONE_PERIOD)`, `t` the loop sample of
    each output sample: `frame_offset * rate / fps + n` (exact in int64, reduced to one
    period before it is a float)."""
    samples = g.op("Gather", [g.op("Shape", [audio]), g.const(np.array(2, np.int64), "axis2")])
    n = g.op("Range", [g.const(np.array(0, np.int64), "zero"), samples,
                       g.const(np.array(1, np.int64), "one")])
    first = g.op("Mul", ["frame_offset", g.const(np.array([SAMPLE_RATE // LATENT_FRAME_RATE],
                                                          np.int64), "spf")])
    t = g.op("Mod", [g.op("Add", [n, first]), g.const(np.array([FRAME_TONE_PERIOD], np.int64),
                                                     "period")], fmod=0)
    angle = g.op("Mul", [g.op("Cast", [t], to=TensorProto.FLOAT),
                         g.const(np.array([2 * np.pi / FRAME_TONE_PERIOD], np.float32), "turn")])
    tone = g.op("Mul", [g.op("Sin", [angle]), g.const(np.float32(FRAME_TONE_GAIN), "tone_gain")])
    return g.op("Add", [audio, tone])


def build_stft_decoder(args, rng) -> onnx.ModelProto:
    frames_per_latent = SAMPLE_RATE // LATENT_FRAME_RATE // STFT_HOP
    bins = STFT_N_FFT // 2 + (0 if args.fault == "stft-bins" else 1)
    a, w = AUDIO_CHANNELS, args.conv_width
    g = Graph(rng, "decoder")
    x = g.conv("latents", LATENT_CHANNELS, w, 1)
    x = g.conv_transpose(g.silu(x), w, w, frames_per_latent)
    x = g.conv(g.silu(x), w, a * bins * 2, 1)  # [B, A*F*2, N]
    x = g.op("Mul", [g.op("Tanh", [x]), g.const(np.float32(STFT_GAIN), "gain")])
    x = g.op("Reshape", [x, g.const(np.array([0, a, bins, 2, -1], np.int64), "shape")])
    x = g.op("Transpose", [x], perm=[0, 1, 4, 2, 3])  # [B, A, N, F, 2]
    # The seed's spectral envelope, so that another seed colours the sound differently,
    # not only another white noise.
    gain = spectral_envelope(g.rng, np.arange(bins) * SAMPLE_RATE / STFT_N_FFT)
    name = "spectrum" if args.fault == "stft-output-name" else "stft"
    g.named("Mul", [x, g.const(gain.astype(np.float32)[:, None], "envelope")], name)
    return g.model(
        "decoder",
        [f32_input("latents", ["B", LATENT_CHANNELS, "T"])],
        [f32_input(name, ["B", a, "N", bins, 2])],
        f"random STFT decoder, n_fft {STFT_N_FFT}, hop {STFT_HOP}, seed {args.seed}",
    )


def build_encoder(args, rng) -> onnx.ModelProto:
    factors = list(reversed(upsample_factors(SAMPLE_RATE // LATENT_FRAME_RATE)))
    widths = list(reversed(conv_widths(args.conv_width, len(factors))))
    g = Graph(rng, "encoder")
    x = g.conv("audio", AUDIO_CHANNELS, widths[0], 7, pad=3)
    for i, stride in enumerate(factors):
        pad = (stride + 1) // 2
        x = g.conv(g.silu(x), widths[i], widths[i + 1], stride + 2 * pad, stride=stride, pad=pad)
    g.named("Conv", [g.silu(x), g.weight((LATENT_CHANNELS, widths[-1], 1), ENCODER_OUT_GAIN / math.sqrt(widths[-1])),
                     g.weight((LATENT_CHANNELS,), 0.02, "b")], "latents", kernel_shape=[1])
    return g.model(
        "encoder",
        [f32_input("audio", ["B", AUDIO_CHANNELS, "S"])],
        [f32_input("latents", ["B", LATENT_CHANNELS, "T"])],
        f"random strided-conv encoder, strides {factors}, seed {args.seed}",
    )


def build_text(args, rng) -> onnx.ModelProto:
    d = args.width
    g = Graph(rng, "text")
    emb = g.op("Gather", [g.weight((len(TAGS), d), 1.0, "embedding"), "ids"], axis=0)
    h = g.linear(g.silu(g.linear(emb, d, d)), d, d)
    g.named("Add", [emb, h], "encoder_hidden_states")
    return g.model(
        "text",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, "L"])],
        [f32_input("encoder_hidden_states", [1, "L", d])],
        f"random tag embedding, {len(TAGS)} tags, seed {args.seed}",
    )


def build_timbre(args, rng) -> onnx.ModelProto:
    """A reference's latents -> TIMBRE_ROWS condition rows: the mean and the spread over
    frames of each channel, each row its own projection of them (SiLU MLP)."""
    c, d = LATENT_CHANNELS, args.width
    g = Graph(rng, "timbre")
    mean = g.op("ReduceMean", ["reference_latents"], axes=[1], keepdims=1)
    centred = g.op("Sub", ["reference_latents", mean])
    spread = g.op("ReduceMean", [g.op("Mul", [centred, centred])], axes=[1], keepdims=1)
    stats = g.op("Concat", [mean, spread], axis=2)  # [1, 1, 2C]
    rows = g.op("MatMul", [stats, g.weight((2 * c, TIMBRE_ROWS * d), 1.0 / np.sqrt(2 * c))])
    h = g.op("Reshape", [g.silu(rows), g.const(np.array([1, TIMBRE_ROWS, d], np.int64), "shape")])
    g.named("Add", [g.linear(h, d, d), g.weight((1, TIMBRE_ROWS, d), 0.5, "bias")], "encoder_hidden_states")
    return g.model(
        "timbre",
        [f32_input("reference_latents", [1, TIMBRE_FRAMES, c])],
        [f32_input("encoder_hidden_states", [1, TIMBRE_ROWS, d])],
        f"random timbre rows from a reference's channel statistics, seed {args.seed}",
    )


def parity_cases(args, rng) -> dict[str, tuple[dict, list[str]]]:
    """Per graph: the inputs (name -> array) and the output names to compare."""
    c, d = LATENT_CHANNELS, args.width
    batch, frames, text_len = 2, 6, 3
    dit_inputs = {
        "hidden_states": rng.normal(size=(batch, frames, c)).astype(np.float32),
        "timestep": np.array([0.9, 0.35], np.float32),
        "encoder_hidden_states": rng.normal(size=(batch, text_len, d)).astype(np.float32),
    }
    if not args.no_context:
        dit_inputs["context_latents"] = rng.normal(size=(batch, frames, 2 * c)).astype(np.float32)
    samples = SAMPLE_RATE // LATENT_FRAME_RATE
    return {
        "dit": (dit_inputs, ["velocity"]),
        "decoder": (
            {"latents": rng.normal(size=(1, c, 3)).astype(np.float32)}
            | ({"frame_offset": np.array([-5], np.int64)} if args.decoder_frame_offset else {}),
            ["stft" if args.decoder == "stft" else "audio"],
        ),
        "encoder": (
            {"audio": (0.5 * np.sin(np.arange(2 * samples) * 0.05)[None, None, :].repeat(AUDIO_CHANNELS, 1)).astype(np.float32)},
            ["latents"],
        ),
        "text": ({"ids": np.array([[0, 7, len(TAGS) - 1]], np.int64)}, ["encoder_hidden_states"]),
    } | ({"timbre": (
        {"reference_latents": rng.normal(size=(1, TIMBRE_FRAMES, c)).astype(np.float32)},
        ["encoder_hidden_states"],
    )} if args.timbre else {})


DTYPES = {np.dtype(np.float32): "f32", np.dtype(np.int64): "i64"}


def toml_tensor(graph: str, name: str, array: np.ndarray) -> str:
    shape = ", ".join(str(n) for n in array.shape)
    return (f'  {{ name = "{name}", file = "parity/{graph}.{name}.bin", '
            f'dtype = "{DTYPES[array.dtype]}", shape = [{shape}] }},')


def geometry_section() -> str:
    """The `[geometry]` table of ACE-Step v1.5's latent geometry (also the export tools')."""
    return f"""[geometry]
sample_rate = {SAMPLE_RATE}
audio_channels = {AUDIO_CHANNELS}
latent_channels = {LATENT_CHANNELS}
latent_frame_rate = {LATENT_FRAME_RATE}
"""


def parity_run(graph: str, inputs: dict, outputs: dict, out: Path) -> str:
    """Writes one `[[parity.run]]`'s tensors (name -> numpy array) under `out/parity/`, raw
    little-endian, and returns its TOML (also the export tools')."""
    lines = [f'[[parity.run]]\ngraph = "{graph}"\n']
    for section, tensors in (("inputs", inputs), ("outputs", outputs)):
        lines.append(f"{section} = [\n")
        for name, array in tensors.items():
            write_bytes(out / "parity" / f"{graph}.{name}.bin", array.astype(array.dtype.newbyteorder("<")).tobytes())
            lines.append(toml_tensor(graph, name, array) + "\n")
        lines.append("]\n")
    return "".join(lines)


def manifest(args, parity_runs: list[str]) -> str:
    return f"""format = "{FORMAT}"
name = "{args.name}"
license = "MIT"
provenance = "random weights (seed {args.seed}, width {args.width}, {args.layers} layer(s), {args.heads} heads) written by latentd tools/bundles/make_test_bundle.py; not a trained model"
{geometry_section()}[sampler]
convention = "flow-velocity"   # x_t = t*noise + (1-t)*x0, v = noise - x0
default_steps = {DEFAULT_STEPS}
default_shift = {DEFAULT_SHIFT}
guidance = "none"              # or "cfg": the batch is doubled with the null condition
[dit]
file = "dit.onnx"
t_multiple = {PATCH}                 # odd T is padded
[decoder]
file = "decoder.onnx"
context_frames = {DECODER_CONTEXT_FRAMES}
{decoder_output(args)}[encoder]
file = "encoder.onnx"
[text]
kind = "tags"
vocab = "tags.txt"             # one tag a line; unknown words are reported, never silently dropped
file = "text.onnx"
{timbre_section(args)}{parity_section(parity_runs)}"""


def timbre_section(args) -> str:
    if not args.timbre:
        return ""
    return f'[timbre]\nfile = "timbre.onnx"\nreference_frames = {TIMBRE_FRAMES}\n'


def decoder_output(args) -> str:
    if args.decoder == "audio":
        return ""
    return f'output = "stft"\nn_fft = {STFT_N_FFT}\nhop = {STFT_HOP}\nwindow = "hann"\n'


def parity_section(runs: list[str]) -> str:
    if not runs:
        return ""
    return f"""[parity]
# Expected outputs computed by onnx.reference.ReferenceEvaluator (onnx {onnx.__version__}).
atol = {PARITY_ATOL}
rtol = {PARITY_RTOL}
{"".join(runs)}"""


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--width", type=int, help="DiT width D (also the text width)")
    parser.add_argument("--layers", type=int, help="DiT layers N")
    parser.add_argument("--heads", type=int, help="attention heads H (D / H even)")
    parser.add_argument("--conv-width", type=int, help="decoder / encoder channels at the latent end")
    parser.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    parser.add_argument("--name", help="bundle name (default: the preset's)")
    parser.add_argument("--no-context", action="store_true", help="a DiT without context_latents")
    parser.add_argument(
        "--fault", choices=FAULTS,
        help="write a broken bundle for the refusal tests (no [parity] section): " + "; ".join(
            f"{k}: {v}" for k, v in FAULTS.items()),
    )
    parser.add_argument(
        "--decoder", choices=["audio", "stft"], default="audio",
        help="what the decoder outputs: audio samples, or an STFT the host inverts",
    )
    parser.add_argument("--decoder-frame-offset", action="store_true",
                        help="the audio decoder takes frame_offset and adds a tone in loop time")
    parser.add_argument("--timbre", action="store_true",
                        help=f"add a timbre graph ({TIMBRE_FRAMES} reference frames -> {TIMBRE_ROWS} rows)")
    parser.add_argument("--out", required=True, type=Path, help="bundle folder to write")
    args = parser.parse_args(argv)
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.width <= 0 or args.layers <= 0 or args.heads <= 0 or args.conv_width <= 0:
        parser.error("--width, --layers, --heads and --conv-width must be positive")
    if args.width % args.heads or (args.width // args.heads) % 2:
        parser.error(f"--width {args.width} must be --heads {args.heads} times an even head size")

    if args.decoder_frame_offset and args.decoder != "audio":
        parser.error("--decoder-frame-offset needs --decoder audio")
    if args.fault in ("stft-output-name", "stft-bins") and args.decoder != "stft":
        parser.error(f"--fault {args.fault} needs --decoder stft")

    # One generator per graph, each seeded from (seed, graph), so the graphs do not shift
    # each other's weights when one changes.
    def rng(index: int) -> np.random.Generator:
        return np.random.default_rng([args.seed, index])

    models = {
        "dit": build_dit(args, rng(1)),
        "decoder": (build_stft_decoder if args.decoder == "stft" else build_decoder)(args, rng(2)),
        "encoder": build_encoder(args, rng(3)),
        "text": build_text(args, rng(4)),
    } | ({"timbre": build_timbre(args, rng(6))} if args.timbre else {})
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    cases = {} if args.fault else parity_cases(args, rng(5))
    for graph, (inputs, output_names) in cases.items():
        model = models[graph]
        expected = ReferenceEvaluator(model).run(output_names, inputs)
        outputs = {}
        for name, array in zip(output_names, expected):
            outputs[name] = np.asarray(array, np.float32)
            if not np.all(np.isfinite(outputs[name])):
                raise SystemExit(f"make_test_bundle: {graph}.{name}: reference output not finite")
        runs.append(parity_run(graph, inputs, outputs, out))
    for graph, model in models.items():
        write_bytes(out / f"{graph}.onnx", model.SerializeToString(deterministic=True))
    write_bytes(out / "tags.txt", ("\n".join(TAGS) + "\n").encode())
    write_bytes(out / "bundle.toml", manifest(args, runs).encode())
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"make_test_bundle: wrote {out} ({args.name}, {total} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
