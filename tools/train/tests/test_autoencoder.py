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
    from tools.train.gm_tiny.autoencoder import DEVIATION_SOURCES, Autoencoder, position_phase_from
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
            phase = frame_rotation(deviation, torch.tensor([offset]), 80).angle[0, 0, :, 10]
            step = torch.diff(phase.double()) - want
            wrapped = torch.remainder(step + math.pi, 2 * math.pi) - math.pi
            self.assertLess(float(wrapped.abs().max()), 1e-4, offset)

    def test_the_turn_depends_on_the_place_in_the_period_only(self):
        from tools.train.gm_tiny.autoencoder import PHASE_GRID, frame_rotation
        deviation = torch.randn(2, 2, 24, g.BINS)
        a = frame_rotation(deviation, torch.tensor([5, -1]), 24).angle
        b = frame_rotation(deviation, torch.tensor([5 + 7 * PHASE_GRID, PHASE_GRID - 1]), 24).angle
        self.assertTrue(torch.equal(a, b))

    def test_training_plays_the_rounded_turn_and_its_gradient_finds_the_right_grid_point(self):
        from tools.train.gm_tiny.autoencoder import MAX_DEVIATION, PHASE_GRID, frame_rotation
        offset = torch.tensor([2])
        # The phasor training decodes with is the rounded turn's, exactly as played.
        deviation = 0.6 * torch.randn(1, 2, 16, g.BINS)
        turn = frame_rotation(deviation, offset, 16, soft=True)
        self.assertTrue(torch.equal(turn.angle, frame_rotation(deviation, offset, 16).angle))
        self.assertLess(float((turn.phasor - torch.stack([turn.angle.cos(), turn.angle.sin()],
                                                         -1)).abs().max()), 1e-5)
        # A deviation that rounds to the grid point next to a partial's, from either side or
        # from past the clamp, is moved toward it by the gradient of matching its phasors
        # over the period's first 12 frames (over a whole period every wrong grid point's
        # phasors are orthogonal to the partial's, 1 step off or 8).
        offset = torch.tensor([0])
        for partial, start in ((3, 2.2), (3, 3.8), (-5, -6.3), (7, 1.7 * MAX_DEVIATION * PHASE_GRID)):
            target = frame_rotation(torch.full((1, 1, 12, g.BINS), partial / PHASE_GRID),
                                    offset, 12).angle
            deviation = torch.full((1, 1, 12, g.BINS), start / PHASE_GRID, requires_grad=True)
            phasor = frame_rotation(deviation, offset, 12, soft=True).phasor
            loss = -(phasor[..., 0] * target.cos() + phasor[..., 1] * target.sin()).sum()
            loss.backward()
            toward = -deviation.grad.sum(dim=2) * (partial - start)
            self.assertGreater(float(toward.min()), 0.0, start)


class DeviationLossTest(unittest.TestCase):
    def test_a_tones_own_deviations_score_best(self):
        from tools.train.gm_tiny.autoencoder import stft
        from tools.train.gm_tiny.train_ae import deviation_loss
        # A tone 0.375 bins above bin 20's centre: bin 19 wants +1 (clamped from 1.375),
        # bin 20 +0.375, bin 21 -0.625, bin 22 -1 (clamped from -1.625).
        t = torch.arange(g.SAMPLE_RATE) / g.SAMPLE_RATE
        tone = torch.sin(2 * math.pi * 20.375 * 25.0 * t + 0.3)[None, None].repeat(1, 2, 1)
        target = stft(tone)
        frames = target.shape[2]

        def loss(at_20):
            deviation = torch.zeros(1, 2, frames, g.BINS)
            for k in range(19, 23):
                deviation[..., k] = at_20 + 20 - k
            return float(deviation_loss(deviation, target))

        right = loss(0.375)
        for wrong in (0.0, 0.25, 0.5, -0.375):
            self.assertLess(right, loss(wrong), wrong)


