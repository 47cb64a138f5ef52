"""Features of rendered audio: power-weighted spectral centroid and a spectral-flux onset count.

Both work on the mono mix of a (frames, 2) float array. Pure numpy, no state.
"""

from __future__ import annotations

import numpy as np

FFT = 2048
HOP = 512


def _stft_mag(audio: np.ndarray) -> np.ndarray:
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    n = 1 + max(0, (len(mono) - FFT) // HOP)
    idx = np.arange(FFT)[None, :] + HOP * np.arange(n)[:, None]
    frames = mono[idx] * np.hanning(FFT)[None, :]
    return np.abs(np.fft.rfft(frames, axis=1))


def spectral_centroid(audio: np.ndarray, sample_rate: int) -> float:
    """The centroid (Hz) of the clip's total power spectrum (loud frames weigh more)."""
    power = (_stft_mag(audio) ** 2).sum(axis=0)
    freqs = np.fft.rfftfreq(FFT, 1.0 / sample_rate)
    total = power.sum()
    return float((freqs * power).sum() / total) if total > 0 else 0.0


def onset_count(audio: np.ndarray, sample_rate: int, min_hz: float = 4000.0) -> int:
    """Onsets found by half-wave-rectified log-spectral flux above `min_hz` (where drums and
    attacks live), peaks over a local median plus the clip's median flux, >= 50 ms apart."""
    lo = int(min_hz / sample_rate * FFT)
    mag = np.log1p(1000.0 * _stft_mag(audio)[:, lo:])
    flux = np.maximum(0.0, np.diff(mag, axis=0)).sum(axis=1)
    if len(flux) < 3 or flux.max() <= 0:
        return 0
    win = 8
    pad = np.pad(flux, win, mode="edge")
    local = np.array([np.median(pad[i:i + 2 * win + 1]) for i in range(len(flux))])
    thresh = local + np.median(flux)
    min_gap = int(0.05 * sample_rate / HOP) + 1
    count, last = 0, -min_gap
    for i in range(1, len(flux) - 1):
        if flux[i] > thresh[i] and flux[i] >= flux[i - 1] and flux[i] >= flux[i + 1] and i - last >= min_gap:
            count += 1
            last = i
    return count
