"""Clip sets for training: a `make_dataset.py` folder loaded into memory once.

`ClipSet(folder)` reads `clips.jsonl` and every WAV (48 kHz stereo 16-bit) into one int16
array `[N, A, S]` (`ClipSet([folder, ...])`: the clips of every folder, in order);
`crops(rng, batch, samples)` draws random float crops (and the latent frame each starts
at). Single-threaded, no workers: the training loop is the only reader.
"""

import json
import wave
from pathlib import Path

import numpy as np
import torch

from . import geometry as g


def read_wav(path: Path) -> np.ndarray:
    """A 48 kHz 16-bit WAV as int16 [A, S]."""
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == g.SAMPLE_RATE, f"{path}: {w.getframerate()} Hz"
        assert w.getsampwidth() == 2, f"{path}: not 16-bit"
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return frames.reshape(-1, w.getnchannels()).T.copy()


class ClipSet:
    def __init__(self, folders: Path | list[Path], limit: int | None = None):
        folders = [Path(f) for f in (folders if isinstance(folders, list) else [folders])]
        self.folder = folders[0]
        entries = [(folder, json.loads(line)) for folder in folders
                   for line in (folder / "clips.jsonl").read_text().splitlines()][:limit]
        self.meta = [meta for _, meta in entries]
        self.audio = np.stack([read_wav(folder / meta["file"]) for folder, meta in entries])
        self.tags = (self.folder / "tags.txt").read_text().split()

    def __len__(self):
        return len(self.meta)

    def clip(self, i: int) -> torch.Tensor:
        """Clip i as float [A, S] in -1..1."""
        return torch.from_numpy(self.audio[i].astype(np.float32) / 32768.0)

    def crops(self, rng: np.random.Generator, batch: int,
              samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`batch` random crops [B, A, samples], each starting on a latent-frame boundary,
        and those starts [B] int64 (the crop's first latent frame in its clip)."""
        n, _, s = self.audio.shape
        frames = (s - samples) // g.SAMPLES_PER_LATENT
        out = np.empty((batch, self.audio.shape[1], samples), dtype=np.float32)
        starts = np.empty(batch, dtype=np.int64)
        for b in range(batch):
            i = rng.integers(n)
            starts[b] = rng.integers(frames + 1)
            at = int(starts[b]) * g.SAMPLES_PER_LATENT
            out[b] = self.audio[i, :, at:at + samples] / 32768.0
        return torch.from_numpy(out), torch.from_numpy(starts)