@unittest.skipIf(MISSING, f"missing: {', '.join(MISSING)}")
class PeakDeviationsTest(unittest.TestCase):
    def test_partials_between_bins_are_placed_where_they_are(self):
        from tools.train.gm_tiny.autoencoder import peak_deviations, stft
        # Two partials, 0.375 above bin 20's centre and 0.3 below bin 31's, the second 12 dB
        # quieter: each bin within 1 of a partial takes that partial's place less its own
        # index. A flat spectrum has no peaks: every deviation is 0.
        t = torch.arange(g.SAMPLE_RATE) / g.SAMPLE_RATE
        tone = (torch.sin(2 * math.pi * 20.375 * 25.0 * t + 0.3)
                + 0.25 * torch.sin(2 * math.pi * 30.7 * 25.0 * t))[None, None].repeat(1, 2, 1)
        logmag = torch.log(torch.linalg.vector_norm(stft(tone), dim=-1) + 1e-7)
        deviation = peak_deviations(logmag)[0, :, 2:-2]  # away from the clip's ends
        for partial in (20.375, 30.7):
            for k in range(math.ceil(partial - 1), math.floor(partial + 1) + 1):
                got = deviation[..., k]
                self.assertLess(float((got - (partial - k)).abs().max()), 0.06, (partial, k))
        flat = peak_deviations(torch.zeros(1, 1, 2 * g.FRAMES_PER_LATENT, g.BINS))
        self.assertEqual(tuple(flat.shape), (1, 1, 2, g.BINS))
        self.assertEqual(float(flat.abs().max()), 0.0)

    def test_the_decoder_reads_its_deviations_from_its_own_magnitudes(self):
        from tools.train.gm_tiny.autoencoder import frame_rotation, peak_deviations
        torch.manual_seed(6)
        decoder = Autoencoder(dec_position_phase=True, dec_deviations="peaks").decoder.eval()
        self.assertFalse(hasattr(decoder, "deviation_head"))
        z, offset = torch.randn(1, g.LATENT_CHANNELS, 5), torch.tensor([9])
        with torch.no_grad():
            logmag, _, turn = decoder.polar(z, offset)
        deviation = torch.repeat_interleave(peak_deviations(logmag), g.FRAMES_PER_LATENT, dim=2)
        want = frame_rotation(deviation, offset, logmag.shape[2]).angle
        self.assertTrue(torch.equal(turn.angle, want))

    def test_decoding_plays_the_turns_training_computes(self):
        # The eval-mode decode (latentd's graph, `played_stft`) reduces the turns its own
        # way; it must be the STFT the training form (`polar`) makes, at any loop position,
        # negative ones included, and for deviations on, between and past the grid points
        # (within float rounding: its angles run to about 200 radians, 1e-4 is -80 dB).
        from tools.train.gm_tiny.autoencoder import to_stft
        for deviations in ("head", "peaks", "partials"):
            torch.manual_seed(7)
            decoder = Autoencoder(dec_position_phase=True, dec_deviations=deviations).decoder.eval()
            if deviations == "head":  # spread the deviations over the whole +-1 bin and past it
                torch.nn.init.normal_(decoder.deviation_head.weight, std=0.5)
            z, offset = torch.randn(2, g.LATENT_CHANNELS, 9), torch.tensor([13, -5])
            with torch.no_grad():
                want = to_stft(*decoder.polar(z, offset))
                got = decoder.from_raw(z, offset)
                deviation = decoder.parts(z).deviation
            self.assertGreater(float(deviation.abs().max()), 0.3, deviations)
            self.assertEqual(got.shape, want.shape)
            scale = float(want.abs().max())
            self.assertLess(float((got - want).abs().max()), 1e-4 * scale, deviations)


