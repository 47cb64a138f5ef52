"""Smoke check of gm-tiny's graphs (random init, seconds on a CPU): shapes, the decoder's STFT
convention against torch.istft, and ONNX export of all four graphs with latentd's tensor
names and dynamic axes, each run once through onnx.reference for agreement with torch.

    python3 -m tools.train.gm_tiny.smoke [OUT_DIR]
"""

import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx.reference import ReferenceEvaluator

from . import geometry as g
from .autoencoder import Autoencoder, istft, stft
from .dit import Dit, TagEmbedding
from .losses import log_mel_error_db, multi_resolution_stft


def export(module, args, path, inputs, outputs, axes):
    torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs,
                      dynamic_axes=axes, opset_version=17, dynamo=False)
    onnx.checker.check_model(onnx.load(str(path)))


def export_graphs(out: Path, ae, dit, text, examples):
    """The four graphs with latentd's tensor names and dynamic axes (docs/bundles.md);
    `examples` = (audio, latents, (x, t, condition, context), ids) to trace them with."""
    audio, z, dit_args, ids = examples
    export_autoencoder(out, ae, audio, z)
    export_dit_text(out, dit, text, dit_args, ids)


def export_autoencoder(out: Path, ae, audio, z):
    """encoder.onnx and decoder.onnx (see [`export_graphs`]); a `position_phase` decoder also
    takes `frame_offset [1] int64`."""
    export(ae.encoder, (audio,), out / "encoder.onnx", ["audio"], ["latents"],
           {"audio": {0: "B", 2: "S"}, "latents": {0: "B", 2: "T"}})
    args, inputs = (z,), ["latents"]
    if ae.decoder.position_phase:  # it also takes the window's first frame in the loop
        args, inputs = (z, torch.tensor([3])), ["latents", "frame_offset"]
    export(ae.decoder, args, out / "decoder.onnx", inputs, ["stft"],
           {"latents": {0: "B", 2: "T"}, "stft": {0: "B", 2: "N"}})


def export_dit_text(out: Path, dit, text, dit_args, ids):
    """dit.onnx and text.onnx (see [`export_graphs`])."""
    export(dit, dit_args, out / "dit.onnx",
           ["hidden_states", "timestep", "encoder_hidden_states", "context_latents"],
           ["velocity"],
           {"hidden_states": {0: "B", 1: "T"}, "timestep": {0: "B"},
            "encoder_hidden_states": {0: "B", 1: "L"}, "context_latents": {0: "B", 1: "T"},
            "velocity": {0: "B", 1: "T"}})
    export(text, (ids,), out / "text.onnx", ["ids"], ["encoder_hidden_states"],
           {"ids": {1: "L"}, "encoder_hidden_states": {1: "L"}})


def warmup_cosine(step: int, lr: float, warmup: int, steps: int) -> float:
    """Linear warm-up, then cosine decay to 5 % of `lr` at `steps`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    frac = (step - warmup) / max(1, steps - warmup)
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))


def agree(path, feeds, expected, tol=2e-3):
    got = ReferenceEvaluator(str(path)).run(None, {k: v.numpy() for k, v in feeds.items()})[0]
    err = float(np.abs(got - expected.detach().numpy()).max())
    scale = float(np.abs(expected.detach().numpy()).max()) + 1e-6
    assert err <= tol * scale, f"{path.name}: onnx.reference differs from torch by {err}"
    return err


# The longest crop the DiT is trained on (8 s): a longer loop is generated in chunks of this
# length (walk mode, docs/bundles.md), which keeps each DiT run in the shape it learned and
# its cost bounded on one CPU core.
CHUNK_FRAMES = max(g.DIT_CROP_FRAMES)


def manifest(name: str, provenance: str, steps: int = 8, default_prompt: str | None = None) -> str:
    """gm-tiny's `bundle.toml` (latentd-bundle/1, docs/bundles.md), from the geometry."""
    return f"""format = "latentd-bundle/1"
name = "{name}"
license = "MIT"
provenance = "{provenance}"

[geometry]
sample_rate = {g.SAMPLE_RATE}
audio_channels = {g.AUDIO_CHANNELS}
latent_channels = {g.LATENT_CHANNELS}
latent_frame_rate = {g.LATENT_FPS}

[sampler]
convention = "flow-velocity"
default_steps = {steps}
default_shift = 3.0
guidance = "cfg"

[dit]
file = "dit.onnx"
t_multiple = 2
chunk_frames = {CHUNK_FRAMES}

[decoder]
file = "decoder.onnx"
context_frames = 10
output = "stft"
n_fft = {g.N_FFT}
hop = {g.HOP}

[encoder]
file = "encoder.onnx"

[text]
kind = "tags"
vocab = "tags.txt"
file = "text.onnx"
""" + (f'default_prompt = "{default_prompt}"\n' if default_prompt else "")


