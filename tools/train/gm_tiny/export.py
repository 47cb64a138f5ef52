"""Stage 3: export a trained gm-tiny to a `latentd-bundle/1` folder (docs/bundles.md).

    python3 -m tools.train.gm_tiny.export --ae /work/runs/ae/ae.pt --dit /work/runs/dit/dit.pt \
        --data /work/data/train --out models/gm-tiny

Writes encoder.onnx, decoder.onnx (output `stft`, inverted by latentd), dit.onnx, text.onnx,
tags.txt, bundle.toml, PROVENANCE.md. With `--autoencoder-from BUNDLE` instead of `--ae`, the
encoder and decoder graphs are copied from an existing bundle (a DiT retrained on that bundle's
latents, `train_dit --encoder-onnx`) and only dit.onnx and text.onnx are exported. Weights
are stored as fp16 initializers each followed by a Cast to f32 (ONNX Runtime folds the casts
when it loads the graph, so the CPU computes in f32 and the files are half the size). Every graph is checked against torch with
`onnx.reference` at shapes other than the export's (dynamic axes stay dynamic).
"""

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import onnx
import torch

from . import geometry as g
from .dit import Dit, TagEmbedding, checkpoint_arch
from .smoke import agree, export_dit_text, export_graphs, manifest
from .train_dit import autoencoder_from

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bundles"))
import onnx_weights  # noqa: E402  (tools/bundles is not a package)


def store_fp16(path: Path) -> tuple[int, int]:
    """Rewrite a graph's large f32 initializers as fp16 + Cast (tools/bundles/onnx_weights.py).
    Returns (tensors, elements)."""
    model = onnx.load(str(path))
    stored = onnx_weights.store_half(model, "fp16")
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return stored


def stage_words(st: dict) -> str:
    """One autoencoder training stage (a checkpoint's `stages` entry), in words."""
    if "bundle" in st:  # read back from a bundle (from_bundle.py): its own words already
        return st["words"]
    words = [f"{st['steps']} steps"]
    if st.get("fresh_decoder"):
        words.append("(a new decoder, the encoder kept)")
    elif st.get("keep_magnitudes"):
        words.append("(a new deviation head, the magnitudes kept)")
    elif st["decoder_only"]:
        words.append("(decoder only)")
    if st["phase_weight"]:
        words.append(f"with phase losses x{st['phase_weight']:g}")
    if st.get("position_phase"):
        words.append("turning phases by frame position")
        if st.get("deviations") == "peaks":
            words.append("(deviations from the magnitudes' peaks)")
        elif st.get("deviations") == "partials":
            words.append("(deviations from the partials among the magnitudes' peaks, "
                         "noise elsewhere)")
    if st.get("deviation_weight"):
        words.append(f"(deviations taught x{st['deviation_weight']:g})")
    return " ".join(words)


