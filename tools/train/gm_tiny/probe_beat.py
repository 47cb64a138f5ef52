"""Where a bundle's beat is lost: the beat strength (tools/measure/sound.py) of heldout clips
with drums, of the same clips through the bundle's encoder and decoder, and of samples the
DiT makes offline from tags alone (one 8 s window, Euler steps of the shifted schedule
the DiT was trained on, optional classifier-free guidance), all without latentd's streaming.

    python3 -m tools.train.gm_tiny.probe_beat --bundle models/gm-tiny --heldout /work/data/heldout

Prints one JSON object. If the sources and their reconstructions keep a beat and the DiT's
samples do not, the denoiser is what lacks it (docs/models.md, "Limits").
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from . import geometry as g
from .autoencoder import istft
from .smoke import CHUNK_FRAMES as FRAMES  # one chunk as latentd generates it
from .train_dit import shifted

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "measure"))
from sound import beat_strength, read_wav  # noqa: E402

PROMPTS = ["techno drums fast energetic", "pop piano bass drums", "house drums bass"]


class Bundle:
    def __init__(self, folder: Path):
        def session(name):
            return onnxruntime.InferenceSession(str(folder / f"{name}.onnx"),
                                                providers=["CPUExecutionProvider"])
        self.encoder, self.decoder = session("encoder"), session("decoder")
        self.dit, self.text = session("dit"), session("text")
        self.vocab = (folder / "tags.txt").read_text().split()
        # A decoder that turns its phase with the loop position (`--position-phase`) takes
        # the window's first frame; offline, every window starts the loop.
        self.positional = "frame_offset" in {i.name for i in self.decoder.get_inputs()}

    def decode(self, latents):  # [1, C, T] -> audio [S, A]
        feeds = {"latents": latents.astype(np.float32)}
        if self.positional:
            feeds["frame_offset"] = np.zeros(1, np.int64)
        stft = self.decoder.run(None, feeds)[0]
        return istft(torch.from_numpy(stft))[0].numpy().T

    def encode(self, audio):  # [S, A] -> [1, C, T]
        return self.encoder.run(None, {"audio": audio.T[None].astype(np.float32)})[0]

    def tag_ids(self, prompt: str):
        """The text graph's `ids [1, L]` of a prompt of the bundle's tags."""
        return np.array([[self.vocab.index(w) for w in prompt.split()]], dtype=np.int64)

    def velocity(self, x, t, cond, ctx):
        feeds = {"hidden_states": x, "timestep": np.array([t], np.float32),
                 "encoder_hidden_states": cond, "context_latents": ctx}
        return self.dit.run(None, feeds)[0]

    def sample(self, prompt: str, seed: int, steps: int, guidance: float):
        """One 8 s window sampled from tags alone, decoded: audio [S, A]."""
        return self.decode(self.latents(prompt, seed, steps, guidance))

    def latents(self, prompt: str, seed: int, steps: int, guidance: float):
        """`sample`'s latents, [1, C, T]."""
        cond = self.text.run(None, {"ids": self.tag_ids(prompt)})[0]
        x = np.random.default_rng(seed).standard_normal((1, FRAMES, g.LATENT_CHANNELS))
        x = x.astype(np.float32)
        ctx = np.zeros((1, FRAMES, 2 * g.LATENT_CHANNELS), np.float32)
        ts = shifted(np.linspace(1.0, 0.0, steps + 1))  # t warped as in training
        return self.integrate(x, ts, cond, ctx, guidance).transpose(0, 2, 1)

    def integrate(self, x, ts, cond, ctx, guidance: float = 1.0):
        """Euler steps of the DiT's velocity from `x` [1, T, C] at `ts[0]` down the points
        `ts`, with optional classifier-free guidance: the latents at `ts[-1]`, [1, T, C]."""
        for t, t_next in zip(ts[:-1], ts[1:]):
            v = self.velocity(x, t, cond, ctx)
            if guidance != 1.0:
                v_null = self.velocity(x, t, np.zeros_like(cond), ctx)
                v = v_null + guidance * (v - v_null)
            x = (x + (t_next - t) * v).astype(np.float32)
        return x


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--heldout", type=Path, required=True)
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    bundle = Bundle(args.bundle)
    meta = [json.loads(line) for line in (args.heldout / "clips.jsonl").read_text().splitlines()]
    drums = [m for m in meta if m["has_drums"]][: args.clips]
    sources, recon = [], []
    for m in drums:
        audio, rate = read_wav(args.heldout / m["file"])
        sources.append(beat_strength(audio, rate))
        recon.append(beat_strength(bundle.decode(bundle.encode(audio)), rate))
    samples = {f"{p} (guidance {gd:g})": [beat_strength(bundle.sample(p, s, args.steps, gd),
                                                        g.SAMPLE_RATE)
                                          for s in range(args.seeds)]
               for p in PROMPTS for gd in (1.0, 3.0)}
    rounded = {k: [round(v, 3) for v in vs] for k, vs in samples.items()}
    print(json.dumps({"bundle": str(args.bundle), "heldout_sources": np.round(sources, 3).tolist(),
                      "through_the_autoencoder": np.round(recon, 3).tolist(),
                      "dit_samples": rounded}, indent=1))


if __name__ == "__main__":
    main()