@unittest.skipIf(MISSING, f"missing: {', '.join(MISSING)}")
class PartialsTest(unittest.TestCase):
    def test_only_peaks_that_stand_out_are_partials(self):
        from tools.train.gm_tiny.autoencoder import partial_deviations, peak_deviations, stft
        # A tone 0.25 above bin 40's centre over a smooth floor 57 dB down whose ripples
        # (what a decoder's smoothed magnitudes have, 1.7 dB) are local maxima too: the
        # bins within 2 of the tone are a partial and take its place; the ripples are not.
        t = torch.arange(g.SAMPLE_RATE) / g.SAMPLE_RATE
        tone = torch.sin(2 * math.pi * 40.25 * 25.0 * t)[None, None]
        ripple = torch.exp(-0.5 + 0.1 * torch.sin(0.7 * torch.arange(g.BINS)))
        logmag = torch.log(torch.linalg.vector_norm(stft(tone), dim=-1) + ripple)
        self.assertGreater(float(peak_deviations(logmag)[0, 0, 2:-2, 100:].abs().mean()), 0.1)
        deviation, partial = partial_deviations(logmag)
        inner = slice(2, -2)  # away from the clip's ends
        for k in range(38, 43):
            self.assertEqual(float(partial[0, 0, inner, k].min()), 1.0, k)
            got = deviation[0, 0, inner, k]
            self.assertLess(float((got - (40.25 - k)).abs().max()), 0.06, k)
        floor = partial[0, 0, inner, 100:]
        self.assertEqual(float(floor.max()), 0.0)

    def test_bins_without_a_partial_play_noise_not_clicks(self):
        # A flat spectrum has no partial. Turned from the lobe phase at their centres' rates
        # (`deviations="peaks"`), its bins are the harmonics of 25 Hz in one phase: a click
        # every 40 ms. Played as noise (`"partials"`), the same magnitudes keep a steady
        # envelope.
        from tools.train.gm_tiny.autoencoder import istft, played_stft
        frames = 8 * g.FRAMES_PER_LATENT
        logmag = torch.zeros(1, 1, frames, g.BINS)
        deviation = torch.zeros(1, 1, frames // g.FRAMES_PER_LATENT, g.BINS)
        offset = torch.tensor([5])

        def crest(partial):
            audio = istft(played_stft(logmag, deviation, offset, partial))[0, 0]
            audio = audio[g.N_FFT: -g.N_FFT]
            return float(audio.abs().max() / audio.pow(2).mean().sqrt())

        clicks = crest(None)
        noise = crest(torch.zeros_like(deviation))
        self.assertGreater(clicks, 20.0)
        self.assertLess(noise, 6.0)


class KeepMagnitudesTest(unittest.TestCase):
    def test_a_plain_decoder_turned_position_phase_keeps_its_magnitudes(self):
        torch.manual_seed(4)
        plain = Autoencoder().decoder.eval()
        z = torch.randn(2, g.LATENT_CHANNELS, 6)
        for deviations in DEVIATION_SOURCES:
            widened = position_phase_from(plain, {"position_phase": True,
                                                  "deviations": deviations}).eval()
            with torch.no_grad():
                logmag, head_phase, _ = plain.polar(z)
                kept, phase, turn = widened.polar(z, torch.tensor([3, 7]))
            self.assertTrue(torch.equal(logmag, kept), deviations)
            self.assertIsNotNone(turn)
            self.assertFalse(torch.equal(head_phase, phase))  # the phase is the lobe phase


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


class _PeakRule(torch.nn.Module if not MISSING else object):
    """An "autoencoder" whose latents are the source's STFT magnitudes, decoded by the
    position-phase rule with deviations from their own peaks (`Decoder(deviations="peaks")`
    given perfect magnitudes)."""

    def __init__(self):
        super().__init__()
        from tools.train.gm_tiny.autoencoder import stft
        self.encoder = lambda audio: torch.linalg.vector_norm(stft(audio), dim=-1)

    @staticmethod
    def decoder(magnitude):
        from tools.train.gm_tiny.autoencoder import LOBE_PHASE, peak_turn, to_stft
        logmag = torch.log(magnitude + 1e-7)
        return to_stft(logmag, LOBE_PHASE, peak_turn(logmag, torch.tensor([0])))


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

    def test_magnitudes_phased_by_their_own_peaks_keep_held_partials(self):
        from tools.train.gm_tiny.eval_ae import held_tones
        scores = held_tones(_PeakRule())
        self.assertGreater(scores["held_tone_purity"], 0.9)
        self.assertLess(scores["held_tone_cents"], 10.0)


if __name__ == "__main__":
    unittest.main()
