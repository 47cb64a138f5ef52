"""Tests of the training-data generator: composer determinism, rendering, tags, covers, seeds.

Real rendering with tinysoundfont and the Debian MuseScore General Lite soundfont (run
./scripts/setup.sh first); no torch. Run: python3 -m unittest discover -s tools/train/tests
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest
import wave

import numpy as np

TRAIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, TRAIN_DIR)

from data import vocab  # noqa: E402
from data.composer import DRUM_CHANNEL, STYLES, compose, orchestrate  # noqa: E402
from data.dataset import (  # noqa: E402
    DEFAULT_SOUNDFONTS, HELDOUT_BASE, events_json, group_seed, make_dataset, plan_clip, score_tags,
    soundfont_licence)
from data.features import onset_count  # noqa: E402
from data.render import SAMPLE_RATE, Renderer  # noqa: E402

SF = DEFAULT_SOUNDFONTS[0]
_renderer = None


def read(path):
    with open(path) as f:
        return f.read()


def renderer():
    global _renderer
    if _renderer is None:
        _renderer = Renderer(SF)
    return _renderer


class ComposerTest(unittest.TestCase):
    def test_same_seed_same_events_and_tags(self):
        for seed in range(40):
            a = plan_clip(seed, 3, 8.0, False, DEFAULT_SOUNDFONTS)
            b = plan_clip(seed, 3, 8.0, False, DEFAULT_SOUNDFONTS)
            self.assertEqual(events_json(a[2]), events_json(b[2]))
            self.assertEqual(a[3], b[3])
            self.assertEqual(a[4], b[4])
            self.assertEqual(score_tags(a[2], a[3], a[6]), score_tags(b[2], b[3], b[6]))

    def test_other_seeds_other_music(self):
        texts = {events_json(compose(s)) for s in range(30)}
        self.assertEqual(len(texts), 30)
        self.assertEqual({compose(s).style for s in range(200)}, set(STYLES))

    def test_notes_in_scale_and_range(self):
        from data.composer import SCALES
        for s in range(50):
            c = compose(s)
            self.assertTrue(c.notes)
            scale = {(c.key + i) % 12 for i in SCALES[c.mode]}
            for n in c.notes:
                self.assertTrue(0 <= n.start < 8.0 and n.dur > 0 and 1 <= n.vel <= 127)
                if n.chan == 0:
                    self.assertIn(n.key % 12, scale, f"melody note outside the scale (seed {s})")

    def test_drum_events_only_with_drums(self):
        for s in range(150):
            c = compose(s)
            drums = [n for n in c.notes if n.chan == DRUM_CHANNEL]
            tags = score_tags(c, orchestrate(c, s), False)
            if c.has_drums:
                self.assertTrue(drums, f"seed {s}: drums clip without channel-10 events")
                self.assertIn("drums", tags)
                self.assertNotIn("nodrums", tags)
            else:
                self.assertFalse(drums, f"seed {s}: nodrums clip with channel-10 events")
                self.assertIn("nodrums", tags)
                self.assertNotIn("drums", tags)

    def test_sparse_without_drums_thins_only_the_clips_without_drums(self):
        """A clip with drums is the same under every arrangement; one without has held chords, no
        arpeggio, at most two bass notes a bar (`sparse`) or one a chord (`held`), and under half
        the note onsets of its style's own arrangement (`held`: fewer still than `sparse`)."""
        from data.composer import PARTS
        onsets = {"style": 0, "sparse": 0, "held": 0}  # distinct note starts, clips without drums
        for s in range(120):
            made = {w: compose(s, without_drums=w) for w in onsets}
            dense = made["style"]
            for w, clip in made.items():
                self.assertEqual((dense.style, dense.tempo, dense.key, dense.mode, dense.has_drums),
                                 (clip.style, clip.tempo, clip.key, clip.mode, clip.has_drums), w)
                if dense.has_drums:
                    self.assertEqual(events_json(dense), events_json(clip), f"seed {s} {w}")
                    continue
                onsets[w] += len({n.start for n in clip.notes})
                if w == "style":
                    continue
                bar = 4 * 60.0 / clip.tempo
                bars = int(np.ceil(clip.seconds / bar))
                by_part = {p: [n for n in clip.notes if n.chan == c] for p, c in PARTS.items()}
                chords = {n.start for n in by_part["chords"]}
                self.assertEqual(by_part["arp"], [], f"seed {s} {w}")
                self.assertLessEqual(len(chords), 2 * bars, f"seed {s} {w}")
                self.assertLessEqual(len({n.start for n in by_part["bass"]}), 2 * bars, f"seed {s} {w}")
                if w == "held":
                    self.assertLessEqual({n.start for n in by_part["bass"]}, chords, f"seed {s}")
                    beat = 60.0 / clip.tempo
                    inner = [n for n in by_part["melody"] if n.start + n.dur < clip.seconds - 1e-3]
                    self.assertTrue(all(n.dur >= 1.9 * beat for n in inner), f"seed {s}")
        # Measured: 928 distinct note starts in the style's arrangements, 349 sparse, 250 held.
        self.assertLess(onsets["sparse"], 0.5 * onsets["style"], onsets)
        self.assertLess(onsets["held"], 0.8 * onsets["sparse"], onsets)

    def test_an_unknown_arrangement_is_refused(self):
        with self.assertRaisesRegex(ValueError, "without_drums 'none'"):
            compose(1, without_drums="none")


