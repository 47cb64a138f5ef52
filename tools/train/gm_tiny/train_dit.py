"""Stage 2: train gm-tiny's flow-matching DiT and tag embedding on latents of the frozen
stage-1 autoencoder.

    python3 -m tools.train.gm_tiny.train_dit --ae /work/runs/ae/ae.pt \
        --data /work/data/train --data /work/data/train2 --out /work/runs/dit --steps 6000

`--encoder-onnx models/gm-tiny/encoder.onnx` takes the latents from a bundle's exported encoder
(ONNX Runtime) instead of an autoencoder checkpoint: the DiT of a shipped bundle can be
retrained without the checkpoint its autoencoder came from (the latents are the same up to
the fp16 rounding of the encoder's weights).

Every clip is encoded once (cached next to the output as `latents-<folder>.pt`). A training
example is a random crop of one clip's latents with:
- the condition: a random subset of the clip's tags (each kept with p = 0.7, at least one,
  shuffled), or, with p = 0.15, the null condition (all-zero rows), so classifier-free
  guidance has a trained unconditional branch;
- the context: with p = 0.4 (`--cover-p`) the cover partner's latents (`make_dataset.py`: clips 2g and 2g+1
  are the same composition on other instruments) with a mask of ones, else zeros (generation
  from tags alone);
- `t` uniform, warped by the engine's default shift (3): `t' = s t / (1 + (s - 1) t)`;
  `x_t = t' noise + (1 - t') x0`, target velocity `noise - x0` (docs/bundles.md).
Crop lengths vary per batch (2 to 8 s) so the DiT, which has no positional table, sees many
window lengths. An exponential moving average of the weights (0.999) is what gets exported.
Writes `dit.pt` and `dit-log.jsonl` (training loss, heldout flow loss at fixed t).
`--device cuda` trains on a GPU; `--budget-minutes M` fits the step count to M minutes.
"""

import argparse
import copy
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

from . import geometry as g
from .autoencoder import Autoencoder
from .budget import StepBudget, cpu_state, device_from
from .clips import ClipSet
from .smoke import warmup_cosine
from .dit import Dit, TagEmbedding, checkpoint_arch

SHIFT = 3.0
NULL_P = 0.15
COVER_P = 0.4
TAG_KEEP_P = 0.7
CROP_FRAMES = g.DIT_CROP_FRAMES


def load_autoencoder(path: Path) -> Autoencoder:
    return autoencoder_from(torch.load(path, map_location="cpu"))


def autoencoder_from(ckpt: dict) -> Autoencoder:
    """The frozen autoencoder of a `train_ae` checkpoint."""
    ae = Autoencoder(**ckpt.get("sizes", {}))
    ae.load_state_dict(ckpt["state"])
    return ae.eval()


def onnx_encoder(path: Path):
    """An exported `encoder.onnx` as a function `audio [1, A, S]` -> `latents [1, C, T]`."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda audio: torch.from_numpy(session.run(["latents"], {"audio": audio.numpy()})[0])


@torch.no_grad()
def encode_folder(encode, folder: Path, cache: Path):
    """Scaled latents [N, T, C] of every clip in a dataset folder, plus its metadata;
    `encode` maps `audio [1, A, S]` to `latents [1, C, T]`."""
    if cache.exists():
        return torch.load(cache)
    clips = ClipSet(folder)
    lat = torch.stack([encode(clips.clip(i)[None])[0].T for i in range(len(clips))])
    out = {"latents": lat.contiguous(), "meta": clips.meta, "tags": clips.tags}
    torch.save(out, cache)
    return out


class Examples:
    """Latents, tag ids and cover partners of one or more encoded folders."""

    def __init__(self, encoded: list, vocab: list[str], cover_p: float = COVER_P):
        self.cover_p = cover_p
        index = {t: i for i, t in enumerate(vocab)}
        self.latents, self.tag_ids, self.partner = [], [], []
        for enc in encoded:
            assert enc["tags"] == vocab, "every dataset must share one tag vocabulary"
            base = len(self.tag_ids)
            by_group = {}
            for i, m in enumerate(enc["meta"]):
                by_group.setdefault(m["group"], []).append(base + i)
                self.tag_ids.append([index[t] for t in m["tags"]])
            for i, m in enumerate(enc["meta"]):
                mates = [j for j in by_group[m["group"]] if j != base + i]
                self.partner.append(mates[0] if mates else -1)
            self.latents.append(enc["latents"])
        self.latents = torch.cat(self.latents)

    def __len__(self):
        return len(self.tag_ids)

    def batch(self, rnd: random.Random, size: int, frames: int, dim: int, table):
        """`(x0, context, condition)` on the tag table's device."""
        device = next(table.parameters()).device
        n, total, c = self.latents.shape
        x0 = torch.empty(size, frames, c)
        ctx = torch.zeros(size, frames, 2 * c)
        ids = []
        for b in range(size):
            i = rnd.randrange(n)
            start = rnd.randrange(total - frames + 1)
            x0[b] = self.latents[i, start:start + frames]
            j = self.partner[i]
            if j >= 0 and rnd.random() < self.cover_p:
                ctx[b, :, :c] = self.latents[j, start:start + frames]
                ctx[b, :, c:] = 1.0
            if rnd.random() < NULL_P:
                ids.append([])
            else:
                kept = [t for t in self.tag_ids[i] if rnd.random() < TAG_KEEP_P]
                kept = kept or [rnd.choice(self.tag_ids[i])]
                rnd.shuffle(kept)
                ids.append(kept)
        longest = max(1, max(len(k) for k in ids))
        cond = torch.zeros(size, longest, dim, device=device)
        for b, kept in enumerate(ids):
            if kept:
                cond[b, : len(kept)] = table(torch.tensor(kept, device=device))
        return x0.to(device), ctx.to(device), cond


