"""Stage 1: train gm-tiny's autoencoder on a `make_dataset.py` folder, then measure the latent
scale (per-channel mean / std over the training set) so the DiT sees unit-variance latents.

    python3 -m tools.train.gm_tiny.train_ae --data /work/data/train --heldout /work/data/heldout \
        --out /work/runs/ae --steps 4000

Losses: multi-resolution STFT (256..2048) and log-mel L1 on the inverse-STFT audio, plus L1 of
the log magnitude at the decoder's own STFT; the latents get a small L2 penalty and, during
training, Gaussian noise, so the decoder tolerates the DiT's imprecision. Deterministic for a
given seed, step count and thread count (on the CPU; CUDA kernels may differ run to run).
`--device cuda` trains on a GPU; `--budget-minutes M` fits the step count to M minutes.
Writes `ae.pt` (weights, sizes, step, latent scale) and `ae-log.jsonl` (one line per log
interval, heldout log-mel error in dB at each eval).
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from . import geometry as g
from .autoencoder import (DEVIATION_SOURCES, MAX_DEVIATION, Autoencoder, Decoder,
                          decoder_sizes, istft, position_phase_from, position_phase_sizes,
                          stft, to_stft)
from .budget import StepBudget, cpu_state, device_from
from .clips import ClipSet
from .smoke import warmup_cosine
from .losses import log_mel_error_db, mel_l1, multi_resolution_stft

LATENT_NOISE = 0.1
# STFT sizes long enough to resolve 25 Hz (8192 samples: 5.9 Hz bins), added to a
# position-phase decoder's loss: the shorter sizes cannot tell a held partial from the
# frame-rate comb that stands in for it, so only these reward moving off it.
COMB_SIZES = (4096, 8192)
LATENT_L2 = 1e-3


def anti_wrapped(x):
    """|x| after wrapping into [-pi, pi]: a phase difference's size (APNet's anti-wrapping)."""
    return (x - 2 * math.pi * torch.round(x / (2 * math.pi))).abs()


def phase_loss(spec, target, anchored_phase=None):
    """Anti-wrapping losses on the instantaneous phase, the group delay (phase step across
    bins) and the instantaneous frequency (phase step across frames) of the decoder's STFT
    against the source's (APNet, Ai & Ling 2023), each weighted by the source's magnitude so
    silent bins do not count. Magnitude losses alone leave the phase free; the decoder then
    makes a frame-rate comb (lines every 25 Hz) in place of the notes' partials.

    `anchored_phase`: the phase the instantaneous and group-delay terms see, where it differs
    from the spectrum's (a position-phase decoder's, with its turn's gradient held back:
    the turn grows with the frame's place in its period, so those terms would push a
    deviation by the frame count; the frequency term's step from frame to frame does not)."""
    pred_phase = torch.atan2(spec[..., 1], spec[..., 0])  # [B, A, N, F]
    if anchored_phase is None:
        anchored_phase = pred_phase
    true_phase = torch.atan2(target[..., 1], target[..., 0])
    weight = torch.linalg.vector_norm(target, dim=-1)
    weight = weight / (weight.mean(dim=(-1, -2), keepdim=True) + 1e-8)

    def mean(x, w):
        return (x * w).sum() / (w.sum() + 1e-8)

    anchored = anchored_phase - true_phase
    instant = mean(anti_wrapped(anchored), weight)
    group = mean(anti_wrapped(anchored[..., 1:] - anchored[..., :-1]),
                 torch.minimum(weight[..., 1:], weight[..., :-1]))
    diff = pred_phase - true_phase
    freq = mean(anti_wrapped(diff[..., 1:, :] - diff[..., :-1, :]),
                torch.minimum(weight[..., 1:, :], weight[..., :-1, :]))
    return instant + group + 2.0 * freq


def source_steps(target):
    """Each bin's phase step from one STFT frame to the next less its centre's turn
    `(pi / 2) k`, as the complex `X[m+1] conj(X[m]) exp(-i (pi / 2) k)`: real and imaginary
    parts, each [B, A, N - 1, F]. Its angle over `pi / 2` is how far (in bins, within +-2)
    the partial that dominates the bin lies off its centre: a position-phase decoder's
    deviation, as the source has it."""
    step, before = target[..., 1:, :, :], target[..., :-1, :, :]
    re = step[..., 0] * before[..., 0] + step[..., 1] * before[..., 1]
    im = step[..., 1] * before[..., 0] - step[..., 0] * before[..., 1]
    k = (math.pi / 2) * torch.arange(g.BINS, device=target.device)
    cos, sin = torch.cos(k), torch.sin(k)
    return re * cos + im * sin, im * cos - re * sin


