"""Tests of tools/measure/sound.py.

Beat strength: a real rendered drum groove scores high, the same hits at random times score
low (same hits, same count: only their regularity differs). Alignment: a loop recorded from
a known playhead lines up with its source exactly, and a rotation of music whose waveform
has lost its phase (what a decoder that predicts its own phase plays) is still found.
Real rendering with tinysoundfont (run ./scripts/setup.sh first); no torch.
"""

import os
import random
import sys
import tempfile
import unittest
from dataclasses import replace

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "..", "measure"))

from data.composer import DRUM_CHANNEL, compose, orchestrate  # noqa: E402
from data.dataset import write_wav  # noqa: E402
from data.render import SAMPLE_RATE  # noqa: E402
from sound import STOP_FADE_S, alignment_lag, analyze, beat_strength  # noqa: E402
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


def music(seed: int) -> np.ndarray:
    """A rendered 10 s clip with drums, bass, chords and a melody."""
    c = compose(seed, SECONDS, drums=True, style="pop")
    o = orchestrate(c, seed)
    return renderer().render(c.notes, o.programs, o.kit, SECONDS)


def scramble_phase(x: np.ndarray, seed: int) -> np.ndarray:
    """`x` with every STFT bin's phase replaced by a random one (n_fft 256, hop 64): the
    same magnitudes over 5 ms frames, another waveform. Circular, like a loop."""
    rng = np.random.default_rng(seed)
    n_fft, hop = 256, 64
    win = np.hanning(n_fft + 1)[:-1]
    n = len(x)
    out = np.zeros_like(x, dtype=np.float64)
    norm = np.zeros(n)
    for start in range(0, n, hop):
        idx = (start + np.arange(n_fft)) % n
        spec = np.fft.rfft(x[idx] * win[:, None], axis=0)
        spec = np.abs(spec) * np.exp(2j * np.pi * rng.random(spec.shape))
        out[idx] += np.fft.irfft(spec, n=n_fft, axis=0) * win[:, None]
        norm[idx] += win ** 2
    return (out / norm[:, None]).astype(np.float32)


class AlignmentTest(unittest.TestCase):
    def test_a_rotation_of_phase_scrambled_music_is_found_within_5_ms(self):
        for seed, shift in ((500, 23_497), (501, 301_123)):
            source = music(seed)
            n = len(source)
            loop = np.roll(scramble_phase(source, seed), shift, axis=0)
            # The rotation that undoes `shift`, and how far the estimate is from it.
            off = (alignment_lag(loop, source, SAMPLE_RATE) + shift + n // 2) % n - n // 2
            self.assertLessEqual(abs(off), 0.005 * SAMPLE_RATE, f"seed {seed}: {off} frames off")

    def test_a_recording_from_a_known_playhead_lines_up_exactly(self):
        source = music(502)
        n = len(source)
        # 2.4 loops played from position 0, then the stop fade's length of silence.
        played = np.concatenate([np.tile(source, (3, 1))[: int(2.4 * n)],
                                 np.zeros((int(STOP_FADE_S * SAMPLE_RATE), 2), np.float32)])
        with tempfile.TemporaryDirectory() as tmp:
            rec, src = os.path.join(tmp, "rec.wav"), os.path.join(tmp, "src.wav")
            write_wav(rec, played)
            write_wav(src, source)
            exact = analyze(rec, src, SECONDS, playhead_start=0)
            wrong = analyze(rec, src, SECONDS, playhead_start=2400)  # 50 ms late
        self.assertEqual(exact["alignment"], "playhead")
        self.assertLess(exact["log_mel_error_db"], 1e-6)
        self.assertGreater(exact["chroma_correlation"], 0.999)
        self.assertLessEqual(abs(exact["alignment_estimate_off_ms"]), 5.0)
        self.assertGreater(wrong["log_mel_error_db"], 1.0)


if __name__ == "__main__":
    unittest.main()
