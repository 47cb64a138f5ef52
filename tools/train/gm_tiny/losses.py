"""Spectral losses for the autoencoder and the log-mel metric the model is judged by."""

import functools

import torch
import torch.nn.functional as F

from . import geometry as g


def _mag(x, n_fft, hop):
    b, a, s = x.shape
    w = torch.hann_window(n_fft, periodic=True, device=x.device)
    spec = torch.stft(x.reshape(b * a, s), n_fft, hop, window=w, center=True, return_complex=True)
    return spec.abs()


def multi_resolution_stft(pred, target, sizes=(256, 512, 1024, 2048)):
    """L1 of log magnitudes plus spectral convergence, averaged over resolutions."""
    total = 0.0
    for n in sizes:
        p, t = _mag(pred, n, n // 4), _mag(target, n, n // 4)
        total = total + F.l1_loss(torch.log(p + 1e-5), torch.log(t + 1e-5))
        total = total + torch.linalg.norm(t - p) / (torch.linalg.norm(t) + 1e-5)
    return total / len(sizes)


@functools.lru_cache(maxsize=4)
def mel_filters(n_fft: int, bands: int, device: str = "cpu"):
    """Slaney-style triangular mel filters [bands, n_fft/2+1], 20 Hz .. 20 kHz."""
    def hz_to_mel(f):
        return 2595.0 * torch.log10(1.0 + f / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    freqs = torch.linspace(0, g.SAMPLE_RATE / 2, n_fft // 2 + 1)
    edges = mel_to_hz(torch.linspace(hz_to_mel(torch.tensor(20.0)), hz_to_mel(torch.tensor(20000.0)), bands + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return torch.clamp(torch.minimum(up, down), min=0.0).to(device)


def log_mel_db(audio, bands: int = 64, n_fft: int = 2048, hop: int = 480):
    """Log-mel power in dB, [B*A, bands, frames], floored at -100 dB."""
    mag = _mag(audio, n_fft, hop)
    mel = mel_filters(n_fft, bands, str(audio.device)) @ (mag * mag)
    return 10.0 * torch.log10(mel + 1e-10)


def log_mel_error_db(pred, target, bands: int = 64, floor_db: float = -80.0):
    """Mean absolute log-mel error in dB (64 bands), both sides floored at `floor_db` below
    the target's peak so silence does not dominate: the issue's reconstruction metric."""
    p, t = log_mel_db(pred, bands), log_mel_db(target, bands)
    floor = t.amax() + floor_db
    return (torch.clamp(p, min=floor) - torch.clamp(t, min=floor)).abs().mean()


def mel_l1(pred, target):
    return F.l1_loss(log_mel_db(pred) / 20.0, log_mel_db(target) / 20.0)