def deviation_loss(deviation, target):
    """How far a position-phase decoder's raw deviations (bins, [B, A, N, F]) are from the
    source's own (`source_steps`), clamped to the deviations the decoder can play and
    weighted by the source's magnitude (the two frames' smaller), so quiet bins do not
    count: a direct target for what the turn's gradient does not find (`probe_deviation`)."""
    re, im = source_steps(target)
    want = (torch.atan2(im, re) / (math.pi / 2)).clamp(-MAX_DEVIATION, MAX_DEVIATION)
    magnitude = torch.linalg.vector_norm(target, dim=-1)
    weight = torch.minimum(magnitude[..., 1:, :], magnitude[..., :-1, :])
    weight = weight / (weight.mean(dim=(-1, -2), keepdim=True) + 1e-8)
    # Past the clamp a deviation plays as the clamp: let it go a little past, no further.
    got = deviation[..., :-1, :].clamp(-1.5 * MAX_DEVIATION, 1.5 * MAX_DEVIATION)
    return ((got - want).abs() * weight).sum() / (weight.sum() + 1e-8)


def reconstruction_loss(ae, audio, train: bool, phase_weight: float = 0.0, first_frames=None,
                        deviation_weight: float = 0.0):
    """`first_frames` [B] int64: each crop's first latent frame in its clip, what a
    position-phase decoder is told (`frame_offset`): its turns then keep time with the
    source's own, so the phases the losses ask for are ones it can give."""
    z = ae.encoder.raw(audio)
    reg = (z * z).mean()
    if train:
        z = z + LATENT_NOISE * torch.randn_like(z)
    logmag, head_phase, turn = ae.decoder.polar(z, first_frames)
    spec = to_stft(logmag, head_phase, turn)
    pred = istft(spec)
    target = stft(audio)
    target_mag = torch.linalg.vector_norm(target, dim=-1)
    pred_mag = torch.linalg.vector_norm(spec, dim=-1)
    direct = (torch.log(pred_mag + 1e-5) - torch.log(target_mag + 1e-5)).abs().mean()
    loss = multi_resolution_stft(pred, audio) + mel_l1(pred, audio) + 0.5 * direct
    if ae.decoder.position_phase:
        loss = loss + multi_resolution_stft(pred, audio, sizes=COMB_SIZES)
    if phase_weight > 0:
        anchored = None if turn is None else head_phase + turn.angle
        loss = loss + phase_weight * phase_loss(spec, target, anchored)
    if deviation_weight > 0 and turn is not None:
        loss = loss + deviation_weight * deviation_loss(turn.deviation, target)
    return loss + LATENT_L2 * reg, pred


def train_deviations_only(decoder: Decoder) -> torch.nn.ModuleList:
    """Freezes `decoder` but for its deviation head (`--keep-magnitudes`), and returns the
    modules left to train."""
    decoder.requires_grad_(False)
    trained = torch.nn.ModuleList([decoder.deviation_norm, decoder.deviation_head])
    return trained.requires_grad_(True)


@torch.no_grad()
def heldout_error_db(ae, clips: ClipSet, count: int = 8) -> float:
    """Mean log-mel error (dB, 64 bands) of whole heldout clips through encode -> decode."""
    ae.eval()
    errs = []
    for i in range(min(count, len(clips))):
        audio = clips.clip(i)[None].to(ae.encoder.latent_std.device)
        pred = istft(ae.decoder(ae.encoder(audio)))
        errs.append(float(log_mel_error_db(pred, audio)))
    ae.train()
    return float(np.mean(errs))


@torch.no_grad()
def latent_scale(ae, clips: ClipSet):
    """Per-channel mean and std of the raw latents over every training clip."""
    ae.eval()
    total, sq, n = 0.0, 0.0, 0
    for i in range(len(clips)):
        z = ae.encoder.raw(clips.clip(i)[None].to(ae.encoder.latent_std.device))[0].double()
        total = total + z.sum(1)
        sq = sq + (z * z).sum(1)
        n += z.shape[1]
    mean = total / n
    std = torch.sqrt(sq / n - mean * mean).clamp(min=1e-3)
    return mean.float(), std.float()


