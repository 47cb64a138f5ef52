"""Tests of `from_bundle`: the shipped gm-tiny bundle reads back into torch modules that
compute what its graphs compute, so training can go on from it; a graph whose weights do not
map onto the module is refused, naming the parameter.

Needs torch, onnx and onnxruntime (scripts/test.sh installs them with the export tools);
without them the tests skip, unless LATENTD_REQUIRE_EXPORT_TOOLS=1, when they fail.
"""

import os
import shutil
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from needs import missing  # noqa: E402  (beside this file)

MISSING = missing("torch", "onnx", "onnxruntime")
if not MISSING:
    import onnx
    import torch

    ROOT = Path(__file__).resolve().parents[3]
    sys.path.insert(0, str(ROOT))
    from tools.train.gm_tiny import from_bundle
    from tools.train.gm_tiny import geometry as g
    from tools.train.gm_tiny.autoencoder import Autoencoder
    from tools.train.gm_tiny.from_bundle import onnx_weights
    from tools.train.gm_tiny.smoke import agree, export_autoencoder

    BUNDLE = ROOT / "models" / "gm-tiny"


@unittest.skipIf(MISSING, f"missing: {', '.join(MISSING)}")
class FromBundleTest(unittest.TestCase):
    def test_the_shipped_bundle_reads_back_and_agrees_with_its_graphs(self):
        torch.set_num_threads(1)
        ae, errs = from_bundle.read_autoencoder(BUNDLE)
        vocab = (BUNDLE / "tags.txt").read_text().split()
        dit, text, arch, dit_errs = from_bundle.read_dit(BUNDLE, vocab)
        errs.update(dit_errs)
        self.assertEqual(set(errs), {"encoder", "decoder", "dit", "text"})
        for graph, err in errs.items():
            self.assertLessEqual(err, from_bundle.AGREEMENT, graph)
        self.assertEqual(arch, {"rope": False})  # gm-tiny's DiT has no positions
        # The decoder shipped since 2026-12-08 (docs/models.md): phase read from its
        # magnitudes' partials, turned by frame position, a latent-rate magnitude head.
        self.assertEqual(ae.sizes, {"dec_position_phase": True, "dec_deviations": "partials",
                                    "dec_latent_head": True})
        # Trained weights, not a fresh module's: the decoder's head differs from a new one.
        fresh = Autoencoder(**ae.sizes).decoder.head.weight.detach()
        self.assertGreater(float((ae.decoder.head.weight.detach() - fresh).abs().mean()), 1e-3)
        words, steps = from_bundle.bundle_words(BUNDLE)
        self.assertIn("steps", words)
        self.assertGreater(steps, 0)

    def test_a_graph_missing_a_weight_is_refused_naming_it(self):
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "decoder.onnx"
            shutil.copyfile(BUNDLE / "decoder.onnx", path)
            model = onnx.load(str(path))
            renamed = next(i for i in model.graph.initializer if i.name.startswith("head.bias"))
            for node in model.graph.node:
                node.input[:] = ["stray" if x == renamed.name else x for x in node.input]
            renamed.name = "stray"
            onnx.save(model, str(path))
            sizes = from_bundle.read_autoencoder(BUNDLE)[0].sizes  # the shipped decoder's form
            with self.assertRaises(from_bundle.BundleWeightsError) as caught:
                from_bundle.load_graph_into(Autoencoder(**sizes).decoder, path)
        self.assertIn("head.bias", str(caught.exception))

    def test_a_weight_of_another_shape_is_refused_naming_it(self):
        wider = Autoencoder(dec_dim=128).decoder
        with self.assertRaises(from_bundle.BundleWeightsError) as caught:
            from_bundle.load_graph_into(wider, BUNDLE / "decoder.onnx")
        self.assertIn("inp.weight", str(caught.exception))

    def test_a_position_phase_or_wider_decoder_reads_back_as_it_was_made(self):
        for sizes in ({"dec_position_phase": True},
                      {"dec_position_phase": True, "dec_deviations": "peaks", "dec_fine_dim": 96},
                      {"dec_position_phase": True, "dec_deviations": "peaks",
                       "dec_latent_head": True},
                      {"dec_position_phase": True, "dec_deviations": "partials",
                       "dec_latent_head": True}):
            with self.subTest(sizes=sizes):
                self.check_reads_back(sizes)

    def check_reads_back(self, sizes: dict):
        torch.manual_seed(5)
        ae = Autoencoder(**sizes).eval()
        with torch.no_grad():  # trained weights: no two tensors alike (see load_graph_into)
            for p in ae.parameters():
                p.add_(0.01 * torch.randn_like(p))
        audio = 0.1 * torch.randn(1, g.AUDIO_CHANNELS, 6 * g.SAMPLES_PER_LATENT)
        with tempfile.TemporaryDirectory() as d, torch.no_grad():
            export_autoencoder(Path(d), ae, audio, ae.encoder(audio))
            # The export's own check (onnx.reference, not ORT) must run the graph too.
            z, offset = torch.randn(1, g.LATENT_CHANNELS, 7), torch.tensor([-3])
            agree(Path(d) / "decoder.onnx", {"latents": z, "frame_offset": offset},
                  ae.decoder(z, offset))
            for name in ("encoder", "decoder"):
                model = onnx.load(str(Path(d) / f"{name}.onnx"))
                onnx_weights.store_half(model, "fp16")
                onnx.save(model, str(Path(d) / f"{name}.onnx"))
            back, errs = from_bundle.read_autoencoder(Path(d))
        self.assertEqual(back.sizes, sizes)
        for graph, err in errs.items():
            self.assertLessEqual(err, from_bundle.AGREEMENT, graph)
        self.assertTrue(back.decoder.position_phase)

    def test_rounded_weights_are_stored_as_fp16_exactly_and_an_overflow_rounds_none(self):
        torch.manual_seed(2)
        layer = torch.nn.Linear(300, 4)
        before = layer.weight.detach().clone()
        self.assertEqual(onnx_weights.round_weights([layer], "fp16"), 2)
        # Moved by at most fp16's half step (2^-11 relative), and now exact in fp16.
        self.assertLessEqual(float(((layer.weight - before).abs() / before.abs()).max()), 2 ** -11)
        weight = layer.weight.detach().numpy()
        self.assertTrue((weight.astype("float16").astype("float32") == weight).all())
        layer = torch.nn.Linear(300, 4)  # not yet rounded
        huge = torch.nn.Linear(300, 4)
        with torch.no_grad():
            huge.bias[1] = 1e6
        kept = [t.detach().clone() for t in (layer.weight, huge.weight)]
        with self.assertRaises(ValueError) as caught:
            onnx_weights.round_weights([layer, huge], "fp16")
        self.assertIn("bias", str(caught.exception))
        self.assertTrue(torch.equal(layer.weight, kept[0]) and torch.equal(huge.weight, kept[1]))

    def test_a_new_decoder_after_a_bundle_is_named_by_its_own_shape(self):
        from tools.train.gm_tiny.export import ae_stages
        bundle = {"bundle": "gm-tiny", "words": "4000 steps"}
        fresh = {"steps": 1500, "decoder_only": True, "fresh_decoder": True,
                 "phase_weight": 0.0, "position_phase": True, "deviations": "peaks"}
        sizes = {"dec_position_phase": True, "dec_deviations": "peaks", "dec_latent_head": True}
        words = ae_stages({"step": 1500, "stages": [bundle, fresh], "sizes": sizes})
        self.assertTrue(words.startswith("4000 steps then 1500 steps (a new decoder"), words)
        self.assertIn("latent-rate magnitude head", words)
        # The bundle's own words describe its decoder: nothing is added to them.
        only_bundle = {"step": 0, "stages": [bundle], "sizes": {"dec_fine_dim": 96}}
        self.assertEqual(ae_stages(only_bundle), "4000 steps")

    def test_a_bundle_that_copies_an_autoencoder_carries_its_provenance(self):
        from tools.train.gm_tiny.export import COPIED, carried_autoencoder_provenance
        facts = carried_autoencoder_provenance(BUNDLE)
        self.assertIn("heldout log-mel error", facts["line"])
        self.assertEqual(facts["parameters"], {"encoder": 2605120, "decoder": 2313732})
        self.assertEqual(set(facts["fp16"]), {"encoder", "decoder"})
        self.assertEqual(set(facts["errors"]), {"encoder", "decoder"})
        with tempfile.TemporaryDirectory() as d:
            # A copy of a copy says where it came from once, not once per copy.
            copied = (BUNDLE / "PROVENANCE.md").read_text().replace(
                facts["line"], f"{facts['line']} ({COPIED} from `elsewhere`; ...)")
            (Path(d) / "PROVENANCE.md").write_text(copied)
            self.assertEqual(carried_autoencoder_provenance(Path(d))["line"], facts["line"])
            (Path(d) / "PROVENANCE.md").unlink()
            self.assertEqual(carried_autoencoder_provenance(Path(d)),
                             {"line": None, "parameters": {}, "fp16": {}, "errors": {}})

    def test_scopes_name_the_module(self):
        self.assertEqual(from_bundle.linear_scope("/coarse/coarse.0/up/MatMul"), "coarse.0.up")
        self.assertEqual(from_bundle.linear_scope("/blocks.0/mlp/mlp.0/MatMul"), "blocks.0.mlp.0")
        self.assertEqual(from_bundle.linear_scope("/head/MatMul"), "head")


if __name__ == "__main__":
    unittest.main()
