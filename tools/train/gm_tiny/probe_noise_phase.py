"""Where a position-phase decoder's flicker comes from: one decoder's log magnitudes played
under each phase rule, judged by the onset rate of DiT samples (drums and `nodrums`
prompts), and by log-mel error, chroma and held tones on heldout clips.

    python3 -m tools.train.gm_tiny.probe_noise_phase --ae /work/runs/base/ae.pt \
        --bundle models/gm-tiny --heldout /work/data/heldout

`--ae` is a plain decoder's checkpoint (gm-tiny's, `from_bundle`); its magnitudes are played
with its own phase (`plain`), with the position-phase rule's turns read from every peak
(`peaks`), from the partials only with every other bin played as noise (`partials`), and
as noise everywhere (`noise`). The magnitudes are the same in every row, so what differs
between rows is the phase rule's alone. `--bundle` gives the DiT and tags that make the
samples (8 Euler steps, one 8 s window, no streaming). Prints one JSON line per rule.

Measured (tools/train/README.md, partials): the `peaks` rule gives a `nodrums` prompt the
onset rate of a drum prompt, and a flat spectrum decoded by it is a click train
(`test_autoencoder.PartialsTest`).
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from . import geometry as g
from .autoencoder import (Autoencoder, istft, partial_deviations, peak_deviations,
                          played_stft, to_stft)
from .clips import ClipSet
from .eval_ae import evaluate_of, held_tones_of
from .probe_beat import Bundle

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data.features import onset_count  # noqa: E402

RULES = ("plain", "peaks", "partials", "noise")
PROMPTS = ("pop piano bass drums", "pop piano bass nodrums", "classical strings slow nodrums")


def play(logmag, phase, rule: str):
    """The STFT of log magnitudes [B, A, N, F] under `rule` (`phase`: the plain head's)."""
    if rule == "plain":
        return to_stft(logmag, phase)
    offset = torch.zeros(1, dtype=torch.long)
    if rule == "peaks":
        return played_stft(logmag, peak_deviations(logmag), offset)
    deviation, partial = partial_deviations(logmag)
    if rule == "noise":
        partial = torch.zeros_like(partial)
    return played_stft(logmag, deviation, offset, partial)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ae", type=Path, required=True, help="a plain decoder's ae.pt")
    ap.add_argument("--bundle", type=Path, required=True, help="the DiT and tags to sample")
    ap.add_argument("--heldout", type=Path, required=True)
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ckpt = torch.load(args.ae, map_location="cpu", weights_only=False)
    ae = Autoencoder(**ckpt.get("sizes", {})).eval()
    ae.load_state_dict(ckpt["state"])
    if ae.decoder.position_phase:
        ap.error("--ae: a plain decoder (its magnitudes are played under every rule)")
    bundle = Bundle(args.bundle)
    decoder, rate = ae.decoder, g.SAMPLE_RATE

    def decode(latents, rule):  # scaled latents [1, C, T] -> audio [S, A]
        logmag, phase, _, _ = decoder.parts(latents * decoder.latent_std + decoder.latent_mean)
        return istft(play(logmag, phase, rule))[0].numpy().T

    with torch.no_grad():
        samples = {(p, s): torch.from_numpy(bundle.latents(p, s, 8, 1.0).copy())
                   for p in PROMPTS for s in range(args.seeds)}
        clips = ClipSet(args.heldout)
        for rule in RULES:
            row = {"rule": rule}
            for (prompt, _), z in samples.items():
                audio = decode(z, rule)
                row.setdefault(prompt, []).append(
                    round(onset_count(audio, rate) / (len(audio) / rate), 2))
            def round_trip(audio):
                return decode(ae.encoder(audio), rule)

            heldout = evaluate_of(round_trip, clips, args.clips)
            for key in ("log_mel_error_db", "chroma_correlation"):
                row[key] = round(heldout[key], 3)
            tones = held_tones_of(round_trip)
            row.update({k: round(v, 3) for k, v in tones.items()})
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
