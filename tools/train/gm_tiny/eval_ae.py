"""Judge an autoencoder checkpoint on heldout clips it never saw: log-mel error (dB, 64 bands,
the reconstruction metric docs/models.md reports) and chroma correlation (do the notes come
back in tune: 1 is the same pitch classes frame by frame), both from `tools/measure/sound.py`
so they are the figures the daemon's own output is judged by.

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


@torch.no_grad()
def evaluate(ae: Autoencoder, clips: ClipSet, count: int) -> dict:
    ae.eval()
    errors, chromas = [], []
    for i in range(min(count, len(clips))):
        audio = clips.clip(i)[None]
        pred = istft(ae.decoder(ae.encoder(audio)))[0].numpy().T
        source = audio[0].numpy().T[: len(pred)]
        errors.append(sound.log_mel_error_db(pred, source, g.SAMPLE_RATE))
        chromas.append(sound.chroma_correlation(pred, source, g.SAMPLE_RATE))
    return {"clips": len(errors), "log_mel_error_db": float(np.mean(errors)),
            "chroma_correlation": float(np.mean(chromas))}


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
        print(json.dumps({"ae": str(path), **evaluate(ae, clips, args.clips)}), flush=True)


if __name__ == "__main__":
    main()
