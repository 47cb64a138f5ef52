"""Torch checkpoints from an exported gm-tiny bundle, so that training can go on from it.

    python3 -m tools.train.gm_tiny.from_bundle --bundle models/gm-tiny --out /work/runs/gm-tiny-pt

Writes `ae.pt` (what `train_ae` writes: encoder and decoder, their latent scale) and `dit.pt`
(what `train_dit` writes: the DiT and tag embedding, the vocabulary, the architecture), read
back from the bundle's ONNX graphs. A bundle is all that ships: its torch checkpoints stay on
the machine that trained it. With these, `train_ae --init ae.pt --decoder-only` trains the
decoder further without moving the latents the DiT was trained on, and `train_dit --init
dit.pt --encoder-onnx <bundle>/encoder.onnx` trains the DiT further; each session's training
adds to the last one's instead of starting again.

How the weights are found: every initializer named after a torch parameter (`coarse.0.dw.weight`,
or `..._fp16` / `..._bf16` when the export stored it in half precision + Cast) is that
parameter. The exporter turns
each `nn.Linear` applied to a 3-D tensor into a `MatMul` against an anonymous transposed copy
(`onnx::MatMul_228`); that node's scope (`/coarse/coarse.0/up/MatMul`) names the module
(`coarse.0.up`). A parameter found twice, or not at all, or of another shape, is an error
naming it. Then each module is run beside its graph on ONNX Runtime at shapes other than the
export's, and they must agree (fp16 weights are exact in f32, so the difference is rounding
only); the DiT's architecture (rotary positions or none) is the one that agrees.

Runs on the CPU in seconds. Nothing is trained.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper

from . import geometry as g
from .autoencoder import NOISE_PHASE, Autoencoder, Decoder, position_phase_sizes
from .dit import Dit, TagEmbedding
from .export import autoencoder_words

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bundles"))
import onnx_weights  # noqa: E402  (tools/bundles is not a package)

# A graph and its module must agree within this fraction of the output's largest magnitude.
AGREEMENT = 1e-3


class BundleWeightsError(Exception):
    """A graph's weights do not map one-to-one onto the torch module's parameters."""


def linear_scope(node_name: str) -> str:
    """The module a node belongs to, from the exporter's scope path:
    `/coarse/coarse.0/up/MatMul` -> `coarse.0.up`, `/blocks.0/mlp/mlp.0/MatMul` ->
    `blocks.0.mlp.0` (a container's child is named `<container>.<index>` in the path)."""
    names = []
    for part in node_name.strip("/").split("/")[:-1]:
        if names and part.startswith(names[-1] + "."):
            names[-1] = part
        else:
            names.append(part)
    return ".".join(names)


def graph_weights(path: Path, model: onnx.ModelProto | None = None
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The graph's named initializers as f32 (an `_fp16` / `_bf16` suffix dropped), and the
    transposed `MatMul` weights by module (see the module doc); `model`: the graph at
    `path`, where already loaded."""
    model = model or onnx.load(str(path))
    named = {}
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init).astype(np.float32)
        named[onnx_weights.original_name(init.name)] = array
    produced_by_cast = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Cast"}
    by_module = {}
    for node in model.graph.node:
        if node.op_type != "MatMul":
            continue
        source = onnx_weights.original_name(produced_by_cast.get(node.input[1], node.input[1]))
        if source.startswith("onnx::MatMul") and source in named:
            module = linear_scope(node.name)
            if module in by_module:
                raise BundleWeightsError(f"{path.name}: two MatMul weights for `{module}`")
            by_module[module] = named[source].T
    return named, by_module


def load_graph_into(module: torch.nn.Module, path: Path, weights=None) -> None:
    """Fills `module`'s parameters and persistent buffers from the graph at `path`
    (`weights`: its `graph_weights`, where already read)."""
    named, by_module = weights or graph_weights(path)
    state, missing, used = {}, [], set()
    for key, current in module.state_dict().items():
        value = named.get(key)
        if value is None and key.endswith(".weight"):
            value = by_module.get(key.removesuffix(".weight"))
            used.add(key.removesuffix(".weight"))
        if value is None:
            missing.append(key)
            continue
        if tuple(value.shape) != tuple(current.shape):
            raise BundleWeightsError(f"{path.name}: `{key}` is {list(value.shape)} in the "
                                     f"graph, {list(current.shape)} in the module")
        state[key] = torch.from_numpy(np.ascontiguousarray(value))
    if missing:
        # The exporter keeps one copy of equal initializers: untrained norms and scales
        # (all ones, all 0.1) come out shared, so only trained modules read back.
        raise BundleWeightsError(f"{path.name}: not in the graph: {', '.join(missing)} "
                                 "(equal tensors are stored once: is it trained?)")
    unused = sorted(set(by_module) - used)
    if unused:
        raise BundleWeightsError(f"{path.name}: MatMul weights of no parameter: {unused}")
    module.load_state_dict(state)


def disagreement(path: Path, feeds: dict[str, torch.Tensor], expected: torch.Tensor) -> float:
    """`max |graph - module| / max |module|` on ONNX Runtime's CPU provider."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {k: v.numpy() for k, v in feeds.items()})[0]
    want = expected.detach().numpy()
    return float(np.abs(got - want).max() / (np.abs(want).max() + 1e-9))


def bundle_words(bundle: Path) -> tuple[str, int]:
    """How the bundle's autoencoder was trained (its manifest's provenance, in words) and its
    DiT's training steps."""
    ae = autoencoder_words(bundle)
    dit = re.search(r"DiT (\d+) steps", (bundle / "bundle.toml").read_text())
    if not ae or not dit:
        raise BundleWeightsError(f"{bundle}/bundle.toml: its provenance does not say how the "
                                 "autoencoder and the DiT were trained")
    return ae, int(dit.group(1))


def holds_noise_phase(model: onnx.ModelProto) -> bool:
    """Whether a decoder graph holds `NOISE_PHASE` (a position-phase decoder with
    `deviations="partials"`), as an initializer (halved or not) or a Constant node."""
    tensors = list(model.graph.initializer) + [
        a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute
        if a.name == "value"]
    noise = NOISE_PHASE.numpy()
    return any(tuple(t.dims) == noise.shape
               and np.array_equal(numpy_helper.to_array(t).astype(np.float32), noise)
               for t in tensors)


def autoencoder_sizes(encoder_weights, decoder_weights, decoder_inputs: list[str],
                      noise_phase: bool = False) -> dict:
    """`Autoencoder` sizes from the encoder's first convolution (the fine view widens it)
    and the decoder: its width at the STFT frame rate (its last norm's), whether it has a
    latent-rate magnitude head, and whether it takes `frame_offset` (position phase), with
    a deviation head at the latent rate, deviations read from its magnitudes' peaks, or
    from their partials (its graph then holds `NOISE_PHASE` for the other bins). The
    weights are each graph's `graph_weights`, `decoder_inputs` the decoder graph's input
    names, `noise_phase` whether it holds `NOISE_PHASE` (`holds_noise_phase`)."""
    inputs = encoder_weights[0]["inp.weight"].shape[1] // g.AUDIO_CHANNELS
    hires = inputs - g.ENC_BINS
    sizes = {"enc_hires_bins": hires} if hires else {}
    fine_dim = decoder_weights[0]["norm.weight"].shape[0]
    if fine_dim != Decoder().fine_dim:
        sizes["dec_fine_dim"] = fine_dim
    if "latent_head" in decoder_weights[1]:
        sizes["dec_latent_head"] = True
    if "frame_offset" in decoder_inputs:
        sizes.update(position_phase_sizes(
            "head" if "deviation_head" in decoder_weights[1]
            else "partials" if noise_phase else "peaks"))
    return sizes


def read_autoencoder(bundle: Path) -> tuple[Autoencoder, dict]:
    enc_path, dec_path = bundle / "encoder.onnx", bundle / "decoder.onnx"
    dec_graph = onnx.load(str(dec_path))
    enc, dec = graph_weights(enc_path), graph_weights(dec_path, dec_graph)
    dec_inputs = [i.name for i in dec_graph.graph.input]
    sizes = autoencoder_sizes(enc, dec, dec_inputs, holds_noise_phase(dec_graph))
    ae = Autoencoder(**sizes).eval()
    load_graph_into(ae.encoder, enc_path, enc)
    load_graph_into(ae.decoder, dec_path, dec)
    gen = torch.Generator().manual_seed(3)
    audio = 0.1 * torch.randn(1, g.AUDIO_CHANNELS, 7 * g.SAMPLES_PER_LATENT, generator=gen)
    latents = torch.randn(1, g.LATENT_CHANNELS, 13, generator=gen)
    feeds, offset = {"latents": latents}, None
    if ae.decoder.position_phase:
        offset = torch.tensor([41])
        feeds["frame_offset"] = offset
    with torch.no_grad():
        errs = {"encoder": disagreement(enc_path, {"audio": audio}, ae.encoder(audio)),
                "decoder": disagreement(dec_path, feeds, ae.decoder(latents, offset))}
    return ae, errs


def read_dit(bundle: Path, vocab: list[str]) -> tuple[Dit, TagEmbedding, dict, dict]:
    text = TagEmbedding(len(vocab)).eval()
    load_graph_into(text, bundle / "text.onnx")
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(3, 14, g.LATENT_CHANNELS, generator=gen)
    ctx = torch.randn(3, 14, 2 * g.LATENT_CHANNELS, generator=gen)
    t = torch.tensor([0.5, 0.2, 0.7])
    ids = torch.tensor([[4, 5, 6, 7]]) % len(vocab)
    feeds = {"hidden_states": x, "timestep": t, "context_latents": ctx}
    tried = {}
    path = bundle / "dit.onnx"
    weights = graph_weights(path)
    with torch.no_grad():
        cond = torch.cat([text(ids)] * 3)
        feeds["encoder_hidden_states"] = cond
        for rope in (False, True):
            dit = Dit(rope=rope).eval()
            load_graph_into(dit, path, weights)
            err = disagreement(path, feeds, dit(x, t, cond, ctx))
            tried[f"rope={rope}"] = err
            if err <= AGREEMENT:
                errs = {"dit": err, "text": disagreement(bundle / "text.onnx", {"ids": ids},
                                                          text(ids))}
                return dit, text, {"rope": rope}, errs
    raise BundleWeightsError(f"{bundle}/dit.onnx: no DiT architecture agrees with the graph "
                             f"(relative differences {tried})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True, help="a gm-tiny bundle folder")
    ap.add_argument("--out", type=Path, required=True, help="where ae.pt and dit.pt go")
    args = ap.parse_args()

    torch.set_num_threads(1)
    vocab = (args.bundle / "tags.txt").read_text().split()
    ae_words, dit_steps = bundle_words(args.bundle)
    ae, errs = read_autoencoder(args.bundle)
    dit, text, arch, dit_errs = read_dit(args.bundle, vocab)
    errs.update(dit_errs)
    bad = {k: v for k, v in errs.items() if v > AGREEMENT}
    if bad:
        raise BundleWeightsError(f"{args.bundle}: graphs and modules disagree: {bad}")
    args.out.mkdir(parents=True, exist_ok=True)
    stage = {"bundle": args.bundle.resolve().name, "words": ae_words}
    torch.save({"step": 0, "stages": [stage], "sizes": ae.sizes, "state": ae.state_dict()},
               args.out / "ae.pt")
    torch.save({"step": dit_steps, "dit": dit.state_dict(), "text": text.state_dict(),
                "vocab": vocab, "arch": arch}, args.out / "dit.pt")
    print(json.dumps({"out": str(args.out), "arch": arch, "sizes": ae.sizes,
                      "relative_disagreement": errs}))


if __name__ == "__main__":
    main()
