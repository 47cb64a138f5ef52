"""Tests of tools/measure/sound.py's beat strength: a real rendered drum groove scores high,
the same hits at random times score low (same hits, same count: only their regularity
differs). Real rendering with tinysoundfont (run ./scripts/setup.sh first); no torch.
"""

import os
import random
import sys
import unittest
from dataclasses import replace

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "..", "measure"))

from data.composer import DRUM_CHANNEL, compose  # noqa: E402
from data.render import SAMPLE_RATE  # noqa: E402
from sound import beat_strength  # noqa: E402
from test_data import renderer  # noqa: E402

SECONDS = 10.0


class BeatStrengthTest(unittest.TestCase):
    def test_groove_scores_high_and_the_same_hits_at_random_times_low(self):
        rnd = random.Random(7)
        for seed in (400, 401, 402):
            c = compose(seed, SECONDS, drums=True, style="house")
            drums = [n for n in c.notes if n.chan == DRUM_CHANNEL]
            groove = renderer().render(drums, {}, "electronic", SECONDS)
            shuffled = [replace(n, start=rnd.uniform(0, SECONDS - 0.5)) for n in drums]
            scattered = renderer().render(shuffled, {}, "electronic", SECONDS)
            self.assertGreater(beat_strength(groove, SAMPLE_RATE), 0.5, f"seed {seed}")
            self.assertLess(beat_strength(scattered, SAMPLE_RATE), 0.3, f"seed {seed}")

    def test_steady_noise_has_no_beat(self):
        noise = np.random.default_rng(1).standard_normal((int(SECONDS * SAMPLE_RATE), 2))
        self.assertLess(beat_strength(noise.astype(np.float32), SAMPLE_RATE), 0.3)


if __name__ == "__main__":
    unittest.main()
