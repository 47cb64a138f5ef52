"""The ACE-Step exporter on ACE-Step v1.5's own model code (diffusers, transformers) at small
widths with random weights: the exported graphs agree with the torch modules on ONNX Runtime
at shapes other than the ones they were traced at, rows of a batch do not see each other, and
the DiT's mapping of latentd's conventions (null condition, no source) is ACE-Step's.

    python3 -m unittest discover -s tools/export-acestep/tests

Needs torch, diffusers, transformers and onnxruntime (scripts/test.sh installs them). Without
them the tests skip, unless LATENTD_REQUIRE_EXPORT_TOOLS=1, when they fail.
"""

import importlib.util
import os
import sys
import tempfile
import unittest
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1]
NEEDED = ["torch", "diffusers", "transformers", "onnxruntime", "onnx"]
MISSING = [m for m in NEEDED if importlib.util.find_spec(m) is None]
if MISSING and os.environ.get("LATENTD_REQUIRE_EXPORT_TOOLS") == "1":
    raise RuntimeError(f"LATENTD_REQUIRE_EXPORT_TOOLS=1 but {', '.join(MISSING)} missing")

if not MISSING:
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    sys.path.insert(0, str(TOOL))
    import export_acestep as ea

# Float32 graphs against the same float32 modules: differences are rounding only.
TOLERANCE = 2e-5


