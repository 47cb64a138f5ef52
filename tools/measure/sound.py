"""Measure the sound latentd plays: the numbers docs/models.md reports and its pictures.

    python3 tools/measure/sound.py analyze OUT.wav [--source SRC.wav] [--loop-s 10]
    python3 tools/measure/sound.py spectrogram OUT.wav PNG --title TEXT [--loop-s 10]

`analyze` prints one JSON object for the last whole loop of a recording (before the stop fade) (`--record`, 32-bit
float or 16-bit PCM WAV): the power-weighted spectral centroid (Hz), the onset rate (spectral
flux above 4 kHz, per second), the fraction of noise-like frames (spectral flatness > 0.3
among frames within 40 dB of the loudest), the pitch-step rate (below), the beat strength
(below), the RMS level and,
with `--source`, the loop lined up with the source (by `--playhead-start` where the
recording's start in the loop is known, else estimated by `alignment_lag`) and then the
mean absolute log-mel error (64 bands, dB, floored 80 dB below the source's peak) and the
chroma correlation with the source.

Pitch steps: per 10 ms frame the strongest spectral peak between 80 Hz and 2 kHz, refined by
parabolic interpolation. A frame pair is *sustained* when both frames are within 20 dB of
the loudest frame, neither starts an onset (broadband flux under the clip's 75th
percentile) and the peak magnitude changes by under 3 dB; a *pitch step* is a sustained pair
whose peak moves by more than 0.5 semitone (a held note should not move; a pair across a
note change is usually not sustained). Reported as steps per sustained pair.

Beat strength: the onset envelope (mean positive log-power flux, 2048-point frames every
10 ms), cut into 5 s windows 2.5 s apart; per window the highest normalised autocorrelation
at lags 0.3-1.5 s (a beat at 40-200 BPM), and the median over the windows. Music with a
steady beat scores high (the training set's drum clips: 0.76-0.87); sound whose onsets fall
anywhere scores low (decoded Gaussian latents: 0.13).

numpy only (matplotlib for `spectrogram`); no state; the same file gives the same numbers.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from data.features import onset_count, spectral_centroid  # noqa: E402


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """(frames [N, channels] float32, rate) of a PCM16 or IEEE-float32 WAV."""
    data = Path(path).read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SystemExit(f"{path}: not a WAV file")
    pos, fmt, body = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        chunk = data[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            fmt = struct.unpack("<HHIIHH", chunk[:16])
        elif cid == b"data":
            body = chunk
        pos += 8 + size + (size & 1)
    if fmt is None or body is None:
        raise SystemExit(f"{path}: no fmt or data chunk")
    tag, channels, rate, _, _, bits = fmt
    if tag == 0xFFFE:  # WAVE_FORMAT_EXTENSIBLE: the sub-format's first two bytes
        tag = 3 if bits == 32 else 1
    if tag == 3 and bits == 32:
        x = np.frombuffer(body, dtype="<f4")
    elif tag == 1 and bits == 16:
        x = np.frombuffer(body, dtype="<i2").astype(np.float32) / 32768.0
    else:
        raise SystemExit(f"{path}: format {tag}/{bits} bits (accepted: float32, PCM16)")
    return x[: len(x) // channels * channels].reshape(-1, channels).astype(np.float32), rate


STOP_FADE_S = 0.25  # the daemon fades out on SIGINT: the recording's tail is not the model's


def last_loop_start(frames: int, rate: int, loop_s: float) -> int:
    """Where the last whole loop before the stop fade starts in a recording of `frames`
    frames (a file shorter than a loop plus the fade is taken as a plain clip: its last
    `loop_s` seconds)."""
    n, fade = int(round(loop_s * rate)), int(STOP_FADE_S * rate)
    if frames < n:
        raise SystemExit(f"recording is {frames / rate:.2f} s, shorter than one {loop_s} s loop")
    return frames - n if frames < n + fade else frames - fade - n


def last_loop(audio: np.ndarray, rate: int, loop_s: float) -> np.ndarray:
    """The last whole loop before the stop fade (see `last_loop_start`)."""
    start = last_loop_start(len(audio), rate, loop_s)
    return audio[start: start + int(round(loop_s * rate))]


ALIGN_HOP_S = 0.005  # the envelopes' frame step
ALIGN_BANDS = 16  # the envelopes' mel bands
# A waveform correlation (normalised) at least this high means the output kept the source's
# waveform, and the waveform's peak then places it to the sample.
WAVEFORM_KEPT = 0.5


def envelope_correlation(loop: np.ndarray, source: np.ndarray, rate: int, hop: int) -> np.ndarray:
    """Circular cross-correlation, per lag of `hop` samples, of the two log-mel envelopes
    (frames 4 hops long, each band's mean removed); index `i` is the lag `i * hop`."""
    frames = len(loop) // hop
    n_fft = 4 * hop
    fb = mel_filters(rate, n_fft, ALIGN_BANDS)

    def envelope(x: np.ndarray) -> np.ndarray:
        power = stft_power(x.mean(axis=1), n_fft, hop, pad_mode="wrap")[:frames]
        db = 10 * np.log10(power @ fb.T + 1e-10)
        db = np.maximum(db, db.max() - 80.0)
        return db - db.mean(axis=0, keepdims=True)

    ea, eb = envelope(loop), envelope(source)
    spectrum = (np.fft.rfft(eb, axis=0) * np.conj(np.fft.rfft(ea, axis=0))).sum(axis=1)
    return np.fft.irfft(spectrum, n=frames)


def alignment_lag(loop: np.ndarray, source: np.ndarray, rate: int) -> int:
    """The rotation (samples, for `np.roll(loop, lag, axis=0)`) that lines `loop` up with
    `source` (same length), estimated.

    The waveform alone is no guide for a model that keeps the music but not its phase (a
    decoder that predicts its own phase): its correlation peak with the source can be
    anywhere (one gm-tiny reconstruction was put 0.49 s off by it, which read as 2 dB more
    log-mel error). So the lag is found on the log-mel envelopes in 5 ms steps, refined
    between steps by a parabola through the peak (within 4 ms of the exact lag on gm-tiny's
    reconstructions, 12 ms on the analytic model's); then, only where the waveforms still correlate (`WAVEFORM_KEPT`
    within half a step of it), to the sample by the mono mixes' correlation."""
    n = len(loop)
    hop = max(1, int(ALIGN_HOP_S * rate))
    env = envelope_correlation(loop, source, rate, hop)
    i = int(np.argmax(env))
    before, peak, after = env[i - 1], env[i], env[(i + 1) % len(env)]
    curve = before - 2 * peak + after
    frac = 0.5 * (before - after) / curve if curve < 0 else 0.0
    lag = int(round((i + frac) * hop)) % n
    a, b = loop.mean(axis=1), source.mean(axis=1)
    wave = np.fft.irfft(np.fft.rfft(b) * np.conj(np.fft.rfft(a)), n=n)
    wave /= np.sqrt((a.astype(np.float64) ** 2).sum() * (b.astype(np.float64) ** 2).sum()) + 1e-20
    near = (lag + np.arange(-(hop // 2), hop // 2 + 1)) % n
    best = near[np.argmax(wave[near])]
    return int(best) if wave[best] >= WAVEFORM_KEPT else lag


def stft_power(mono: np.ndarray, n_fft: int, hop: int, pad_mode: str = "reflect") -> np.ndarray:
    """[frames, bins] power of a Hann-windowed STFT centred on every hop; `pad_mode="wrap"`
    treats the signal as a loop."""
    pad = np.pad(mono, (n_fft // 2, n_fft // 2), mode=pad_mode)
    frames = 1 + (len(pad) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    spec = np.fft.rfft(pad[idx] * np.hanning(n_fft + 1)[:-1][None, :], axis=1)
    return (spec.real ** 2 + spec.imag ** 2).astype(np.float64)  # [frames, bins]


def mel_filters(rate: int, n_fft: int, bands: int) -> np.ndarray:
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(20.0), hz_to_mel(min(20000.0, rate / 2)), bands + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)


def log_mel_db(audio: np.ndarray, rate: int, bands: int = 64) -> np.ndarray:
    """[channels, frames, bands] log-mel power (dB), n_fft 2048, hop 480."""
    fb = mel_filters(rate, 2048, bands)
    return np.stack([10 * np.log10(stft_power(audio[:, c], 2048, 480) @ fb.T + 1e-10)
                     for c in range(audio.shape[1])])


def log_mel_error_db(pred: np.ndarray, target: np.ndarray, rate: int) -> float:
    p, t = log_mel_db(pred, rate), log_mel_db(target, rate)
    floor = t.max() - 80.0
    return float(np.abs(np.maximum(p, floor) - np.maximum(t, floor)).mean())


def chroma(audio: np.ndarray, rate: int, hop_s: float = 0.25) -> np.ndarray:
    """[frames, 12] chroma (power in each pitch class, 65 Hz to 4 kHz, unit-normalised)."""
    n_fft = 8192
    power = stft_power(audio.mean(axis=1), n_fft, int(hop_s * rate))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    keep = (freqs >= 65) & (freqs <= 4000)
    pc = np.round(12 * np.log2(freqs[keep] / 440.0)).astype(int) % 12
    out = np.zeros((power.shape[0], 12))
    for k in range(12):
        out[:, k] = power[:, keep][:, pc == k].sum(axis=1)
    return out / (np.linalg.norm(out, axis=1, keepdims=True) + 1e-12)


def chroma_correlation(a: np.ndarray, b: np.ndarray, rate: int) -> float:
    ca, cb = chroma(a, rate).ravel(), chroma(b, rate).ravel()
    return float(np.corrcoef(ca, cb)[0, 1])


def noise_fraction(audio: np.ndarray, rate: int) -> float:
    power = stft_power(audio.mean(axis=1), 2048, 480)[:, 1:] + 1e-20
    energy = power.sum(axis=1)
    loud = energy > energy.max() * 1e-4
    flat = np.exp(np.log(power).mean(axis=1)) / power.mean(axis=1)
    return float((flat[loud] > 0.3).mean()) if loud.any() else 0.0


def pitch_steps(audio: np.ndarray, rate: int) -> dict:
    n_fft, hop = 4096, int(0.01 * rate)
    power = stft_power(audio.mean(axis=1), n_fft, hop)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    lo, hi = np.searchsorted(freqs, 80.0), np.searchsorted(freqs, 2000.0)
    band = power[:, lo:hi]
    k = np.argmax(band, axis=1)
    k = np.clip(k, 1, band.shape[1] - 2)
    rows = np.arange(len(k))
    a, b, c = (np.log(band[rows, k + d] + 1e-20) for d in (-1, 0, 1))
    offset = 0.5 * (a - c) / np.where(np.abs(a - 2 * b + c) > 1e-12, a - 2 * b + c, 1e-12)
    f0 = freqs[lo + k] + np.clip(offset, -1, 1) * (freqs[1] - freqs[0])
    peak_db = 10 * np.log10(band[rows, k] + 1e-20)
    energy_db = 10 * np.log10(power.sum(axis=1) + 1e-20)
    logp = np.log(power + 1e-12)
    flux = np.concatenate([[0.0], np.maximum(0, np.diff(logp, axis=0)).mean(axis=1)])
    onset = flux > np.percentile(flux, 75)
    loud = energy_db > energy_db.max() - 20
    sustained = loud[:-1] & loud[1:] & ~onset[1:] & (np.abs(np.diff(peak_db)) < 3.0)
    semis = np.abs(12 * np.log2(f0[1:] / f0[:-1]))
    steps = sustained & (semis > 0.5)
    pairs = int(sustained.sum())
    return {"sustained_pairs": pairs, "pitch_steps": int(steps.sum()),
            "pitch_step_rate": float(steps.sum() / pairs) if pairs else 0.0}


BEAT_WINDOW_S = 5.0
BEAT_LAGS_S = (0.3, 1.5)


def beat_strength(audio: np.ndarray, rate: int) -> float:
    hop = int(0.01 * rate)
    logp = np.log(stft_power(audio.mean(axis=1), 2048, hop) + 1e-10)
    flux = np.maximum(0, np.diff(logp, axis=0)).mean(axis=1)
    n = int(BEAT_WINDOW_S / 0.01)
    lo, hi = (int(s / 0.01) for s in BEAT_LAGS_S)
    peaks = []
    for start in range(0, max(1, len(flux) - n + 1), n // 2):
        x = flux[start:start + n] - flux[start:start + n].mean()
        ac = np.correlate(x, x, "full")[len(x) - 1:]
        if len(x) > hi and ac[0] > 0:
            peaks.append(float(ac[lo:hi + 1].max() / ac[0]))
    return float(np.median(peaks)) if peaks else 0.0


def analyze(path: Path, source: Path | None, loop_s: float,
            playhead_start: int | None = None) -> dict:
    """The measures of the last whole loop of the recording at `path`; with `source`, also
    against it. `playhead_start`: the loop position (frames) the recording's first frame
    played, when known (a daemon started with `--record` and a fresh state starts at 0); it
    lines the loop up with the source exactly. Without it the lag is estimated
    (`alignment_lag`)."""
    audio, rate = read_wav(path)
    loop = last_loop(audio, rate, loop_s)
    out = {"file": str(path), "seconds": loop_s,
           "rms_dbfs": float(10 * np.log10((loop ** 2).mean() + 1e-20)),
           "centroid_hz": spectral_centroid(loop, rate),
           "onsets_per_s": onset_count(loop, rate) / loop_s,
           "noise_frames": noise_fraction(loop, rate),
           "beat_strength": beat_strength(loop, rate)}
    out.update(pitch_steps(loop, rate))
    if source is not None:
        src, src_rate = read_wav(source)
        if src_rate != rate:
            raise SystemExit(f"{source}: {src_rate} Hz, the recording is {rate} Hz")
        src = src[: len(loop)]
        if len(src) != len(loop):
            raise SystemExit(f"{source} is shorter than the {loop_s} s loop")
        if src.shape[1] == 1:
            src = np.repeat(src, 2, axis=1)
        estimated = alignment_lag(loop, src, rate)
        lag = estimated
        if playhead_start is not None:
            lag = (last_loop_start(len(audio), rate, loop_s) + playhead_start) % len(loop)
            off = (estimated - lag + len(loop) // 2) % len(loop) - len(loop) // 2
            out["alignment_estimate_off_ms"] = 1000.0 * off / rate
        out["alignment"] = "playhead" if playhead_start is not None else "estimated"
        aligned = np.roll(loop, lag, axis=0)
        out["log_mel_error_db"] = log_mel_error_db(aligned, src, rate)
        out["chroma_correlation"] = chroma_correlation(aligned, src, rate)
    return out


def spectrogram(path: Path, png: Path, title: str, loop_s: float):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    audio, rate = read_wav(path)
    loop = last_loop(audio, rate, loop_s)
    mel = log_mel_db(loop, rate, bands=96).mean(axis=0).T
    fig, ax = plt.subplots(figsize=(8, 2.6), dpi=100)
    ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", vmin=mel.max() - 80,
              vmax=mel.max(), extent=[0, loop_s, 0, mel.shape[0]])
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("seconds")
    ax.set_ylabel("mel band (20 Hz - 20 kHz)")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("analyze")
    a.add_argument("wav", type=Path)
    a.add_argument("--source", type=Path)
    a.add_argument("--loop-s", type=float, default=10.0)
    a.add_argument("--playhead-start", type=int,
                   help="loop position (frames) of the recording's first frame, when known "
                        "(0 for `latentd --record` from a fresh start); else it is estimated")
    s = sub.add_parser("spectrogram")
    s.add_argument("wav", type=Path)
    s.add_argument("png", type=Path)
    s.add_argument("--title", required=True)
    s.add_argument("--loop-s", type=float, default=10.0)
    args = ap.parse_args()
    if args.cmd == "analyze":
        print(json.dumps(analyze(args.wav, args.source, args.loop_s, args.playhead_start)))
    else:
        spectrogram(args.wav, args.png, args.title, args.loop_s)


if __name__ == "__main__":
    main()