def ae_stages(ckpt) -> str:
    """How the autoencoder checkpoint was trained, stage by stage, in words."""
    stages = ckpt.get("stages", [{"steps": ckpt["step"], "decoder_only": False,
                                  "phase_weight": 0.0}])
    hires = ckpt.get("sizes", {}).get("enc_hires_bins", 0)
    from_bundle = any("bundle" in st for st in stages)  # its words name the fine view
    view = f" (encoder with a {hires}-bin 12.5 Hz fine view)" if hires and not from_bundle else ""
    # The decoder's shape is named by a bundle's words only if no new decoder came after it.
    fresh = max((i for i, st in enumerate(stages) if st.get("fresh_decoder")), default=0)
    if not any("bundle" in st for st in stages[fresh:]):
        sizes = ckpt.get("sizes", {})
        if sizes.get("dec_fine_dim"):
            view += f" (decoder {sizes['dec_fine_dim']} wide at the STFT frame rate)"
        if sizes.get("dec_latent_head"):
            view += " (decoder with a latent-rate magnitude head)"
    return " then ".join(stage_words(st) for st in stages) + view


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ae_source = ap.add_mutually_exclusive_group(required=True)
    ae_source.add_argument("--ae", type=Path, help="the autoencoder checkpoint to export")
    ae_source.add_argument("--autoencoder-from", type=Path,
                           help="copy encoder.onnx and decoder.onnx from this bundle")
    ap.add_argument("--dit", type=Path, required=True)
    ap.add_argument("--data", type=Path, action="append", required=True,
                    help="a training set (its PROVENANCE.md is copied); repeat for each")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--name", default="gm-tiny")
    ap.add_argument("--fp32", action="store_true", help="keep f32 initializers")
    ap.add_argument("--default-prompt", help="[text] default_prompt: tags a fresh start plays")
    args = ap.parse_args()

    torch.manual_seed(0)
    ckpt = torch.load(args.dit, map_location="cpu")
    vocab = ckpt["vocab"]
    arch = checkpoint_arch(ckpt)
    dit, text = Dit(**arch).eval(), TagEmbedding(len(vocab)).eval()
    dit.load_state_dict(ckpt["dit"])
    text.load_state_dict(ckpt["text"])

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    ae_ckpt = ae = None
    if args.ae:
        ae_ckpt = torch.load(args.ae, map_location="cpu")
        ae = autoencoder_from(ae_ckpt)
        ae_text = ae_stages(ae_ckpt)
    else:
        # Read before the copy: `--out` may be that very bundle, its PROVENANCE.md rewritten below.
        carried = carried_autoencoder_provenance(args.autoencoder_from)
        ae_text = copy_autoencoder(args.autoencoder_from, out)
    if not args.fp32:
        # A position-phase decoder rounds its deviations to a grid, and weights that differ
        # by fp16's rounding move some of them to the next grid point: round the modules
        # first, so the agreement checks run what the graphs hold.
        onnx_weights.round_weights([m for m in (ae, dit, text) if m is not None], "fp16")
    t = 12
    ids = torch.tensor([[1, 2, 3]])
    x = torch.randn(2, t, g.LATENT_CHANNELS)
    ts = torch.tensor([0.9, 0.3])
    ctx = torch.zeros(2, t, 2 * g.LATENT_CHANNELS)
    audio = 0.1 * torch.randn(1, g.AUDIO_CHANNELS, t * g.SAMPLES_PER_LATENT)
    with torch.no_grad():
        cond = torch.cat([text(ids), torch.zeros(1, 3, 64)])
        if ae is None:
            export_dit_text(out, dit, text, (x, ts, cond, ctx), ids)
        else:
            export_graphs(out, ae, dit, text, (audio, ae.encoder(audio), (x, ts, cond, ctx), ids))
    exported = {"dit": dit, "text": text}
    if ae is not None:
        exported = {"encoder": ae.encoder, "decoder": ae.decoder, **exported}
    fp16 = {}
    if not args.fp32:
        for name in exported:
            fp16[name] = store_fp16(out / f"{name}.onnx")

    # Agreement at other shapes than the export's, after the fp16 rewrite, relative to the
    # output's scale (the modules hold the graphs' fp16 weights: what is left is arithmetic).
    # The encoder's own f32 graph differs from torch by about 1e-3 already (measured on
    # gm-tiny's and a smoke run's: 1.0e-3, 1.5e-3; onnx.reference's long DFT convolutions
    # and logs), so it gets more room: at 2e-3 a smoke run's export failed on it.
    tol, encoder_tol = 2e-3, 1e-2
    a2 = 0.1 * torch.randn(1, g.AUDIO_CHANNELS, 6 * g.SAMPLES_PER_LATENT)
    z2 = torch.randn(1, g.LATENT_CHANNELS, 14)
    x2, c2 = torch.randn(3, 14, 64), torch.randn(3, 14, 128)
    e2 = torch.cat([text(torch.tensor([[4, 5, 6, 7]]))] * 3)
    t2 = torch.tensor([0.5, 0.2, 0.7])
    errs = {}
    with torch.no_grad():
        if ae is not None:
            errs["encoder"] = agree(out / "encoder.onnx", {"audio": a2}, ae.encoder(a2),
                                    encoder_tol)
            feeds, offset = {"latents": z2}, None
            if ae.decoder.position_phase:
                offset = torch.tensor([-7])
                feeds["frame_offset"] = offset
            errs["decoder"] = agree(out / "decoder.onnx", feeds, ae.decoder(z2, offset), tol)
        errs["dit"] = agree(out / "dit.onnx", {"hidden_states": x2, "timestep": t2,
                                               "encoder_hidden_states": e2, "context_latents": c2},
                            dit(x2, t2, e2, c2), tol)
        errs["text"] = agree(out / "text.onnx", {"ids": torch.tensor([[0, 9]])},
                             text(torch.tensor([[0, 9]])), tol)
    (out / "tags.txt").write_text("".join(f"{tag}\n" for tag in vocab))
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in exported.items()}
    if ae_ckpt is None:
        # The copied graphs are the bytes their bundle's provenance describes: carry its facts.
        params, fp16, errs = ({**carried[key], **mine} for key, mine in
                              (("parameters", params), ("fp16", fp16), ("errors", errs)))
    provenance = (f"gm-tiny, trained by latentd's tools/train on procedurally composed music "
                  f"rendered with MIT-licensed General MIDI soundfonts; "
                  f"autoencoder {ae_text}, {dit_words(ckpt, arch)}; PROVENANCE.md")
    (out / "bundle.toml").write_text(manifest(args.name, provenance, default_prompt=args.default_prompt))
    if ae_ckpt is not None:
        ae_line = (f"{ae_text}, heldout log-mel error "
                   f"{ae_ckpt.get('heldout_log_mel_db', float('nan')):.2f} dB (64 bands)")
    else:
        ae_line = (f"{carried['line'] or ae_text} ({COPIED} from `{args.autoencoder_from}`; "
                   "their figures below are from its provenance)")
    # Each training set's own provenance, its headings moved under this file's.
    data_provenance = "\n".join(
        f"### `{d.name}`\n\n" + (d / "PROVENANCE.md").read_text().replace("\n## ", "\n#### ")
        .removeprefix("# Provenance\n")
        for d in args.data)
    (out / "PROVENANCE.md").write_text(
        f"# {args.name}: provenance\n\n"
        "Weights trained here, from scratch, by `tools/train/gm_tiny` (no pretrained weights, "
        "no downloaded audio). Licence: MIT (the weights, the code, the soundfont).\n\n"
        f"- parameters: {json.dumps(params)}\n"
        f"- autoencoder: {ae_line}\n"
        f"- {dit_words(ckpt, arch)}, with its tag embedding (EMA weights)\n"
        f"- stored as fp16 initializers: {json.dumps(fp16)}\n"
        f"- max |onnx.reference - torch| per graph: {json.dumps(errs)}\n\n"
        "## Training data\n\nThe commands that trained each stage on these sets are in "
        "`tools/train/README.md`.\n\n" + data_provenance)
    size = sum(p.stat().st_size for p in out.iterdir())
    print(json.dumps({"out": str(out), "bytes": size, "params": params, "fp16": fp16,
                      "errors": errs}))


