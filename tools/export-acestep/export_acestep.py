"""Export an ACE-Step v1.5 checkpoint (diffusers format) to a latentd-bundle/1 folder.

    python3 tools/export-acestep/export_acestep.py --checkpoint CKPT --out BUNDLE
    python3 tools/export-acestep/export_acestep.py --random-tiny --out BUNDLE   # CI: random init

CKPT is a diffusers-format ACE-Step v1.5 pipeline folder (`model_index.json`, `transformer/`,
`condition_encoder/`, `vae/`, `text_encoder/`, `tokenizer/`, optionally `audio_tokenizer/`
and `audio_token_detokenizer/`), as published on the Hugging Face hub, e.g.
`ACE-Step/acestep-v15-xl-base-diffusers`. The model code is diffusers' own
(`AceStepTransformer1DModel`, `AceStepConditionEncoder`, `AutoencoderOobleck`) and
transformers' `Qwen3Model`: nothing is taken from the checkpoint's remote code.

What each graph holds (docs/models.md, "ACE-Step v1.5 through the export tool"):

- `dit.onnx`: the transformer, with latentd's `context_latents` (source latents, then a mask
  of 1 where a source is given) mapped to ACE-Step's: where there is no source, its silence
  latent; where there is one, the source's 5 Hz cover hints (the checkpoint's audio tokenizer
  and detokenizer; without them, the source latents themselves); the chunk mask is all ones
  (generate everywhere). An all-zero `encoder_hidden_states` row (latentd's null condition)
  becomes the checkpoint's learned `null_condition_emb`, so `guidance = "cfg"` means what
  ACE-Step's base models were trained for. `timestep_r = timestep` (plain flow matching).
- `decoder.onnx` / `encoder.onnx`: the Oobleck VAE (weight norm folded), the encoder
  returning the latent distribution's mean. The manifest's `context_frames` is the decoder's
  receptive field, measured here (how far a change to one latent frame reaches).
- `text.onnx`: tag ids in, condition rows out. The graph maps each tag to its Qwen3 token
  ids (a table made here with the checkpoint's tokenizer: `" tag,"`), wraps them in
  ACE-Step's SFT caption template, runs Qwen3 and the text projector, and puts the
  instrumental lyric's encoding (computed here, constant) first.
- `timbre.onnx`: a reference's latents (`[1, 750, 64]`, 30 s) in, its timbre row out (the
  condition encoder's timbre encoder); an all-zero reference is the silence latent. latentd
  appends these rows to the text's, for no reference the graph's own all-zero output, so
  the condition holds what ACE-Step's condition encoder packs (lyric, timbre, text) in
  another order, which the DiT's position-free cross-attention does not see.

Export traps handled (../shared/notes/models.md): GQA attention runs with K/V heads repeated
(no `enable_gqa`), masks are additive biases built from the sequence length, `T` is padded
by latentd to `t_multiple` (no shape branch), graphs past 2 GB keep their weights in
external data files. `--weights fp16` or `--weights bf16` stores the weights in half
precision (rounded in torch first, so the parity vectors are the graphs'; bf16 holds a bf16
checkpoint exactly and cannot overflow, fp16 loses its smallest weights); the graphs compute
in f32.

Threading: a command-line tool; single-threaded apart from torch's own pools.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bundles"))
from make_test_bundle import (  # noqa: E402
    AUDIO_CHANNELS, FORMAT, LATENT_CHANNELS, LATENT_FRAME_RATE, PARITY_ATOL, PARITY_RTOL,
    SAMPLE_RATE, geometry_section, parity_run, write_bytes)
import onnx_weights  # noqa: E402  (tools/bundles, beside make_test_bundle)

SAMPLES_PER_FRAME = SAMPLE_RATE // LATENT_FRAME_RATE
# ACE-Step's timbre reference: 30 s of latents (`timbre_fix_frame` in the pipeline).
TIMBRE_FRAMES = 30 * LATENT_FRAME_RATE
OPSET = 18
# One ONNX file holds at most 2 GiB (protobuf); past this the weights go to a .data file.
EXTERNAL_DATA_BYTES = 1 << 30
DEFAULT_TAGS = Path(__file__).with_name("tags.txt")


# --------------------------------------------------------------------------- attention ---


class ExportAttention:
    """ACE-Step attention as ONNX can take it: the same projections, Q/K norms and RoPE as
    diffusers' processor, then plain scaled-dot-product attention with K/V heads repeated for
    GQA (SDPA's `enable_gqa` does not export) and the mask as an additive bias."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 image_rotary_emb=None):
        from diffusers.models.embeddings import apply_rotary_emb

        cross = attn.is_cross_attention and encoder_hidden_states is not None
        kv_input = encoder_hidden_states if cross else hidden_states
        q = attn.norm_q(attn.to_q(hidden_states).unflatten(-1, (attn.heads, attn.head_dim)))
        k = attn.norm_k(attn.to_k(kv_input).unflatten(-1, (attn.kv_heads, attn.head_dim)))
        v = attn.to_v(kv_input).unflatten(-1, (attn.kv_heads, attn.head_dim))
        if not cross and image_rotary_emb is not None:
            q = apply_rotary_emb(q, image_rotary_emb, use_real=True, use_real_unbind_dim=-2, sequence_dim=1)
            k = apply_rotary_emb(k, image_rotary_emb, use_real=True, use_real_unbind_dim=-2, sequence_dim=1)
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))
        groups = attn.heads // attn.kv_heads
        if groups > 1:
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
        if attention_mask is not None and attention_mask.dtype == torch.bool:
            attention_mask = torch.zeros_like(attention_mask, dtype=q.dtype).masked_fill(
                ~attention_mask, torch.finfo(q.dtype).min)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, scale=attn.scaling)
        out = out.transpose(1, 2).flatten(2, 3)
        return attn.to_out[1](attn.to_out[0](out))