class TagsTest(unittest.TestCase):
    def test_every_tag_in_vocabulary(self):
        seen = set()
        for i in range(300):
            g = plan_clip(i, 1, 8.0, False, DEFAULT_SOUNDFONTS)
            tags = score_tags(g[2], g[3], g[6])
            self.assertTrue(set(tags) <= set(vocab.TAGS), tags)
            self.assertEqual(len([t for t in tags if t in vocab.STYLES]), 1)
            self.assertEqual(len([t for t in tags if t in vocab.TEMPO_TAGS]), 1)
            seen |= set(tags)
        # The score-decided tags all occur in a few hundred clips (bright/dark come from audio).
        self.assertEqual(set(vocab.TAGS) - seen, {"bright", "dark"})

    def test_vocabulary_tokens(self):
        for t in vocab.TAGS:
            self.assertRegex(t, r"^[a-z]+$")


class CoverTest(unittest.TestCase):
    def test_cover_pair_shares_events_not_programs(self):
        for g in range(30):
            a = plan_clip(2 * g, 1, 8.0, False, DEFAULT_SOUNDFONTS)
            b = plan_clip(2 * g + 1, 1, 8.0, False, DEFAULT_SOUNDFONTS)
            self.assertEqual(a[0], b[0])
            self.assertEqual(events_json(a[2]), events_json(b[2]))
            self.assertEqual(set(a[3].programs), set(b[3].programs))
            self.assertNotEqual(a[3].programs, b[3].programs, f"group {g}: cover with the same programs")
            if not a[6]:  # solo covers change the one instrument; others change every part
                for ch in a[3].programs:
                    self.assertNotEqual(a[3].programs[ch], b[3].programs[ch], f"group {g} channel {ch}")


class SeedTest(unittest.TestCase):
    def test_heldout_seed_space_disjoint(self):
        train = {group_seed(s, g, False) for s in range(0, 65536, 4099) for g in range(0, 1 << 24, 99991)}
        held = {group_seed(s, g, True) for s in range(0, 65536, 4099) for g in range(0, 1 << 24, 99991)}
        self.assertFalse(train & held)
        self.assertTrue(max(train) < HELDOUT_BASE <= min(held))
        self.assertEqual(group_seed(0, 0, True), HELDOUT_BASE)
        with self.assertRaises(ValueError):
            group_seed(1 << 16, 0, False)  # would reach into the heldout space
        with self.assertRaises(ValueError):
            group_seed(0, 1 << 24, False)  # would reach the next base seed
        a = plan_clip(0, 1, 8.0, False, DEFAULT_SOUNDFONTS)
        b = plan_clip(0, 1, 8.0, True, DEFAULT_SOUNDFONTS)
        self.assertNotEqual(events_json(a[2]), events_json(b[2]))