def flow_loss(dit, x0, ctx, cond, t):
    noise = torch.randn_like(x0)
    tt = t[:, None, None]
    xt = tt * noise + (1 - tt) * x0
    return ((dit(xt, t, cond, ctx) - (noise - x0)) ** 2).mean()


def shifted(u):
    return SHIFT * u / (1 + (SHIFT - 1) * u)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--ae", type=Path, help="the stage-1 autoencoder checkpoint")
    source.add_argument("--encoder-onnx", type=Path, help="a bundle's exported encoder")
    ap.add_argument("--data", type=Path, action="append", required=True)
    ap.add_argument("--heldout", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    ap.add_argument("--budget-minutes", type=float,
                    help="run at most the steps that fit this many minutes (budget.py)")
    ap.add_argument("--init", type=Path,
                    help="start from this dit.pt (its EMA weights) instead of random weights")
    ap.add_argument("--cover-p", type=float, default=COVER_P,
                    help="share of examples whose context is their cover partner's latents "
                         "(the rest are generation from tags alone)")
    ap.add_argument("--no-rope", action="store_true",
                    help="no rotary positions (how gm-tiny's first DiT was trained)")
    args = ap.parse_args()

    device = device_from(args.device)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rnd = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.encoder_onnx:
        encode = onnx_encoder(args.encoder_onnx)
    else:
        encoder = load_autoencoder(args.ae).encoder.to(device)

        def encode(audio):
            return encoder(audio.to(device)).cpu()
    encoded = [encode_folder(encode, d, args.out / f"latents-{d.name}.pt") for d in args.data]
    vocab = encoded[0]["tags"]
    examples = Examples(encoded, vocab, args.cover_p)
    held = None
    if args.heldout:
        cache = args.out / "latents-heldout.pt"
        held = Examples([encode_folder(encode, args.heldout, cache)], vocab)
    arch = {"rope": not args.no_rope}
    dit, text = Dit(**arch).train(), TagEmbedding(len(vocab)).train()
    done_before = 0
    if args.init:
        init = torch.load(args.init, map_location="cpu")
        assert init["vocab"] == vocab and checkpoint_arch(init) == arch, \
            f"{args.init}: another vocabulary or architecture"
        dit.load_state_dict(init["dit"])
        text.load_state_dict(init["text"])
        done_before = init["step"]
    dit.to(device)
    text.to(device)
    ema = copy.deepcopy(dit).eval()
    ema_text = copy.deepcopy(text).eval()
    params = list(dit.parameters()) + list(text.parameters())
    print(f"dit {sum(p.numel() for p in dit.parameters())} params, {len(examples)} clips, "
          f"latent std {float(examples.latents.std()):.3f}", flush=True)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-2)
    warmup = min(300, args.steps // 10)

    budget = StepBudget(args.steps, args.budget_minutes)

    def lr_at(step):
        return warmup_cosine(step, args.lr, warmup, budget.steps)

    @torch.no_grad()
    def heldout_loss():
        gen = torch.Generator().manual_seed(0)
        r = random.Random(0)
        losses = []
        for t in (0.2, 0.5, 0.8):
            x0, ctx, cond = held.batch(r, 32, 100, 64, ema_text)
            noise = torch.randn(x0.shape, generator=gen).to(device)
            tt = torch.full((32,), t, device=device)
            xt = t * noise + (1 - t) * x0
            losses.append(float(((ema(xt, tt, cond, ctx) - (noise - x0)) ** 2).mean()))
        return losses

    log = open(args.out / "dit-log.jsonl", "w")
    started, running = time.time(), []
    step = 0
    while step < budget.steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        frames = rnd.choice(CROP_FRAMES)
        size = args.batch * CROP_FRAMES[-1] // frames // 2 * 2 or 2
        size = min(size, 4 * args.batch)
        x0, ctx, cond = examples.batch(rnd, size, frames, 64, text)
        t = shifted(torch.rand(size)).to(device)
        loss = flow_loss(dit, x0, ctx, cond, t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(0.999, (step + 1) / (step + 10))
        with torch.no_grad():
            for e, p in zip(list(ema.parameters()) + list(ema_text.parameters()), params):
                e.mul_(decay).add_(p.detach(), alpha=1 - decay)
        running.append(float(loss.detach()))
        last = step + 1 == budget.after_step(step + 1)
        if (step + 1) % 100 == 0 or last:
            entry = {"step": step + 1, "loss": float(np.mean(running)), "lr": lr_at(step),
                     "elapsed_s": round(time.time() - started, 1)}
            running = []
            if held is not None and ((step + 1) % 1000 == 0 or last):
                entry["heldout_flow_mse_t02_05_08"] = heldout_loss()
            if (step + 1) % 1000 == 0 or last:
                torch.save({"step": done_before + step + 1, "dit": cpu_state(ema),
                            "text": cpu_state(ema_text), "vocab": vocab, "arch": arch},
                           args.out / "dit.pt")
            print(json.dumps(entry), flush=True)
            log.write(json.dumps(entry) + "\n")
            log.flush()
        step += 1


if __name__ == "__main__":
    main()