def use_export_attention(*modules: nn.Module) -> None:
    """Every ACE-Step attention under `modules` runs [`ExportAttention`]."""
    from diffusers.models.transformers.ace_step_transformer import AceStepAttention

    for module in modules:
        for sub in module.modules():
            if isinstance(sub, AceStepAttention):
                sub.processor = ExportAttention()


# ------------------------------------------------------------------------------ graphs ---


class Dit(nn.Module):
    """latentd's DiT interface over ACE-Step's transformer (see the module doc)."""

    def __init__(self, transformer, condition_encoder, audio_tokenizer=None, detokenizer=None):
        super().__init__()
        self.transformer = transformer
        self.audio_tokenizer = audio_tokenizer
        self.detokenizer = detokenizer
        self.register_buffer("silence", condition_encoder.silence_latent.detach().clone())
        self.register_buffer("null_condition", condition_encoder.null_condition_emb.detach().clone())

    def cover_hints(self, source: torch.Tensor) -> torch.Tensor:
        """The source's 5 Hz hints at 25 Hz (`T` is a multiple of the pool window here)."""
        if self.audio_tokenizer is None or self.detokenizer is None:
            return source
        b, t, c = source.shape
        window = self.audio_tokenizer.pool_window_size
        quantized, _ = self.audio_tokenizer(source.reshape(b, t // window, window, c))
        return self.detokenizer(quantized)[:, :t, :]

    def forward(self, hidden_states, timestep, encoder_hidden_states, context_latents):
        c = hidden_states.shape[-1]
        source, given = context_latents[..., :c], context_latents[..., c:]
        silence = self.silence[:, : hidden_states.shape[1], :]
        src = given * self.cover_hints(source) + (1.0 - given) * silence
        context = torch.cat([src, torch.ones_like(src)], dim=-1)
        null_row = encoder_hidden_states.abs().amax(dim=(1, 2), keepdim=True) == 0
        cond = torch.where(null_row, self.null_condition.to(encoder_hidden_states.dtype), encoder_hidden_states)
        return self.transformer(hidden_states=hidden_states, timestep=timestep, timestep_r=timestep,
                                encoder_hidden_states=cond, context_latents=context, return_dict=False)[0]


class Decoder(nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latents):
        return self.vae.decode(latents).sample


class Encoder(nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, audio):
        return self.vae.encode(audio).latent_dist.mean


class Text(nn.Module):
    """Tag ids -> ACE-Step's packed condition (see the module doc)."""

    def __init__(self, text_encoder, projector, tag_tokens, prefix, suffix, fixed_rows):
        super().__init__()
        self.text_encoder = text_encoder
        self.projector = projector
        width = max(len(t) for t in tag_tokens)
        table = torch.zeros(len(tag_tokens), width, dtype=torch.long)
        used = torch.zeros(len(tag_tokens), width, dtype=torch.bool)
        for i, tokens in enumerate(tag_tokens):
            table[i, : len(tokens)] = torch.tensor(tokens)
            used[i, : len(tokens)] = True
        self.register_buffer("table", table)
        self.register_buffer("used", used)
        self.register_buffer("prefix", torch.tensor(prefix, dtype=torch.long))
        self.register_buffer("suffix", torch.tensor(suffix, dtype=torch.long))
        self.register_buffer("fixed_rows", fixed_rows.detach().clone())

    def caption(self, ids):
        """The caption's token ids for tag ids `[1, L]`: `[1, N]`."""
        tags = ids[0]
        tokens = self.table[tags][self.used[tags]]
        return torch.cat([self.prefix, tokens, self.suffix])[None, :]

    def forward(self, ids):
        hidden = self.text_encoder(input_ids=self.caption(ids)).last_hidden_state
        return torch.cat([self.fixed_rows, self.projector(hidden)], dim=1)


class Timbre(nn.Module):
    """A timbre reference's latents -> its condition row (ACE-Step's timbre encoder; an
    all-zero reference, latentd's "no reference", is the checkpoint's silence latent, as the
    pipeline uses when it is given none)."""

    def __init__(self, condition_encoder):
        super().__init__()
        self.encoder = condition_encoder.timbre_encoder
        self.register_buffer("silence", condition_encoder.silence_latent[:, :TIMBRE_FRAMES].detach().clone())

    def reference(self, reference_latents):
        """The reference the encoder sees: the silence latent for an all-zero one."""
        none = reference_latents.abs().amax(dim=(0, 1, 2)) == 0
        return torch.where(none, self.silence, reference_latents)

    def forward(self, reference_latents):
        reference = self.reference(reference_latents)
        # The encoder's unpacking of references per batch item (bincount, argsort, a
        # data-dependent size) does not export; for one reference of one item it is that
        # reference's pooled row, so it is swapped for exactly that while tracing.
        self.encoder.unpack_timbre_embeddings = one_reference_rows
        try:
            rows, _ = self.encoder(reference, torch.zeros(1, dtype=torch.long, device=reference.device))
        finally:
            del self.encoder.unpack_timbre_embeddings
        return rows


def one_reference_rows(pooled: torch.Tensor, order_mask: torch.Tensor):
    """ACE-Step's `unpack_timbre_embeddings` for one reference of one batch item."""
    return pooled[None, :, :], torch.ones(1, pooled.shape[0], dtype=torch.long, device=pooled.device)


# --------------------------------------------------------------------------- the model ---


class Parts:
    """The checkpoint's modules, eval mode, f32, attention made exportable."""

    def __init__(self, transformer, condition_encoder, vae, text_encoder, tokenize,
                 audio_tokenizer=None, detokenizer=None, provenance="", guidance="none",
                 license=None):
        self.transformer = transformer
        self.condition_encoder = condition_encoder
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenize = tokenize
        self.audio_tokenizer = audio_tokenizer
        self.detokenizer = detokenizer
        self.provenance = provenance
        self.guidance = guidance
        self.license = license
        for m in self.modules():
            m.eval().float().requires_grad_(False)
        use_export_attention(*self.modules())
        fold_weight_norm(vae)

    def modules(self):
        return [m for m in (self.transformer, self.condition_encoder, self.vae, self.text_encoder,
                            self.audio_tokenizer, self.detokenizer) if m is not None]

    @property
    def t_multiple(self) -> int:
        window = self.audio_tokenizer.pool_window_size if self.audio_tokenizer is not None else 1
        return math.lcm(self.transformer.patch_size, window)


def fold_weight_norm(vae: nn.Module) -> None:
    """Bakes the VAE's weight-normalised convolutions into plain weights (faster graphs)."""
    for module in vae.modules():
        if hasattr(module, "weight_g"):
            torch.nn.utils.remove_weight_norm(module)
        elif hasattr(module, "parametrizations") and "weight" in module.parametrizations:
            torch.nn.utils.parametrize.remove_parametrizations(module, "weight")


def load_checkpoint(path: Path) -> Parts:
    from diffusers import AutoencoderOobleck, AceStepTransformer1DModel
    from diffusers.pipelines.ace_step.modeling_ace_step import (
        AceStepAudioTokenDetokenizer, AceStepAudioTokenizer, AceStepConditionEncoder)
    from transformers import AutoTokenizer, Qwen3Model

    index = json.loads((path / "model_index.json").read_text())
    transformer = AceStepTransformer1DModel.from_pretrained(path / "transformer", torch_dtype=torch.float32)
    condition = AceStepConditionEncoder.from_pretrained(path / "condition_encoder", torch_dtype=torch.float32)
    vae = AutoencoderOobleck.from_pretrained(path / "vae", torch_dtype=torch.float32)
    text = Qwen3Model.from_pretrained(path / "text_encoder", torch_dtype=torch.float32,
                                      attn_implementation="eager")
    tokenizer = AutoTokenizer.from_pretrained(path / "tokenizer")
    hints = [None, None]
    if (path / "audio_tokenizer").is_dir() and (path / "audio_token_detokenizer").is_dir():
        hints = [AceStepAudioTokenizer.from_pretrained(path / "audio_tokenizer", torch_dtype=torch.float32),
                 AceStepAudioTokenDetokenizer.from_pretrained(path / "audio_token_detokenizer",
                                                              torch_dtype=torch.float32)]
    turbo = bool(transformer.config.get("is_turbo", False))
    provenance = (f"ACE-Step v1.5 ({transformer.config.get('model_version') or 'unnamed variant'}"
                  f"{', turbo' if turbo else ''}) from {path.resolve()} (diffusers "
                  f"{index.get('_diffusers_version', '?')} format), exported by latentd "
                  "tools/export-acestep")
    return Parts(transformer, condition, vae, text,
                 lambda s: tokenizer(s, add_special_tokens=False).input_ids, *hints,
                 provenance=provenance, guidance="none" if turbo else "cfg")


def card_license(path: Path) -> str | None:
    """The `license:` of the checkpoint's model card front matter (README.md), if stated."""
    card = path / "README.md"
    if not card.is_file():
        return None
    lines = card.read_text(errors="replace").splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    for line in lines[1:]:
        if line.strip() == "---":
            return None
        key, _, value = line.partition(":")
        if key.strip() == "license" and value.strip():
            return value.strip().strip("'\"")
    return None


def random_tiny(seed: int) -> Parts:
    """ACE-Step v1.5's architecture at small widths with random weights, and a stand-in for
    the Qwen tokenizer (a fixed hash of each character): proves the graphs export and load,
    makes no music."""
    from diffusers import AutoencoderOobleck, AceStepTransformer1DModel
    from diffusers.pipelines.ace_step.modeling_ace_step import (
        AceStepAudioTokenDetokenizer, AceStepAudioTokenizer, AceStepConditionEncoder)
    from transformers import Qwen3Config, Qwen3Model

    torch.manual_seed(seed)
    width, text_width, vocab = 64, 32, 512
    attention = dict(num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=8)
    transformer = AceStepTransformer1DModel(hidden_size=width, intermediate_size=2 * width,
                                            num_hidden_layers=2, **attention)
    condition = AceStepConditionEncoder(hidden_size=width, intermediate_size=2 * width,
                                        text_hidden_dim=text_width, num_lyric_encoder_hidden_layers=1,
                                        num_timbre_encoder_hidden_layers=1, **attention)
    condition.silence_latent.normal_(0.0, 0.5)
    tokenizer = AceStepAudioTokenizer(hidden_size=width, intermediate_size=2 * width, fsq_dim=width,
                                      fsq_input_levels=[8, 5, 5], num_attention_pooler_hidden_layers=1,
                                      **attention)
    detokenizer = AceStepAudioTokenDetokenizer(hidden_size=width, intermediate_size=2 * width,
                                               num_attention_pooler_hidden_layers=1, **attention)
    vae = AutoencoderOobleck(encoder_hidden_size=2 * LATENT_CHANNELS, downsampling_ratios=[2, 4, 4, 6, 10],
                             channel_multiples=[1, 1, 1, 1, 1], decoder_channels=8,
                             decoder_input_channels=LATENT_CHANNELS, audio_channels=AUDIO_CHANNELS,
                             sampling_rate=SAMPLE_RATE)
    text = Qwen3Model(Qwen3Config(vocab_size=vocab, hidden_size=text_width, intermediate_size=2 * text_width,
                                  num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                  head_dim=16, attn_implementation="eager"))
    return Parts(transformer, condition, vae, text,
                 lambda s: [(ord(ch) * 31 + 7) % vocab for ch in s], tokenizer, detokenizer,
                 provenance=f"random weights (seed {seed}) in ACE-Step v1.5's architecture at small "
                 "widths (DiT 64 wide, 2 layers), written by latentd tools/export-acestep "
                 "--random-tiny; not a trained model", guidance="none", license="MIT")


# ------------------------------------------------------------------------------- text ---


def caption_template(tokenize, duration_s: int) -> tuple[list[int], list[int]]:
    """ACE-Step's SFT caption template around the tags, as token ids (prefix, suffix)."""
    from diffusers.pipelines.ace_step.pipeline_ace_step import (
        DEFAULT_DIT_INSTRUCTION, SFT_GEN_PROMPT, AceStepPipeline)

    metas = AceStepPipeline._build_metadata_string(audio_duration=duration_s)
    before, after = SFT_GEN_PROMPT.format(DEFAULT_DIT_INSTRUCTION, "\x00", metas).split("\x00")
    return tokenize(before), tokenize(after)


INSTRUMENTAL_LYRIC = "# Languages\nen\n\n# Lyric\n<|endoftext|>"


def lyric_input(parts: Parts) -> tuple[torch.Tensor, torch.Tensor]:
    """The instrumental lyric (the pipeline's lyric for no lyrics) as the condition encoder
    takes it: token embeddings `[1, N, text width]` and an all-true mask."""
    lyric_ids = torch.tensor([parts.tokenize(INSTRUMENTAL_LYRIC)])
    embeds = parts.text_encoder.get_input_embeddings()(lyric_ids)
    return embeds, torch.ones(lyric_ids.shape, dtype=torch.bool)


def lyric_rows(parts: Parts) -> torch.Tensor:
    """The instrumental lyric's encoding: `[1, rows, D]`."""
    embeds, mask = lyric_input(parts)
    return parts.condition_encoder.lyric_encoder(inputs_embeds=embeds, attention_mask=mask)


def tag_vocabulary(path: Path) -> list[str]:
    tags = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(set(tags)) != len(tags):
        raise SystemExit(f"export-acestep: {path}: duplicate tags")
    return tags


def build_text(parts: Parts, tags: list[str], duration_s: int) -> Text:
    prefix, suffix = caption_template(parts.tokenize, duration_s)
    tag_tokens = [parts.tokenize(f" {tag},") for tag in tags]
    return Text(parts.text_encoder, parts.condition_encoder.text_projector, tag_tokens, prefix, suffix,
                lyric_rows(parts)).eval()


def check_against_condition_encoder(parts: Parts, text: Text, timbre: Timbre, ids: torch.Tensor,
                                    reference: torch.Tensor) -> float:
    """Max |difference| between the condition latentd assembles (the text graph's rows, then
    the timbre graph's) and the condition encoder run the pipeline's way on the same caption and
    reference, which packs lyric, timbre, text. The DiT's cross-attention has no positions, so
    only the rows matter, not their order; they are compared in the encoder's order."""
    caption = text.caption(ids)
    hidden = parts.text_encoder(input_ids=caption).last_hidden_state
    lyric_embeds, lyric_mask = lyric_input(parts)
    expected, _ = parts.condition_encoder(
        text_hidden_states=hidden, text_attention_mask=torch.ones(caption.shape, dtype=torch.bool),
        lyric_hidden_states=lyric_embeds, lyric_attention_mask=lyric_mask,
        refer_audio_acoustic_hidden_states_packed=timbre.reference(reference),
        refer_audio_order_mask=torch.zeros(1, dtype=torch.long))
    lyric = text.fixed_rows.shape[1]
    text_rows, timbre_rows = text(ids), timbre(reference)
    got = torch.cat([text_rows[:, :lyric], timbre_rows, text_rows[:, lyric:]], dim=1)
    return float((got - expected).abs().max())


# ----------------------------------------------------------------------------- export ---


# `--weights`: the half-precision formats a bundle's weights may be stored in.
HALF_FORMATS = ("fp16", "bf16")


def round_to_half(half: str, *modules: nn.Module) -> None:
    """Rounds the modules' weights to `half` (onnx_weights.round_weights), so a graph's
    weights are stored as `half` without a further loss and the torch modules the parity
    vectors and checks come from are the graphs'."""
    try:
        onnx_weights.round_weights(modules, half)
    except ValueError as err:
        raise SystemExit(f"export-acestep: --weights {half}: {err}") from None


def export_graph(module: nn.Module, inputs: dict, outputs: list[str], dynamic: dict, path: Path,
                 half: str | None = None) -> tuple[int, int]:
    """Exports `module` with named inputs and outputs; weights past 1 GiB go to `<file>.data`.
    With `half` ("fp16", "bf16"), large weights (rounded by `round_to_half`) are stored in
    that format (tools/bundles/onnx_weights.py; the graph still computes in f32); constants
    the exporter folded stay f32. Returns the (tensors, elements) stored in half precision."""
    # torch writes graphs past 2 GB with external data of its own, whatever it is asked:
    # export into a scratch folder beside the bundle, which goes with everything in it.
    with tempfile.TemporaryDirectory(prefix=".export-", dir=path.parent) as scratch:
        tmp = Path(scratch) / path.name
        with torch.no_grad():
            torch.onnx.export(module, tuple(inputs.values()), str(tmp), input_names=list(inputs),
                              output_names=outputs, dynamic_axes=dynamic, opset_version=OPSET,
                              dynamo=True, external_data=False)
        model = onnx.load(str(tmp))
    stored = onnx_weights.store_half(model, half, exact_only=True) if half else (0, 0)
    big = sum(t.ByteSize() for t in model.graph.initializer) > EXTERNAL_DATA_BYTES
    onnx.save_model(model, str(path), save_as_external_data=big, all_tensors_to_one_file=True,
                    location=path.name + ".data" if big else None)
    return stored


def torch_parity_run(graph: str, module: nn.Module, inputs: dict, output: str, out: Path) -> str:
    """Writes one `[[parity.run]]`: the inputs and the torch module's output."""
    with torch.no_grad():
        expected = module(*inputs.values()).numpy()
    return parity_run(graph, {k: v.numpy() for k, v in inputs.items()}, {output: expected}, out)


def decoder_reach(decoder: Decoder, frames: int = 40) -> int:
    """Latent frames on each side that a change to one latent frame reaches in the audio."""
    g = torch.Generator().manual_seed(3)
    base = torch.randn(1, LATENT_CHANNELS, frames, generator=g)
    moved = base.clone()
    moved[:, :, frames // 2] += 1.0
    with torch.no_grad():
        diff = (decoder(moved) - decoder(base)).abs().amax(dim=(0, 1))
    touched = torch.nonzero(diff > 1e-7 * float(diff.max())).flatten()
    if len(touched) == 0:
        return 0
    first, last = int(touched[0]) // SAMPLES_PER_FRAME, int(touched[-1]) // SAMPLES_PER_FRAME
    return max(frames // 2 - first, last - frames // 2)


def manifest(name: str, parts: Parts, steps: int, shift: float, context_frames: int,
             default_prompt: str, parity: list[str]) -> str:
    return f"""format = "{FORMAT}"
name = "{name}"
license = {json.dumps(parts.license)}
provenance = {json.dumps(parts.provenance)}
{geometry_section()}[sampler]
convention = "flow-velocity"
default_steps = {steps}
default_shift = {shift}
guidance = "{parts.guidance}"
[dit]
file = "dit.onnx"
t_multiple = {parts.t_multiple}
[decoder]
file = "decoder.onnx"
context_frames = {context_frames}
[encoder]
file = "encoder.onnx"
[timbre]
file = "timbre.onnx"
reference_frames = {TIMBRE_FRAMES}
[text]
kind = "tags"
vocab = "tags.txt"
file = "text.onnx"
default_prompt = {json.dumps(default_prompt)}
[parity]
# Expected outputs computed by the exported torch modules (torch {torch.__version__}).
atol = {PARITY_ATOL}
rtol = {PARITY_RTOL}
{"".join(parity)}"""


def export(parts: Parts, tags: list[str], out: Path, name: str, steps: int, shift: float,
           duration_s: int, default_prompt: str, weights: str = "f32") -> dict:
    out.mkdir(parents=True, exist_ok=True)
    half = weights if weights in HALF_FORMATS else None
    if half:
        round_to_half(half, *parts.modules())
        parts.provenance += f"; weights stored as {half} (computed in f32)"
    g = torch.Generator().manual_seed(5)
    c, tm = LATENT_CHANNELS, parts.t_multiple
    width = parts.condition_encoder.config.hidden_size
    report = {"out": str(out), "t_multiple": tm, "weights": weights, "half": {}}

    def export_graph_named(module, inputs, outputs, dynamic, graph):
        if half:  # the wrapper's own constants too (the text graph's lyric rows)
            round_to_half(half, module)
        report["half"][graph] = export_graph(module, inputs, outputs, dynamic,
                                             out / f"{graph}.onnx", half)

    dit = Dit(parts.transformer, parts.condition_encoder, parts.audio_tokenizer, parts.detokenizer).eval()
    frames = 2 * tm
    given = torch.zeros(2, frames, c)
    given[0] = 1.0  # row 0 has a source, row 1 none
    dit_inputs = {
        "hidden_states": torch.randn(2, frames, c, generator=g),
        "timestep": torch.tensor([0.9, 0.35]),
        "encoder_hidden_states": torch.cat([torch.randn(1, 3, width, generator=g), torch.zeros(1, 3, width)]),
        "context_latents": torch.cat([torch.randn(2, frames, c, generator=g), given], dim=-1),
    }
    export_graph_named(dit, dit_inputs, ["velocity"], {
        "hidden_states": {0: "B", 1: "T"}, "timestep": {0: "B"},
        "encoder_hidden_states": {0: "B", 1: "L"}, "context_latents": {0: "B", 1: "T"},
        "velocity": {0: "B", 1: "T"}}, "dit")

    decoder = Decoder(parts.vae).eval()
    # The decoder's receptive field, measured: windows decoded with this much context on
    # each side join without a seam.
    context_frames = report["context_frames"] = max(1, decoder_reach(decoder))
    dec_inputs = {"latents": torch.randn(1, c, 3, generator=g)}
    export_graph_named(decoder, dec_inputs, ["audio"],
                       {"latents": {0: "B", 2: "T"}, "audio": {0: "B", 2: "S"}}, "decoder")

    encoder = Encoder(parts.vae).eval()
    t = torch.arange(2 * SAMPLES_PER_FRAME) / SAMPLE_RATE
    enc_inputs = {"audio": (0.5 * torch.sin(2 * math.pi * 220.0 * t)).expand(1, AUDIO_CHANNELS, -1).contiguous()}
    export_graph_named(encoder, enc_inputs, ["latents"],
                       {"audio": {0: "B", 2: "S"}, "latents": {0: "B", 2: "T"}}, "encoder")

    text = build_text(parts, tags, duration_s)
    timbre = Timbre(parts.condition_encoder).eval()
    text_inputs = {"ids": torch.tensor([[0, len(tags) // 2, len(tags) - 1]])}
    timbre_inputs = {"reference_latents": torch.randn(1, TIMBRE_FRAMES, c, generator=g)}
    with torch.no_grad():
        report["condition_vs_condition_encoder"] = max(
            check_against_condition_encoder(parts, text, timbre, text_inputs["ids"], reference)
            for reference in (timbre_inputs["reference_latents"], torch.zeros(1, TIMBRE_FRAMES, c)))
    if report["condition_vs_condition_encoder"] > 1e-4:
        raise SystemExit(f"export-acestep: the text and timbre graphs differ from the condition "
                         f"encoder by {report['condition_vs_condition_encoder']:.2e}")
    export_graph_named(text, text_inputs, ["encoder_hidden_states"],
                       {"ids": {1: "L"}, "encoder_hidden_states": {1: "R"}}, "text")
    export_graph_named(timbre, timbre_inputs, ["encoder_hidden_states"], {}, "timbre")
    (out / "tags.txt").write_text("\n".join(tags) + "\n")

    parity = [torch_parity_run("dit", dit, dit_inputs, "velocity", out),
              torch_parity_run("decoder", decoder, dec_inputs, "audio", out),
              torch_parity_run("encoder", encoder, enc_inputs, "latents", out),
              torch_parity_run("text", text, text_inputs, "encoder_hidden_states", out),
              torch_parity_run("timbre", timbre, timbre_inputs, "encoder_hidden_states", out)]
    write_bytes(out / "bundle.toml", manifest(name, parts, steps, shift, context_frames, default_prompt, parity).encode())
    report["bytes"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="a diffusers-format ACE-Step v1.5 folder")
    source.add_argument("--random-tiny", action="store_true",
                        help="random weights at small widths (for CI: proves export and load)")
    parser.add_argument("--out", type=Path, required=True, help="the bundle folder to write")
    parser.add_argument("--name", help="bundle name (default: acestep-v15, or acestep-tiny-random)")
    parser.add_argument("--tags", type=Path, default=DEFAULT_TAGS, help="tag vocabulary, one a line")
    parser.add_argument("--steps", type=int, default=8, help="default_steps (default 8, turbo)")
    parser.add_argument("--shift", type=float, default=3.0, help="default_shift (default 3)")
    parser.add_argument("--duration", type=int, default=30,
                        help="the duration the caption's metadata states, seconds (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="weight seed for --random-tiny")
    parser.add_argument("--license",
                        help="the weights' licence (default: the checkpoint's model card says)")
    parser.add_argument("--weights", choices=["f32", *HALF_FORMATS], default="f32",
                        help="how the graphs store their weights: fp16 or bf16 halve the files "
                             "(the weights are rounded first; the graphs compute in f32); bf16 "
                             "holds a bf16 checkpoint exactly")
    parser.add_argument("--default-prompt", default="pop piano bass drums",
                        help="what a fresh start plays (tags of the vocabulary)")
    args = parser.parse_args(argv)
    if args.checkpoint is not None and not (args.checkpoint / "model_index.json").is_file():
        parser.error(f"{args.checkpoint}: not a diffusers-format checkpoint (no model_index.json)")
    tags = tag_vocabulary(args.tags)
    unknown = [w for w in args.default_prompt.split() if w.lower() not in {t.lower() for t in tags}]
    if unknown:
        parser.error(f"--default-prompt: not in the vocabulary: {' '.join(unknown)}")
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    license = args.license or (None if args.random_tiny else card_license(args.checkpoint))
    if not args.random_tiny and not license:
        parser.error(f"{args.checkpoint}: its model card (README.md) states no licence; "
                     "name it with --license")
    parts = random_tiny(args.seed) if args.random_tiny else load_checkpoint(args.checkpoint)
    parts.license = license or parts.license
    name = args.name or ("acestep-tiny-random" if args.random_tiny else "acestep-v15")
    print(json.dumps(export(parts, tags, args.out, name, args.steps, args.shift, args.duration,
                            args.default_prompt, args.weights)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