def new_decoder_sizes(args) -> dict:
    """The `dec_*` sizes of a decoder made new (from scratch or `--fresh-decoder`): its
    width and where its deviations come from, as the arguments ask."""
    sizes = position_phase_sizes(args.deviations) if args.position_phase else {}
    if args.dec_fine_dim:
        sizes["dec_fine_dim"] = args.dec_fine_dim
    if args.dec_latent_head:
        sizes["dec_latent_head"] = True
    return sizes


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, action="append", required=True,
                    help="a training set; repeat for each")
    ap.add_argument("--heldout", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--frames", type=int, default=24, help="latent frames per crop")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    ap.add_argument("--budget-minutes", type=float,
                    help="run at most the steps that fit this many minutes (budget.py)")
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--init", type=Path, help="start from this checkpoint (ae.pt)")
    ap.add_argument("--decoder-only", action="store_true",
                    help="train the decoder only: the encoder (and so the latents a DiT was "
                         "trained on, and the latent scale) stays as --init has it")
    ap.add_argument("--enc-hires-bins", type=int, default=0,
                    help="the encoder's fine view: the lowest N bins of an n_fft 3840 STFT "
                         "(160: up to 2 kHz); 0 = none, gm-tiny's shipped encoder")
    ap.add_argument("--dec-latent-head", action="store_true",
                    help="a new decoder also predicts log magnitudes from its latent-rate "
                         "features, added to each of their STFT frames (README: rank)")
    ap.add_argument("--dec-fine-dim", type=int, default=0,
                    help="a new decoder's width at the STFT frame rate, the rank of its "
                         "log magnitudes (0 = 128, gm-tiny's shipped decoder; README: why "
                         "wider)")
    ap.add_argument("--position-phase", action="store_true",
                    help="the decoder turns each partial's phase by its frame position "
                         "(autoencoder.Decoder); from a decoder without it, only with "
                         "--fresh-decoder")
    ap.add_argument("--fresh-decoder", action="store_true",
                    help="with --decoder-only: train a new decoder from random weights for "
                         "--init's encoder (a position-phase decoder cannot be reached from "
                         "one without it; tools/train/README.md)")
    ap.add_argument("--keep-magnitudes", action="store_true",
                    help="with --decoder-only --position-phase from a decoder without it: the "
                         "new decoder keeps --init's trunk and log-magnitude head, and only its "
                         "deviation head (new, from zero) is trained")
    ap.add_argument("--deviations", choices=DEVIATION_SOURCES, default="head",
                    help="with --position-phase: where each bin's deviation comes from, a "
                         "head of its own, the magnitudes' peaks (autoencoder.peak_deviations) "
                         "or the peaks that stand out as partials, every other bin played as "
                         "noise (autoencoder.partial_deviations); the last two have no "
                         "weights, so from a plain --init decoder the whole decoder goes on "
                         "from its magnitudes")
    ap.add_argument("--phase-weight", type=float, default=0.0,
                    help="weight of the anti-wrapping phase losses (0: magnitude losses only)")
    ap.add_argument("--deviation-weight", type=float, default=0.0,
                    help="position phase: weight of the distance of the decoder's deviations "
                         "to the source's own (deviation_loss)")
    args = ap.parse_args()
    if args.decoder_only and not args.init:
        ap.error("--decoder-only needs --init")
    if args.fresh_decoder and not args.decoder_only:
        ap.error("--fresh-decoder needs --decoder-only")
    if args.keep_magnitudes and not (args.decoder_only and args.position_phase):
        ap.error("--keep-magnitudes needs --decoder-only and --position-phase")
    if args.deviation_weight and not args.position_phase:
        ap.error("--deviation-weight needs --position-phase")
    if args.keep_magnitudes and args.fresh_decoder:
        ap.error("--keep-magnitudes and --fresh-decoder are two different starts; pick one")
    if args.dec_latent_head and not args.position_phase:
        ap.error("--dec-latent-head needs --position-phase (a plain head predicts phases too)")
    if (args.dec_fine_dim or args.dec_latent_head) and args.init and not args.fresh_decoder:
        ap.error("--dec-fine-dim and --dec-latent-head shape a new decoder: from --init only "
                 "with --fresh-decoder")
    # Deviations read from the magnitudes (no deviation head).
    read_deviations = args.deviations != "head"
    if read_deviations and not args.position_phase:
        ap.error("--deviations needs --position-phase")
    if read_deviations and (args.keep_magnitudes or args.deviation_weight):
        ap.error(f"--deviations {args.deviations} has no deviation head: --keep-magnitudes "
                 "and --deviation-weight train one")
    if read_deviations and args.phase_weight:
        ap.error(f"--deviations {args.deviations}: the phase follows from the magnitudes, so "
                 "the phase losses have nothing to move")

    device = device_from(args.device)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    train, heldout = ClipSet(args.data), ClipSet(args.heldout)
    # What trained these weights, stage by stage (the export writes it into PROVENANCE.md).
    stages = []
    if args.init:
        init = torch.load(args.init, map_location="cpu", weights_only=False)
        sizes, state = dict(init.get("sizes", {})), init["state"]
        ae = Autoencoder(**sizes).train()
        ae.load_state_dict(state)
        stages = init.get("stages", [{"steps": init["step"], "decoder_only": False,
                                      "phase_weight": 0.0}])
        if args.fresh_decoder:
            # The encoder and its latent scale stay (so a DiT trained on them stays valid);
            # the decoder starts from random weights.
            sizes.update(new_decoder_sizes(args))
            ae.sizes = sizes
            ae.decoder = Decoder(**decoder_sizes(sizes))
            ae.set_latent_scale(ae.encoder.latent_mean, ae.encoder.latent_std)
            stages = [st for st in stages if not st.get("decoder_only")]
        elif (args.keep_magnitudes or read_deviations) and not sizes.get("dec_position_phase"):
            sizes.update(position_phase_sizes(args.deviations))
            ae.sizes = sizes
            ae.decoder = position_phase_from(ae.decoder, decoder_sizes(sizes))
        elif args.keep_magnitudes:
            ap.error("--keep-magnitudes: --init's decoder already has position phase")
        elif args.position_phase and not sizes.get("dec_position_phase"):
            ap.error("--position-phase from a decoder without it needs --fresh-decoder, "
                     "--keep-magnitudes or --deviations peaks or partials")
        elif args.position_phase and sizes.get("dec_deviations", "head") != args.deviations:
            ap.error(f"--deviations {args.deviations}: --init's decoder takes its deviations "
                     f"from its {sizes.get('dec_deviations', 'head')}")
    else:
        sizes = {"enc_hires_bins": args.enc_hires_bins} if args.enc_hires_bins else {}
        sizes.update(new_decoder_sizes(args))
        ae = Autoencoder(**sizes).train()
    ae.to(device)
    if args.decoder_only:
        ae.encoder.requires_grad_(False)
    trained = ae.decoder if args.decoder_only else ae
    if args.keep_magnitudes:
        trained = train_deviations_only(ae.decoder)
    params = {k: sum(p.numel() for p in m.parameters()) for k, m in
              [("encoder", ae.encoder), ("decoder", ae.decoder)]}
    print(f"autoencoder: {params}, {len(train)} clips", flush=True)
    opt = torch.optim.AdamW(trained.parameters(), lr=args.lr, betas=(0.8, 0.99), weight_decay=1e-4)
    warmup = min(200, args.steps // 10)

    budget = StepBudget(args.steps, args.budget_minutes)

    def lr_at(step):
        return warmup_cosine(step, args.lr, warmup, budget.steps)

    log = open(args.out / "ae-log.jsonl", "w")
    started, running = time.time(), []
    samples = args.frames * g.SAMPLES_PER_LATENT
    step = 0
    while step < budget.steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        audio, first_frames = train.crops(rng, args.batch, samples)
        loss, _ = reconstruction_loss(ae, audio.to(device, non_blocking=True), train=True,
                                      phase_weight=args.phase_weight,
                                      deviation_weight=args.deviation_weight,
                                      first_frames=first_frames.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained.parameters(), 1.0)
        opt.step()
        running.append(float(loss.detach()))
        last = step + 1 == budget.after_step(step + 1)
        if (step + 1) % 50 == 0 or last:
            entry = {"step": step + 1, "loss": float(np.mean(running)), "lr": lr_at(step),
                     "elapsed_s": round(time.time() - started, 1)}
            running = []
            if (step + 1) % args.eval_every == 0 or last:
                entry["heldout_log_mel_db"] = heldout_error_db(ae, heldout)
                torch.save({"step": step + 1, "sizes": ae.sizes,
                            "state": cpu_state(ae)}, args.out / "ae.pt")
            print(json.dumps(entry), flush=True)
            log.write(json.dumps(entry) + "\n")
            log.flush()
        step += 1
    stages = stages + [{"steps": budget.steps, "decoder_only": args.decoder_only,
                        "position_phase": args.position_phase,
                        "fresh_decoder": args.fresh_decoder,
                        "keep_magnitudes": args.keep_magnitudes,
                        "deviations": args.deviations if args.position_phase else None,
                        "phase_weight": args.phase_weight,
                        "deviation_weight": args.deviation_weight}]
    if not args.decoder_only:
        mean, std = latent_scale(ae, train)
        ae.set_latent_scale(mean, std)
    std = ae.encoder.latent_std
    final = {"step": budget.steps, "heldout_log_mel_db": heldout_error_db(ae, heldout, 60),
             "latent_std_range": [float(std.min()), float(std.max())]}
    print(json.dumps(final), flush=True)
    log.write(json.dumps(final) + "\n")
    torch.save({"step": budget.steps, "stages": stages, "sizes": ae.sizes,
                "state": cpu_state(ae), "heldout_log_mel_db": final["heldout_log_mel_db"]},
               args.out / "ae.pt")


if __name__ == "__main__":
    main()
