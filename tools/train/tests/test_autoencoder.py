"""Tests of gm-tiny's autoencoder graphs: the encoder trains on torch.stft magnitudes but
exports a fixed DFT convolution; the two must agree, with and without the fine view
(`hires_bins`), on ONNX Runtime at a length other than the export's. And a checkpoint's
`sizes` rebuild the same shapes.

Needs torch, onnx and onnxruntime (scripts/test.sh installs them with the export tools);
without them the tests skip, unless LATENTD_REQUIRE_EXPORT_TOOLS=1, when they fail.
"""

import math
import os
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from needs import missing  # noqa: E402  (beside this file)

MISSING = missing("torch", "onnx", "onnxruntime")
if not MISSING:
    import numpy as np
    import onnxruntime as ort
    import torch

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
    from tools.train.gm_tiny import geometry as g
    from tools.train.gm_tiny.autoencoder import Autoencoder
    from tools.train.gm_tiny.smoke import export


@unittest.skipIf(MISSING, f"missing: {', '.join(MISSING)}")
class EncoderExportTest(unittest.TestCase):
    def check(self, sizes: dict):
        torch.manual_seed(3)
        ae = Autoencoder(**sizes).eval()
        traced = 0.1 * torch.randn(1, g.AUDIO_CHANNELS, 8 * g.SAMPLES_PER_LATENT)
        # Another length, and music-like content: a low note, a high one, a little noise.
        t = torch.arange(13 * g.SAMPLES_PER_LATENT) / g.SAMPLE_RATE
        tone = 0.3 * torch.sin(2 * torch.pi * 98.0 * t) + 0.1 * torch.sin(2 * torch.pi * 1318.5 * t)
        audio = (tone + 0.01 * torch.randn(2, len(t)))[None]
        with tempfile.TemporaryDirectory() as d, torch.no_grad():
            path = Path(d) / "encoder.onnx"
            export(ae.encoder, (traced,), path, ["audio"], ["latents"],
                   {"audio": {0: "B", 2: "S"}, "latents": {0: "B", 2: "T"}})
            got = ort.InferenceSession(str(path)).run(None, {"audio": audio.numpy()})[0]
            want = ae.encoder(audio).numpy()
        self.assertEqual(got.shape, (1, g.LATENT_CHANNELS, 13))
        err = float(np.abs(got - want).max())
        self.assertLess(err, 1e-3 * float(np.abs(want).max()), f"{sizes}: {err}")
        return ae

    def test_the_shipped_encoder_exports_what_it_trains(self):
        self.check({})

    def test_the_fine_view_exports_what_it_trains(self):
        ae = self.check({"enc_hires_bins": 160})
        self.assertEqual(ae.encoder.hires.bins, 160)
        self.assertEqual(ae.encoder.inp.in_channels, g.AUDIO_CHANNELS * (g.ENC_BINS + 160))
        again = Autoencoder(**ae.sizes)
        again.load_state_dict(ae.state_dict())  # raises on any shape that differs


@unittest.skipIf(MISSING, f"missing: {', '.join(MISSING)}")
class FrameRotationTest(unittest.TestCase):
    def test_a_held_partial_turns_evenly_across_latent_frames_at_any_offset(self):
        # A partial 0.37 bins above bin 10's centre goes on the grid at 3/8: the same turn
        # every STFT frame, across the 4-frame groups and the period's ends, near the loop's
        # start (negative offsets reach back past it) and far in.
        from tools.train.gm_tiny.autoencoder import PHASE_GRID, frame_rotation
        want = (math.pi / 2) * (10 + round(0.37 * PHASE_GRID) / PHASE_GRID)
        for offset in (-3, 0, 9001):
            deviation = torch.full((1, 1, 80, g.BINS), 0.37)
            phase = frame_rotation(deviation, torch.tensor([offset]), 80)[0, 0, :, 10]
            step = torch.diff(phase.double()) - want
            wrapped = torch.remainder(step + math.pi, 2 * math.pi) - math.pi
            self.assertLess(float(wrapped.abs().max()), 1e-4, offset)

    def test_the_turn_depends_on_the_place_in_the_period_only(self):
        from tools.train.gm_tiny.autoencoder import PHASE_GRID, frame_rotation
        deviation = torch.randn(2, 2, 24, g.BINS)
        a = frame_rotation(deviation, torch.tensor([5, -1]), 24)
        b = frame_rotation(deviation, torch.tensor([5 + 7 * PHASE_GRID, PHASE_GRID - 1]), 24)
        self.assertTrue(torch.equal(a, b))

    def test_the_deviation_learns_through_the_rounding_and_the_clamp(self):
        from tools.train.gm_tiny.autoencoder import MAX_DEVIATION, frame_rotation
        for start in (0.01, 1.7 * MAX_DEVIATION):
            deviation = torch.full((1, 1, 8, g.BINS), start, requires_grad=True)
            frame_rotation(deviation, torch.tensor([0]), 8).sum().backward()
            # Frame 0 of the period has not turned yet; every later one has a gradient.
            self.assertEqual(float(deviation.grad[:, :, 0].abs().max()), 0.0)
            self.assertGreater(float(deviation.grad[:, :, 1:].abs().min()), 0.0, start)
        # Past the clamp the turn is the clamp's.
        far = frame_rotation(torch.full((1, 1, 8, g.BINS), 1.7), torch.tensor([0]), 8)
        edge = frame_rotation(torch.full((1, 1, 8, g.BINS), MAX_DEVIATION), torch.tensor([0]), 8)
        self.assertTrue(torch.equal(far, edge))


class _StftPassThrough(torch.nn.Module if not MISSING else object):
    """An "autoencoder" whose latents are the source's own STFT: `comb=False` decodes it
    back as it is (a perfect decoder); `comb=True` repeats each group of 4 frames' first
    frame, the absolute phase of gm-tiny's shipped decoder on a held latent."""

    def __init__(self, comb: bool):
        super().__init__()
        from tools.train.gm_tiny.autoencoder import stft
        self.encoder = stft
        self.decoder = self._comb if comb else (lambda spec: spec)

    @staticmethod
    def _comb(spec):
        first = spec[:, :, ::g.FRAMES_PER_LATENT]
        return torch.repeat_interleave(first, g.FRAMES_PER_LATENT, dim=2)[:, :, : spec.shape[2]]


@unittest.skipIf(MISSING, f"missing: {', '.join(MISSING)}")
class HeldTonesTest(unittest.TestCase):
    def test_a_perfect_decoder_keeps_held_partials_and_a_frame_rate_comb_does_not(self):
        from tools.train.gm_tiny.eval_ae import held_tones
        clean = held_tones(_StftPassThrough(comb=False))
        comb = held_tones(_StftPassThrough(comb=True))
        self.assertGreater(clean["held_tone_purity"], 0.95)
        self.assertLess(clean["held_tone_cents"], 1.0)
        self.assertLess(comb["held_tone_purity"], 0.5)
        self.assertGreater(comb["held_tone_cents"], 10.0)


if __name__ == "__main__":
    unittest.main()