def dit_words(ckpt, arch) -> str:
    rope = "rotary positions" if arch.get("rope") else "no positions"
    return f"DiT {ckpt['step']} steps ({rope})"


def copy_autoencoder(bundle: Path, out: Path) -> str:
    """Copies `bundle`'s encoder.onnx and decoder.onnx into `out`; returns how they were
    trained, in the words of `bundle`'s manifest provenance."""
    words = autoencoder_words(bundle)
    assert words, (f"{bundle}/bundle.toml: its provenance does not say how the autoencoder "
                   "was trained")
    for name in ("encoder.onnx", "decoder.onnx"):
        if bundle.resolve() != out.resolve():
            shutil.copyfile(bundle / name, out / name)
    return words


COPIED = "encoder.onnx and decoder.onnx copied unchanged"


def carried_autoencoder_provenance(bundle: Path) -> dict:
    """What `bundle`'s PROVENANCE.md (written by `main`) says of its encoder and decoder: the
    `line` after "- autoencoder: " (without an earlier copy's note; None where there is
    none), and their entries of the `parameters`, `fp16` and `errors` lines (empty where the
    file or the line is missing). A bundle that copies them on keeps saying what they are."""
    path = bundle / "PROVENANCE.md"
    text = path.read_text() if path.exists() else ""
    line = re.search(r"^- autoencoder: (.*)$", text, re.M)
    facts = {"line": line.group(1).split(f" ({COPIED}")[0] if line else None}
    for key, label in (("parameters", "parameters"), ("fp16", "stored as fp16 initializers"),
                       ("errors", "max |onnx.reference - torch| per graph")):
        found = re.search(rf"^- {re.escape(label)}: (\{{.*\}})$", text, re.M)
        entries = json.loads(found.group(1)) if found else {}
        facts[key] = {g: entries[g] for g in ("encoder", "decoder") if g in entries}
    return facts


def autoencoder_words(bundle: Path) -> str | None:
    """How `bundle`'s autoencoder was trained, in the words of its manifest's provenance
    (written by `main`), or None where it does not say."""
    found = re.search(r"autoencoder (.*?), DiT", (bundle / "bundle.toml").read_text())
    return found.group(1) if found else None


if __name__ == "__main__":
    main()