def main(out: Path):
    torch.manual_seed(0)
    t = 12
    audio = 0.1 * torch.randn(1, g.AUDIO_CHANNELS, t * g.SAMPLES_PER_LATENT)
    # The decoder's convention: stft() then istft() is the identity (away from the far edge).
    back = istft(stft(audio))
    keep = back.shape[-1] - g.N_FFT // 2
    assert torch.allclose(back[..., :keep], audio[..., :keep], atol=1e-4), "stft convention"

    # The metric: zero on identical audio, large for unrelated audio, finite losses.
    assert float(log_mel_error_db(audio, audio)) == 0.0
    other = 0.1 * torch.randn_like(audio) * torch.linspace(0, 1, audio.shape[-1])
    assert float(log_mel_error_db(other, audio)) > 3.0
    assert torch.isfinite(multi_resolution_stft(other, audio))

    ae = Autoencoder().eval()
    z = ae.encoder(audio)
    assert z.shape == (1, g.LATENT_CHANNELS, t), z.shape
    spec = ae.decoder(z)
    assert spec.shape == (1, g.AUDIO_CHANNELS, t * g.FRAMES_PER_LATENT, g.BINS, 2), spec.shape
    assert istft(spec).shape == audio.shape

    vocab = 40
    dit, text = Dit().eval(), TagEmbedding(vocab).eval()
    with torch.no_grad():  # the zero-initialised (adaLN-zero) layers too, so the check can fail
        for p in dit.parameters():
            if not p.abs().sum():
                p.normal_(std=0.05)
    ids = torch.tensor([[3, 7, 11]])
    ehs = text(ids)
    x = torch.randn(2, t, g.LATENT_CHANNELS)
    ts = torch.tensor([0.9, 0.3])
    ctx = torch.zeros(2, t, 2 * g.LATENT_CHANNELS)
    cond = torch.cat([ehs.expand(1, 3, 64), torch.zeros(1, 3, 64)])  # row 2: null condition
    v = dit(x, ts, cond, ctx)
    assert v.shape == x.shape

    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        export_graphs(out, ae, dit, text, (audio, z, (x, ts, cond, ctx), ids))
    (out / "tags.txt").write_text("".join(f"tag{i}\n" for i in range(vocab)))
    (out / "bundle.toml").write_text(manifest("gm-tiny-smoke", "random init, smoke check"))
    # Other shapes than the export's, to prove the axes stayed dynamic.
    z2 = torch.randn(1, g.LATENT_CHANNELS, 20)
    x2, c2 = torch.randn(3, 20, 64), torch.zeros(3, 20, 128)
    e2 = torch.cat([text(torch.tensor([[1, 2, 3, 4, 5]]))] * 3)
    t2 = torch.tensor([0.5, 0.2, 0.7])
    with torch.no_grad():
        errs = {
            "decoder": agree(out / "decoder.onnx", {"latents": z2}, ae.decoder(z2)),
            "dit": agree(out / "dit.onnx", {"hidden_states": x2, "timestep": t2,
                                            "encoder_hidden_states": e2, "context_latents": c2},
                         dit(x2, t2, e2, c2)),
            "text": agree(out / "text.onnx", {"ids": torch.tensor([[0, 9]])},
                          text(torch.tensor([[0, 9]]))),
        }
    params = {name: sum(p.numel() for p in m.parameters())
              for name, m in [("encoder", ae.encoder), ("decoder", ae.decoder), ("dit", dit)]}
    print("gm-tiny smoke ok; params", params, "max |onnx - torch|", errs)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
