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
        # A partial 0.37 bins above bin 10's centre: the same phase step every STFT frame,
        # across the 4-frame groups of each latent frame, near the loop's start and far in.
        from tools.train.gm_tiny.autoencoder import frame_rotation
        want = (math.pi / 2) * (10 + 0.37)
        for offset in (-3, 0, 9000):
            deviation = torch.full((1, 1, 40, g.BINS), 0.37)
            phase = frame_rotation(deviation, torch.tensor([offset]), 40)[0, 0, :, 10]
            step = torch.diff(phase.double()) - want
            wrapped = torch.remainder(step + math.pi, 2 * math.pi) - math.pi
            self.assertLess(float(wrapped.abs().max()), 2e-3, offset)


if __name__ == "__main__":
    unittest.main()
