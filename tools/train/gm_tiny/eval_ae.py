"""Judge an autoencoder checkpoint on heldout clips it never saw: log-mel error (dB, 64 bands,
the reconstruction metric docs/models.md reports) and chroma correlation (do the notes come
back in tune: 1 is the same pitch classes frame by frame), both from `tools/measure/sound.py`
so they are the figures the daemon's own output is judged by; and where the partials of
held tones land (`held_tones`: the 25 Hz comb of a decoder that cannot turn a partial's
phase across latent frames shows there first).

    python3 -m tools.train.gm_tiny.eval_ae --ae /work/runs/ae/ae.pt --heldout /work/data/heldout

Runs on the CPU in torch (no daemon); `tools/measure/model_report.py` measures the same
through latentd.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from . import geometry as g
from .autoencoder import Autoencoder, istft
from .clips import ClipSet

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "measure"))
import sound  # noqa: E402  (tools/measure is not a package)


def round_trip(ae: Autoencoder):
    """The autoencoder's encode and decode as `evaluate_of` and `held_tones_of` take them:
    audio [1, A, S] (a torch tensor) -> what comes back, [S, A] (numpy)."""
    return lambda audio: istft(ae.decoder(ae.encoder(audio)))[0].numpy().T


@torch.no_grad()
def evaluate(ae: Autoencoder, clips: ClipSet, count: int) -> dict:
    """`evaluate_of` the autoencoder's encode and decode."""
    ae.eval()
    return evaluate_of(round_trip(ae), clips, count)


def evaluate_of(decode, clips: ClipSet, count: int) -> dict:
    """Log-mel error and chroma correlation of the first `count` clips through `decode`
    (audio [1, A, S] torch -> [S, A] numpy), against the clips themselves."""
    errors, chromas = [], []
    for i in range(min(count, len(clips))):
        audio = clips.clip(i)[None]
        pred = decode(audio)
        source = audio[0].numpy().T[: len(pred)]
        errors.append(sound.log_mel_error_db(pred, source, g.SAMPLE_RATE))
        chromas.append(sound.chroma_correlation(pred, source, g.SAMPLE_RATE))
    return {"clips": len(errors), "log_mel_error_db": float(np.mean(errors)),
            "chroma_correlation": float(np.mean(chromas))}


# Held tones: 4 s of five harmonics on each of these fundamentals (Hz), judged on the middle
# 2 s with 0.5 Hz bins.
HELD_TONES_HZ = (110.0, 196.0, 261.6, 440.0, 523.3)
HELD_HARMONICS = 3  # the lowest ones judged


@torch.no_grad()
def held_tones(ae: Autoencoder) -> dict:
    """`held_tones_of` the autoencoder's encode and decode."""
    ae.eval()
    return held_tones_of(round_trip(ae))


def held_tones_of(decode) -> dict:
    """`held_tone_purity`: the share of each of the lowest harmonics' power (within 30 Hz)
    that lies within 3 Hz of it, mean over tones and harmonics (a clean partial: near 1; a
    comb 25 Hz apart: near 0 unless the harmonic sits on a line); `held_tone_cents`: how far
    the strongest line near each harmonic is from it, mean absolute cents. `decode`: audio
    [1, A, S] (a torch tensor) -> what comes back, [S, A] (numpy)."""
    rate = g.SAMPLE_RATE
    t = np.arange(4 * rate) / rate
    purity, cents = [], []
    for f0 in HELD_TONES_HZ:
        tone = sum(0.2 / h * np.sin(2 * np.pi * h * f0 * t + h) for h in range(1, 6))
        out = decode(torch.from_numpy(np.stack([tone, tone]).astype(np.float32))[None])
        power = np.abs(np.fft.rfft(out.mean(axis=1)[rate:3 * rate] * np.hanning(2 * rate))) ** 2
        freqs = np.fft.rfftfreq(2 * rate, 1.0 / rate)
        for h in range(1, HELD_HARMONICS + 1):
            near = np.abs(freqs - h * f0) < 30.0
            purity.append(power[near & (np.abs(freqs - h * f0) < 3.0)].sum() / power[near].sum())
            strongest = freqs[np.argmax(np.where(near, power, 0.0))]
            cents.append(abs(1200 * np.log2(strongest / (h * f0))))
    return {"held_tone_purity": float(np.mean(purity)), "held_tone_cents": float(np.mean(cents))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ae", type=Path, required=True, action="append",
                    help="a checkpoint (repeat to compare)")
    ap.add_argument("--heldout", type=Path, required=True)
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clips = ClipSet(args.heldout)
    for path in args.ae:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        ae = Autoencoder(**ckpt.get("sizes", {}))
        ae.load_state_dict(ckpt["state"])
        print(json.dumps({"ae": str(path), **evaluate(ae, clips, args.clips), **held_tones(ae)}),
              flush=True)


if __name__ == "__main__":
    main()