class RenderTest(unittest.TestCase):
    def test_render_length_rate_channels_not_silent(self):
        with tempfile.TemporaryDirectory() as d:
            summary = make_dataset(d, 4, 3.0, 5, 1, False)
            recs = [json.loads(line) for line in read(os.path.join(d, "clips.jsonl")).splitlines()]
            self.assertEqual(len(recs), 4)
            self.assertEqual(recs, summary["records"])
            for r in recs:
                with wave.open(os.path.join(d, r["file"])) as w:
                    self.assertEqual((w.getnchannels(), w.getframerate(), w.getsampwidth()), (2, 48000, 2))
                    self.assertEqual(w.getnframes(), 3 * 48000)
                    pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
                rms = np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) / 32768
                self.assertGreater(rms, 10 ** (-30 / 20), r["file"])  # -20 dBFS +-3 dB target
                self.assertGreater(np.abs(pcm[:, 0].astype(int) - pcm[:, 1]).max(), 0, "stereo, not dual mono")
                self.assertTrue(set(r["tags"]) <= set(vocab.TAGS))
            self.assertEqual(read(os.path.join(d, "tags.txt")).split("\n")[:-1], vocab.TAGS)
            self.assertIn("musescore-general-soundfont-small", read(os.path.join(d, "PROVENANCE.md")))
            # Brightness: the lowest centroid clip is dark, the highest bright.
            by_c = sorted(recs, key=lambda r: r["centroid_hz"])
            self.assertIn("dark", by_c[0]["tags"])
            self.assertIn("bright", by_c[-1]["tags"])

    def test_event_timing_is_sample_accurate(self):
        from data.composer import Note
        onset = 12345
        audio = renderer().render([Note(onset / SAMPLE_RATE, 0.5, 0, 72, 110)], {0: 0}, None, 1.0)
        nz = np.flatnonzero(np.abs(audio).max(axis=1) > 1e-6)
        self.assertTrue(len(nz))
        self.assertGreaterEqual(nz[0], onset)
        self.assertLess(nz[0], onset + 64)

    def test_drum_clips_have_more_onsets_at_the_same_tempo(self):
        r = renderer()
        with_drums = without = 0
        for style in ("house", "techno"):
            for s in range(5):
                a = compose(200 + s, 8.0, drums=True, style=style)
                b = compose(200 + s, 8.0, drums=False, style=style)
                self.assertEqual(a.tempo, b.tempo)
                self.assertEqual([n for n in a.notes if n.chan != DRUM_CHANNEL], b.notes)
                o = orchestrate(a, 1)
                x = onset_count(r.render(a.notes, o.programs, o.kit, 8.0), SAMPLE_RATE)
                y = onset_count(r.render(b.notes, o.programs, None, 8.0), SAMPLE_RATE)
                self.assertGreaterEqual(x, y, f"{style} seed {200 + s}")
                with_drums += x
                without += y
        self.assertGreater(with_drums, 1.3 * without)

    def test_drum_kit_sounds_percussive(self):
        # Drums alone: about one detected onset per distinct hit time (so the kit, not a
        # melodic program, is playing channel 10, and every hit sounds).
        r = renderer()
        for s in range(4):
            c = compose(300 + s, 8.0, drums=True, style="house")
            drums = [n for n in c.notes if n.chan == DRUM_CHANNEL]
            hits = len({n.start for n in drums})
            count = onset_count(r.render(drums, {}, "electronic", 8.0), SAMPLE_RATE)
            self.assertGreater(count, 0.7 * hits)
            self.assertLess(count, 1.5 * hits)


class CliTest(unittest.TestCase):
    def test_bad_arguments_exit_2(self):
        script = os.path.join(TRAIN_DIR, "make_dataset.py")
        with tempfile.TemporaryDirectory() as d:
            for args in (["--clips", "0"], ["--seed", "70000", "--clips", "1"],
                         ["--clips", "1", "--soundfont", "/usr/share/sounds/sf2/TimGM6mb.sf2"]):
                p = subprocess.run([sys.executable, script, "--out", d] + args, capture_output=True, text=True)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)


class SoundfontTest(unittest.TestCase):
    def test_a_copy_is_accepted_by_content_and_an_altered_one_refused(self):
        with tempfile.TemporaryDirectory() as d:
            copy = os.path.join(d, "carried.sf3")
            with open(SF, "rb") as f:
                body = bytearray(f.read())
            with open(copy, "wb") as f:
                f.write(body)
            self.assertEqual(soundfont_licence(copy), ("musescore-general-soundfont-small", "MIT"))
            make_dataset(os.path.join(d, "set"), 1, 1.0, 1, 1, False, [copy])
            provenance = read(os.path.join(d, "set", "PROVENANCE.md"))
            self.assertIn("`carried.sf3`", provenance)
            self.assertIn("musescore-general-soundfont-small", provenance)
            body[len(body) // 2] ^= 1
            with open(copy, "wb") as f:
                f.write(body)
            with self.assertRaisesRegex(ValueError, "not one of the licence-checked"):
                soundfont_licence(copy)
            with self.assertRaisesRegex(ValueError, "missing"):
                soundfont_licence(os.path.join(d, "absent.sf2"))


if __name__ == "__main__":
    unittest.main()
