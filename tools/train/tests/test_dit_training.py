"""Tests of the DiT's training examples and of the offline cover probe: `--cover-p` sets the
share of examples that carry their cover partner as context, and the probe's schedule is
the engine's (`engine/src/schedule.rs`), so its offline covers start where latentd's do.

Needs torch and onnxruntime (scripts/test.sh installs them with the export tools); without
them the tests skip, unless LATENTD_REQUIRE_EXPORT_TOOLS=1, when they fail.
"""

import os
import random
import sys
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from needs import missing  # noqa: E402  (beside this file)

MISSING = missing("torch", "onnxruntime")
if not MISSING:
    import numpy as np
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from tools.train.gm_tiny.probe_cover import schedule
    from tools.train.gm_tiny.train_dit import Examples

VOCAB = ["drums", "piano", "strings"]
CLIPS, FRAMES, CHANNELS = 6, 12, 4


def encoded():
    """Three compositions of two renderings each; clip i's latents are all i."""
    latents = torch.arange(CLIPS, dtype=torch.float32)[:, None, None].expand(
        CLIPS, FRAMES, CHANNELS).contiguous()
    meta = [{"group": i // 2, "tags": [VOCAB[i % 3]]} for i in range(CLIPS)]
    return {"latents": latents, "meta": meta, "tags": VOCAB}


@unittest.skipIf(MISSING, f"missing: {', '.join(MISSING)}")
class CoverShareTest(unittest.TestCase):
    def contexts(self, cover_p):
        examples = Examples([encoded()], VOCAB, cover_p)
        table = torch.nn.Embedding(len(VOCAB), 8)
        x0, ctx, _ = examples.batch(random.Random(3), 64, FRAMES // 2, 8, table)
        return x0, ctx

    def test_every_example_carries_its_partner_at_share_one(self):
        x0, ctx = self.contexts(1.0)
        clip = x0[:, 0, 0].long()
        partner = clip ^ 1  # clips 2g and 2g+1 are one composition
        self.assertTrue(torch.equal(ctx[:, :, :CHANNELS],
                                    partner[:, None, None].float().expand_as(x0)))
        self.assertTrue(torch.all(ctx[:, :, CHANNELS:] == 1.0))

    def test_no_example_carries_context_at_share_zero(self):
        _, ctx = self.contexts(0.0)
        self.assertTrue(torch.all(ctx == 0.0))

    def test_a_share_between_gives_both_kinds(self):
        _, ctx = self.contexts(0.5)
        with_context = int((ctx[:, 0, CHANNELS] == 1.0).sum())
        self.assertTrue(10 < with_context < 54, with_context)


@unittest.skipIf(MISSING, f"missing: {', '.join(MISSING)}")
class CoverScheduleTest(unittest.TestCase):
    def test_the_probe_starts_where_the_engine_does(self):
        # engine/src/schedule.rs: steps 8, denoise 0.5 -> t_start 0.5, warped by 3 -> 0.75;
        # denoise 0.3 -> full = floor(26.67) = 26, t_start = 8 / 26; denoise 1 -> 1.
        self.assertAlmostEqual(schedule(8, 0.5)[0], 0.75)
        t = 8 / 26
        self.assertAlmostEqual(schedule(8, 0.3)[0], 3 * t / (1 + 2 * t))
        self.assertAlmostEqual(schedule(8, 1.0)[0], 1.0)
        points = schedule(8, 0.3)
        self.assertEqual(len(points), 9)
        self.assertEqual(points[-1], 0.0)
        self.assertTrue(np.all(np.diff(points) < 0))


if __name__ == "__main__":
    unittest.main()