@unittest.skipIf(MISSING, f"missing: {', '.join(MISSING)}")
class ExportedGraphs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.out = Path(cls.dir.name)
        cls.parts = ea.random_tiny(seed=3)
        cls.tags = ea.tag_vocabulary(ea.DEFAULT_TAGS)
        cls.report = ea.export(cls.parts, cls.tags, cls.out, "test", 8, 3.0, 30, "pop piano")
        cls.dit = ea.Dit(cls.parts.transformer, cls.parts.condition_encoder,
                         cls.parts.audio_tokenizer, cls.parts.detokenizer).eval()

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def session(self, graph):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        return ort.InferenceSession(str(self.out / f"{graph}.onnx"), options)

    def dit_inputs(self, batch, frames, rows, seed):
        g = torch.Generator().manual_seed(seed)
        given = torch.ones(batch, frames, 64)
        given[batch // 2:] = 0.0
        return {
            "hidden_states": torch.randn(batch, frames, 64, generator=g),
            "timestep": torch.rand(batch, generator=g),
            "encoder_hidden_states": torch.randn(batch, rows, 64, generator=g),
            "context_latents": torch.cat([torch.randn(batch, frames, 64, generator=g), given], -1),
        }

    def test_the_manifest_states_the_measured_geometry(self):
        toml = (self.out / "bundle.toml").read_text()
        self.assertIn("t_multiple = 10", toml)  # patch 2 and the 5-frame cover-hint pool
        self.assertIn(f"context_frames = {self.report['context_frames']}", toml)
        self.assertGreaterEqual(self.report["context_frames"], 1)
        self.assertEqual((self.out / "tags.txt").read_text().split(), self.tags)

    def test_the_dit_graph_follows_the_module_at_new_shapes(self):
        session = self.session("dit")
        for batch, frames, rows in [(1, 10, 5), (3, 30, 2), (4, 50, 7)]:
            inputs = self.dit_inputs(batch, frames, rows, seed=batch)
            with torch.no_grad():
                want = self.dit(*inputs.values()).numpy()
            got = session.run(["velocity"], {k: v.numpy() for k, v in inputs.items()})[0]
            self.assertEqual(got.shape, (batch, frames, 64))
            self.assertLess(float(np.abs(got - want).max()), TOLERANCE, (batch, frames, rows))

    def test_dit_rows_do_not_see_each_other(self):
        session = self.session("dit")
        inputs = {k: v.numpy() for k, v in self.dit_inputs(4, 20, 3, seed=9).items()}
        together = session.run(["velocity"], inputs)[0]
        for row in range(4):
            alone = session.run(["velocity"], {k: v[row:row + 1] for k, v in inputs.items()})[0]
            self.assertLess(float(np.abs(alone[0] - together[row]).max()), TOLERANCE, row)

    def test_a_null_row_is_the_learned_null_condition_and_no_source_is_silence(self):
        inputs = self.dit_inputs(1, 20, 4, seed=4)
        inputs["encoder_hidden_states"].zero_()
        inputs["context_latents"][..., 64:] = 0.0
        with torch.no_grad():
            got = self.dit(*inputs.values())
            enc = self.parts.condition_encoder
            context = torch.cat([enc.silence_latent[:, :20], torch.ones(1, 20, 64)], -1)
            want = self.parts.transformer(
                hidden_states=inputs["hidden_states"], timestep=inputs["timestep"],
                timestep_r=inputs["timestep"],
                encoder_hidden_states=enc.null_condition_emb.expand(1, 4, -1),
                context_latents=context, return_dict=False)[0]
        self.assertLess(float((got - want).abs().max()), 1e-6)

    def test_text_and_timbre_rows_are_the_condition_encoders_for_any_tags(self):
        session = self.session("text")
        text = ea.build_text(self.parts, self.tags, 30)
        timbre = ea.Timbre(self.parts.condition_encoder).eval()
        self.assertLess(self.report["condition_vs_condition_encoder"], 1e-5)
        g = torch.Generator().manual_seed(8)
        references = [torch.zeros(1, ea.TIMBRE_FRAMES, 64), torch.randn(1, ea.TIMBRE_FRAMES, 64, generator=g)]
        lengths = []
        for ids, reference in zip(([0], [5, 6, 7, 8], [len(self.tags) - 1, 0, 0]), references * 2):
            x = torch.tensor([ids])
            with torch.no_grad():
                want = text(x).numpy()
                err = ea.check_against_condition_encoder(self.parts, text, timbre, x, reference)
            self.assertLess(err, 1e-5, ids)
            got = session.run(["encoder_hidden_states"], {"ids": x.numpy()})[0]
            self.assertEqual(got.shape, want.shape)
            self.assertLess(float(np.abs(got - want).max()), TOLERANCE, ids)
            lengths.append(got.shape[1])
        self.assertEqual(len(set(lengths)), 3, "the caption grows with the tags")

    def test_the_timbre_graph_maps_no_reference_to_silence(self):
        session = self.session("timbre")
        timbre = ea.Timbre(self.parts.condition_encoder).eval()
        zero = torch.zeros(1, ea.TIMBRE_FRAMES, 64)
        g = torch.Generator().manual_seed(6)
        reference = torch.randn(1, ea.TIMBRE_FRAMES, 64, generator=g)
        with torch.no_grad():
            silence_rows, _ = self.parts.condition_encoder.timbre_encoder(
                timbre.silence, torch.zeros(1, dtype=torch.long))
            for x, want in ((zero, silence_rows), (reference, timbre(reference))):
                got = session.run(["encoder_hidden_states"], {"reference_latents": x.numpy()})[0]
                self.assertLess(float(np.abs(got - want.numpy()).max()), TOLERANCE)
        self.assertGreater(float((timbre(reference) - silence_rows).abs().max()), 1e-3)

    def test_the_dit_does_not_see_the_order_of_condition_rows(self):
        # latentd puts the timbre rows after the text's, ACE-Step's encoder before: the same
        # velocity either way.
        session = self.session("dit")
        inputs = {k: v.numpy() for k, v in self.dit_inputs(2, 20, 6, seed=12).items()}
        shuffled = dict(inputs, encoder_hidden_states=inputs["encoder_hidden_states"][:, [3, 5, 0, 4, 1, 2]])
        a = session.run(["velocity"], inputs)[0]
        b = session.run(["velocity"], shuffled)[0]
        self.assertLess(float(np.abs(a - b).max()), TOLERANCE)

    def test_the_vae_graphs_follow_the_modules_at_new_lengths(self):
        decoder, encoder = self.session("decoder"), self.session("encoder")
        g = torch.Generator().manual_seed(2)
        for batch, frames in [(1, 19), (2, 4)]:
            latents = torch.randn(batch, 64, frames, generator=g)
            with torch.no_grad():
                want = ea.Decoder(self.parts.vae)(latents).numpy()
            got = decoder.run(["audio"], {"latents": latents.numpy()})[0]
            self.assertEqual(got.shape, (batch, 2, frames * 1920))
            self.assertLess(float(np.abs(got - want).max()), TOLERANCE)
            audio = 0.1 * torch.randn(batch, 2, frames * 1920, generator=g)
            with torch.no_grad():
                want = ea.Encoder(self.parts.vae)(audio).numpy()
            got = encoder.run(["latents"], {"audio": audio.numpy()})[0]
            self.assertEqual(got.shape, (batch, 64, frames))
            self.assertLess(float(np.abs(got - want).max()), TOLERANCE)

    def check_half_weights(self, half: str, onnx_type: int):
        """`--weights half`: the weights take about half the bytes, are stored as `onnx_type`,
        and the graphs compute what the rounded modules do."""
        out = self.out / half
        parts = ea.random_tiny(seed=3)
        report = ea.export(parts, self.tags, out, "test", 8, 3.0, 30, "pop piano", half)
        params = sum(p.numel() for p in parts.transformer.parameters())
        self.assertGreater(report["half"]["dit"][1], 0.9 * params)
        for graph in ("dit", "encoder"):
            f32, small = ((d / f"{graph}.onnx").stat().st_size for d in (self.out, out))
            self.assertLess(small, 0.7 * f32, graph)
        stored = {i.data_type for i in onnx.load(str(out / "dit.onnx")).graph.initializer
                  if i.name.endswith("_" + half)}
        self.assertEqual(stored, {onnx_type})
        self.assertIn(f"weights stored as {half}", (out / "bundle.toml").read_text())
        graphs = {f"{g}.onnx" for g in ("dit", "decoder", "encoder", "text", "timbre")}
        self.assertEqual({p.name for p in out.iterdir()}, graphs | {"bundle.toml", "tags.txt", "parity"})
        rounded = ea.Dit(parts.transformer, parts.condition_encoder, parts.audio_tokenizer,
                         parts.detokenizer).eval()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(out / "dit.onnx"), options)
        inputs = self.dit_inputs(3, 30, 4, seed=11)
        with torch.no_grad():
            want = rounded(*inputs.values()).numpy()
            unrounded = self.dit(*inputs.values()).numpy()
        got = session.run(["velocity"], {k: v.numpy() for k, v in inputs.items()})[0]
        self.assertLess(float(np.abs(got - want).max()), TOLERANCE)
        # The rounding is real (the graph is not the f32 one) and small.
        moved = float(np.abs(got - unrounded).max())
        self.assertGreater(moved, 10 * TOLERANCE)
        self.assertLess(moved, 0.05 * float(np.abs(unrounded).max()))
        return moved

    def test_fp16_weights_halve_the_weights_and_compute_what_the_rounded_modules_do(self):
        self.check_half_weights("fp16", onnx.TensorProto.FLOAT16)

    def test_bf16_weights_halve_the_weights_and_compute_what_the_rounded_modules_do(self):
        self.check_half_weights("bf16", onnx.TensorProto.BFLOAT16)


if __name__ == "__main__":
    unittest.main()
