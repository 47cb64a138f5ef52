"""Where a bundle's covers lose the source's harmony: chroma correlation with heldout sources
(tools/measure/sound.py) of the source through the bundle's encoder and decoder (denoise 0),
and of covers the DiT makes offline at the engine's partial-denoise schedule, with the source
as `context_latents` (as latentd plays `--source`) and without it; beside them, the chroma
correlation of each source with its cover partner (the same composition on other
instruments, what the DiT was trained to make), the most a cover into other instruments
can be expected to keep.

    python3 -m tools.train.gm_tiny.probe_cover --bundle models/gm-tiny --heldout /work/data/heldout

Prints one JSON line per clip and the means. The covers are one 8 s window each (a whole
heldout clip), Euler steps of the engine's schedule (`engine/src/schedule.rs`: `denoise` d
starts at `steps / floor(steps / d)`, warped by the shift), noise seeds 0 and 1, no
streaming; model_report.py measures the same through the daemon on one clip.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .probe_beat import Bundle
from .train_dit import shifted

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "measure"))
from sound import chroma_correlation, read_wav  # noqa: E402

PROMPT = "classical strings slow nodrums"  # model_report.py's cover prompt
DENOISE = (0.3, 0.5, 1.0)
SEEDS = (0, 1)


def schedule(steps: int, denoise: float) -> np.ndarray:
    """The engine's `t` points for `steps` and `denoise`, warped by the training shift."""
    start = 1.0 if denoise >= 1.0 else steps / np.floor(steps / denoise)
    return shifted(np.linspace(start, 0.0, steps + 1))


def cover(bundle: Bundle, source, prompt: str, denoise: float, seed: int, with_context: bool,
          steps: int):
    """The DiT's cover of `source` latents [1, C, T]: latents [1, C, T]."""
    x0 = source.transpose(0, 2, 1)  # [1, T, C]
    channels = x0.shape[2]
    cond = bundle.text.run(None, {"ids": bundle.tag_ids(prompt)})[0]
    ctx = np.zeros((1, x0.shape[1], 2 * channels), np.float32)
    if with_context:
        ctx[..., :channels], ctx[..., channels:] = x0, 1.0
    ts = schedule(steps, denoise)
    noise = np.random.default_rng(seed).standard_normal(x0.shape)
    x = (ts[0] * noise + (1 - ts[0]) * x0).astype(np.float32)
    return bundle.integrate(x, ts, cond, ctx).transpose(0, 2, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--heldout", type=Path, required=True)
    ap.add_argument("--clips", type=int, default=6, help="compositions (every other clip)")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--prompt", default=PROMPT)
    args = ap.parse_args()
    bundle = Bundle(args.bundle)
    meta = [json.loads(line) for line in (args.heldout / "clips.jsonl").read_text().splitlines()]
    rows = []
    for i in range(0, min(2 * args.clips, len(meta) - 1), 2):
        audio, rate = read_wav(args.heldout / meta[i]["file"])
        partner, _ = read_wav(args.heldout / meta[i + 1]["file"])
        latents = bundle.encode(audio)
        source = audio[: latents.shape[2] * (rate // 25)]

        def kept(lat):
            return chroma_correlation(bundle.decode(lat)[: len(source)], source, rate)

        row = {"clip": meta[i]["file"],
               "partner": chroma_correlation(partner, audio, rate),
               "denoise_0": kept(latents)}
        for denoise in DENOISE:
            for with_context in (True, False):
                key = f"denoise_{denoise:g}" + ("" if with_context else "_no_context")
                row[key] = float(np.mean([kept(cover(bundle, latents, args.prompt, denoise,
                                                     seed, with_context, args.steps))
                                          for seed in SEEDS]))
        rows.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                          for k, v in row.items()}), flush=True)
    means = {k: round(float(np.mean([r[k] for r in rows])), 3) for k in rows[0] if k != "clip"}
    print(json.dumps({"bundle": str(args.bundle), "prompt": args.prompt, "mean": means}))


if __name__ == "__main__":
    main()
