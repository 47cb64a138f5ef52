"""The gm-tiny autoencoder: audio 48 kHz stereo <-> 64 latent channels at 25 fps.

Encoder: log-magnitude STFT (n_fft 960, hop 480, computed by a fixed DFT convolution so the
graph exports to plain ONNX Conv; optionally also the lowest bins of an n_fft 3840 STFT, a
12.5 Hz fine view for low notes) -> ConvNeXt blocks at 100 frames/s -> a stride-4 convolution
to 25 fps -> ConvNeXt blocks -> 64 channels.

Decoder (Vocos-style): 64 channels at 25 fps -> ConvNeXt blocks -> x4 upsampling by channel
shuffle to 100 frames/s -> ConvNeXt blocks -> per STFT frame and channel a log-magnitude and a
phase for each of the 961 bins -> the complex STFT (n_fft 1920, hop 480). The inverse STFT is
not in the graph: ONNX Runtime's DFT is slow at this size, and latentd does it in Rust
(`[decoder] output = "stft"`, docs/bundles.md). Training inverts with `torch.istft`, which is
the same convention.

Why this design: an STFT-domain decoder reaches waveform quality with a small network (no
transposed-convolution upsampling stack to 48 kHz), decodes a 1 s window in a few
milliseconds on one CPU core, and its receptive field is short, so windowed decoding with a
few context frames is seamless.

Latent scale: the encoder ends in a fixed per-channel affine (`latent_mean`, `latent_std`,
measured on the training set after training) so the DiT sees unit-variance latents; the
decoder starts with its inverse.
"""

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from . import geometry as g


class ConvNeXt(nn.Module):
    """Depthwise conv, channel LayerNorm, pointwise MLP, layer scale, residual."""

    def __init__(self, dim: int, kernel: int, mlp: int = 3):
        super().__init__()
        self.dw = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, mlp * dim)
        self.down = nn.Linear(mlp * dim, dim)
        self.scale = nn.Parameter(torch.full((dim,), 0.1))

    def forward(self, x):  # [B, D, N]
        y = self.dw(x).transpose(1, 2)
        y = self.down(F.gelu(self.up(self.norm(y))))
        return x + (self.scale * y).transpose(1, 2)


class DftMagnitude(nn.Module):
    """Log-magnitude STFT as a strided Conv1d with a fixed windowed-DFT basis (center=True,
    reflect padding, like torch.stft), frames 0..S/hop-1; bins 0..`bins`-1 (all by default)."""

    def __init__(self, n_fft: int, hop: int, bins: int | None = None):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.bins = bins = bins or n_fft // 2 + 1
        n = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(bins, dtype=torch.float64)
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
        angle = 2 * math.pi * k[:, None] * n[None, :] / n_fft
        basis = torch.cat([torch.cos(angle) * window, -torch.sin(angle) * window])
        self.register_buffer("basis", basis[:, None, :].float(), persistent=False)

    def forward(self, audio):  # [B, A, S] -> [B, A * bins, S / hop]
        b, a, s = audio.shape
        if not torch.onnx.is_in_onnx_export():
            # The same magnitudes by FFT: ~20x cheaper for training; the export keeps the Conv.
            w = torch.hann_window(self.n_fft, periodic=True, device=audio.device)
            spec = torch.stft(audio.reshape(b * a, s), self.n_fft, self.hop, window=w,
                              center=True, pad_mode="reflect", return_complex=True)
            spec = spec[:, : self.bins, : s // self.hop]
            mag = torch.sqrt(spec.real ** 2 + spec.imag ** 2 + 1e-10)
            return torch.log(mag + 1e-4).reshape(b, -1, s // self.hop)
        x = audio.reshape(b * a, 1, s)
        x = F.pad(x, (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        spec = F.conv1d(x, self.basis, stride=self.hop)[:, :, : s // self.hop]
        re, im = spec.chunk(2, dim=1)
        mag = torch.sqrt(re * re + im * im + 1e-10)
        return torch.log(mag + 1e-4).reshape(b, -1, s // self.hop)


class Encoder(nn.Module):
    """`hires_bins > 0` adds a second view: the lowest `hires_bins` bins of an n_fft
    `ENC_HIRES_N_FFT` STFT on the same frame centres (12.5 Hz apart where the first view's
    are 50 Hz apart, too coarse to tell a low note from its neighbours)."""

    def __init__(self, dim: int = 256, blocks: int = 2, hires_bins: int = 0):
        super().__init__()
        self.features = DftMagnitude(g.ENC_N_FFT, g.ENC_HOP)
        self.hires = DftMagnitude(g.ENC_HIRES_N_FFT, g.ENC_HOP, hires_bins) if hires_bins else None
        inputs = g.ENC_BINS + hires_bins
        self.inp = nn.Conv1d(g.AUDIO_CHANNELS * inputs, dim, 3, padding=1)
        self.fine = nn.Sequential(*[ConvNeXt(dim, 7) for _ in range(blocks)])
        self.down = nn.Conv1d(dim, dim, g.FRAMES_PER_LATENT, stride=g.FRAMES_PER_LATENT)
        self.coarse = nn.Sequential(*[ConvNeXt(dim, 5) for _ in range(blocks)])
        self.out = nn.Conv1d(dim, g.LATENT_CHANNELS, 1)
        self.register_buffer("latent_mean", torch.zeros(g.LATENT_CHANNELS, 1))
        self.register_buffer("latent_std", torch.ones(g.LATENT_CHANNELS, 1))

    def raw(self, audio):  # [B, A, S] -> [B, C, S / 1920], before the fixed scaling
        x = self.features(audio)
        if self.hires is not None:
            x = torch.cat([x, self.hires(audio)], dim=1)
        x = self.fine(self.inp(x))
        return self.out(self.coarse(self.down(x)))

    def forward(self, audio):
        return (self.raw(audio) - self.latent_mean) / self.latent_std


# A position-phase decoder's deviations are multiples of 1 / PHASE_GRID bins (3.125 Hz), so
# its turns repeat every PHASE_GRID latent frames (4 * PHASE_GRID STFT frames) and only the
# frame's place in that period matters (`frame_rotation`).
PHASE_GRID = 8
# How far off its bin's centre a partial may lie, in bins (25 Hz each): the two bins either
# side of a partial carry most of it; a bin turned at a rate far from its own makes grains
# that do not add up to a tone (measured: a decoder allowed 2 bins put its loudest bins there
# and held tones came out on the 25 Hz comb).
MAX_DEVIATION = 1.0


# A position-phase decoder's phase before its turn, [F]: pi on odd bins (`Decoder`).
LOBE_PHASE = math.pi * (torch.arange(g.BINS) % 2).float()
# Training weighs a rounded deviation against the grid points up to NEIGHBOURS steps either
# side of it (`Turn`), softly over about SOFT_WIDTH steps.
NEIGHBOURS = 2
SOFT_WIDTH = 0.5


class Turn(NamedTuple):
    """A position-phase decoder's turn of each bin at each STFT frame, [B, A, N, F].

    `angle`: the turn (radians) of the deviation rounded to the grid, with no gradient.
    `phasor` (in training only, else None): its cosine and sine, [..., 2], whose gradient
    reaches the deviation through a soft choice among the neighbouring grid points.

    Why not the rounded angle's gradient (a straight-through rounding, the estimator before
    this one): a turn grows with the frame's place in the period (up to 31 frames), so one
    grid step turns a late frame by more than a radian, and the angle's local slope says
    nothing about what that step does. The soft choice compares the neighbours' whole
    phasors with the loss's gradient instead: a first-order estimate of switching to each.
    Measured (`probe_deviation`, tools/train/README.md): a lower training loss than the
    straight-through rounding in every 50-step window, the same heldout error, and neither
    does better than deviations held at 0."""

    angle: torch.Tensor
    phasor: torch.Tensor | None
    deviation: torch.Tensor  # the head's raw deviation (bins), [B, A, N, F]


def period_frames(frame_offset, frames: int, device):
    """Each STFT frame's place in the turn's period, [B, N]: `(4 * frame_offset + n) mod
    (4 * PHASE_GRID)`. `frame_offset` [B] int64, the first latent frame's index (may be
    negative)."""
    period = g.FRAMES_PER_LATENT * PHASE_GRID
    return torch.remainder(frame_offset.reshape(-1, 1) * g.FRAMES_PER_LATENT
                           + torch.arange(frames, device=device), period)


def turn_angle(steps, m):
    """The turn (radians) of a partial `steps / PHASE_GRID` bins off bin `k`'s centre at
    period frame `m`: `(pi / 2) * (k + d) * m`, its multiples of 2 pi left out. `steps`
    [B, A, N, F, ...] grid steps; `m` [B, N]."""
    k = torch.arange(g.BINS, device=steps.device)
    quarters = torch.remainder(m[..., None] * k, 4)  # [B, N, F], the bin centres' turns
    m = m[:, None, :, None]
    if steps.dim() == 5:
        quarters, m = quarters[..., None], m[..., None]
    return (math.pi / 2) * (quarters[:, None].to(steps.dtype) + steps * m.to(steps.dtype) / PHASE_GRID)


def grid_steps(deviation):
    """`deviation` (bins) clamped to +-`MAX_DEVIATION` and rounded to whole grid steps of
    `1 / PHASE_GRID` bins: what every form of the rule plays."""
    limit = MAX_DEVIATION * PHASE_GRID
    return torch.round((deviation * PHASE_GRID).clamp(-limit, limit))


def frame_rotation(deviation, frame_offset, frames: int, soft: bool = False) -> Turn:
    """The turn of a partial `deviation` bins off bin `k`'s centre at STFT frame
    `m = 4 * frame_offset + n`: `(pi / 2) * (k + d) * (m mod 4 * PHASE_GRID)`, `d` the
    deviation clamped to +-`MAX_DEVIATION` bins and rounded to a multiple of
    `1 / PHASE_GRID`. `soft` (training): also the phasor whose gradient chooses among the
    neighbouring grid points ([`Turn`]).

    Hop 480 is a quarter of n_fft 1920, so such a partial turns `(pi / 2) * (k + d)` a
    frame; on the grid it makes a whole number of turns in a period, so the turn goes on
    across each period's end without a step, at any loop position, and the decoder only
    ever sees small frame counts (a count from the loop's start made every deviation's
    gradient grow with the position). `deviation` [B, A, N, F]."""
    m = period_frames(frame_offset, frames, deviation.device)
    if not soft:
        return Turn(turn_angle(grid_steps(deviation), m), None, deviation)
    limit = MAX_DEVIATION * PHASE_GRID
    steps = deviation * PHASE_GRID
    # Straight through the clamp (so a deviation pushed past it is never stuck there).
    steps = steps + (steps.clamp(-limit, limit) - steps).detach()
    nearest = torch.round(steps.detach())
    angle = turn_angle(nearest, m)
    offsets = torch.arange(-NEIGHBOURS, NEIGHBOURS + 1, device=deviation.device)
    candidates = (nearest[..., None] + offsets).clamp(-limit, limit)  # [B, A, N, F, J]
    weight = torch.softmax(-0.5 * ((steps[..., None] - candidates) / SOFT_WIDTH) ** 2, dim=-1)
    chosen = (offsets == 0).to(weight.dtype)
    weight = chosen + weight - weight.detach()  # the rounded choice, the soft gradient
    turns = turn_angle(candidates, m)
    phasor = torch.stack([(weight * torch.cos(turns)).sum(-1),
                          (weight * torch.sin(turns)).sum(-1)], dim=-1)
    return Turn(angle, phasor, deviation)


# Where a position-phase decoder's deviations come from: its own head, its magnitudes' peaks
# (`peak_deviations`), or the peaks that stand out as partials, with every other bin played
# as noise (`partial_deviations`).
DEVIATION_SOURCES = ("head", "peaks", "partials")
PEAK_REACH = 2  # a bin takes its deviation from the loudest peak up to this many bins away
# A partial (`deviations="partials"`) is a peak at least PARTIAL_PROMINENCE (natural log of
# magnitude: 3 dB) above the quietest bin within PROMINENCE_REACH bins of it.
PARTIAL_PROMINENCE = 0.35
PROMINENCE_REACH = 3
# The phase of a bin with no partial in reach (`deviations="partials"`), per STFT frame of
# the turn's period and bin, [TURN_STEPS, F]: fixed, uniformly random, so such bins add up
# to noise. Why (tools/train/README.md, partials): under the rule, a bin with no partial
# turns at its centre's rate from `LOBE_PHASE`, and all such bins together are the
# harmonics of 25 Hz in one phase: a click every 40 ms, which the onset measure counts and
# the ear hears as a buzz on held chords.
NOISE_PHASE_SEED = 7


def _shifted(x, s: int, fill: float):
    """`x` moved `s` bins along the last axis (x'[k] = x[k + s]), `fill` where nothing
    moves in (pads and slices: `torch.roll` would wrap around)."""
    if s == 0:
        return x
    if s > 0:
        return F.pad(x, (0, s), value=fill)[..., s:]
    return F.pad(x, (-s, 0), value=fill)[..., : x.shape[-1]]


def _latent_level(logmag):
    """The mean log magnitude of each latent frame's 4 STFT frames, [B, A, N, F] ->
    [B * A * N / 4, 1, F]."""
    b, a, n, f = logmag.shape
    return logmag.reshape(b * a * (n // g.FRAMES_PER_LATENT), g.FRAMES_PER_LATENT, f).mean(
        dim=1, keepdim=True)


def _peaks(level, prominence: float | None):
    """Each bin's deviation (bins) and whether a peak lies within `PEAK_REACH` of it (1 or
    0), from `level` [X, 1, F]; `prominence`: a peak must also stand this far above the
    quietest bin within `PROMINENCE_REACH` of it (None: every local maximum counts)."""
    # Strict local maxima; the first and last bins never count (their outside is padded
    # louder).
    left, right = _shifted(level, -1, 1e4), _shifted(level, 1, 1e4)
    bend = left - 2.0 * level + right
    peak = (level > left) & (level >= right) & (bend < -1e-6)
    if prominence is not None:
        around = range(-PROMINENCE_REACH, PROMINENCE_REACH + 1)
        low = torch.stack([_shifted(level, s, 1e4) for s in around], dim=-2).min(dim=-2).values
        peak = peak & (level - low > prominence)
    peak = peak.to(level.dtype)
    offset = (0.5 * (left - right) / torch.clamp(bend, max=-1e-6) * peak).clamp(-0.5, 0.5)
    # Non-peaks sink far below every peak, so the loudest of the bins in reach is a peak
    # wherever there is one.
    loudness = level - 1e4 * (1.0 - peak)
    reach = range(-PEAK_REACH, PEAK_REACH + 1)
    best, which = torch.stack([_shifted(loudness, s, -1e4) for s in reach], dim=-2).max(dim=-2)
    # A peak s bins above a bin lies s plus its offset from it. (Gathered among the 5 shifted
    # copies, not by index from the padded offsets: onnx.reference, which checks the export,
    # cannot gather among more than a few dozen.)
    place = torch.stack([s + _shifted(offset, s, 0.0) for s in reach], dim=-2)
    found = (best > -5e3).to(level.dtype)
    deviation = torch.gather(place, -2, which.unsqueeze(-2)).squeeze(-2) * found
    return deviation, found


def partial_deviations(logmag):
    """`peak_deviations` for the peaks that stand out as partials (`PARTIAL_PROMINENCE`),
    and where each bin has one within reach, [B, A, N, F] -> deviations and 0/1 partial,
    each [B, A, N / 4, F]: what `deviations="partials"` plays (`played_stft`)."""
    b, a, n, f = logmag.shape
    deviation, found = _peaks(_latent_level(logmag), PARTIAL_PROMINENCE)
    t = n // g.FRAMES_PER_LATENT
    return deviation.reshape(b, a, t, f), found.reshape(b, a, t, f)


def peak_deviations(logmag):
    """Each bin's deviation (bins) read from the log magnitudes themselves, [B, A, N, F] ->
    [B, A, N / 4, F], one per latent frame: per latent frame (the mean log magnitude of its
    4 STFT frames), each local
    maximum along frequency is a partial, placed between bins by a parabola through the peak
    and its neighbours; every bin takes the place of the loudest partial within
    `PEAK_REACH` bins of it, less its own index (0 where there is none).

    No weights: a decoder with `deviations="peaks"` predicts magnitudes only, and its phase
    follows from them (phase-vocoder style; the rule a position-phase decoder plays,
    `frame_rotation`). Measured offline (tools/train/README.md): on the source's own
    magnitudes this rule decodes heldout music to 1.92 dB log-mel, chroma 0.93 and held
    tones 99 % pure, better than the source's own per-bin deviations (2.69 dB, 0.94, 0.99):
    what is left to learn is the magnitudes.

    Written for ONNX Runtime's speed on latentd's decode path (a max and a gather over the
    shifted copies, no selects: ORT's `Where` made a first form cost more than the rest of
    the decoder)."""
    b, a, n, f = logmag.shape
    deviation, _ = _peaks(_latent_level(logmag), None)
    return deviation.reshape(b, a, n // g.FRAMES_PER_LATENT, f)


def peak_turn(logmag, frame_offset) -> Turn:
    """The turn a position-phase decoder with `deviations="peaks"` plays for the log
    magnitudes [B, A, N, F] (`peak_deviations`; no gradient reaches the magnitudes through
    it), from `frame_offset` [B] int64, the first latent frame's index."""
    deviation = torch.repeat_interleave(peak_deviations(logmag.detach()), g.FRAMES_PER_LATENT,
                                        dim=2)
    return frame_rotation(deviation, frame_offset, logmag.shape[2])


class Parts(NamedTuple):
    """What a decoder's heads predict (`Decoder.parts`)."""

    logmag: torch.Tensor  # [B, A, N, F]
    phase: torch.Tensor | None  # [B, A, N, F] without position phase, else None
    deviation: torch.Tensor | None  # [B, A, N / 4, F] (bins) with position phase, else None
    partial: torch.Tensor | None  # [B, A, N / 4, F], 1 or 0, with deviations="partials"


class Decoder(nn.Module):
    """Latents -> a complex STFT, 4 frames per latent frame.

    Without `position_phase` (gm-tiny's shipped decoder) the head predicts a log magnitude
    and a phase for each bin of each STFT frame. Each latent frame's 4 STFT frames then carry
    their own absolute phase, so a held latent repeats every 40 ms and its partials fall on
    a comb 25 Hz apart (docs/models.md, Limits).

    With `position_phase` the head predicts only the log magnitudes, and for each bin of
    each latent frame the decoder finds how far (within +-1 bin, on a 1/8-bin grid) its
    partial lies off the bin's centre: a second head at the latent rate predicts it
    (`deviations="head"`), or it is read from the magnitudes' own peaks
    (`deviations="peaks"`, [`peak_deviations`]; no weights), or from the peaks that stand
    out as partials, every other bin then playing noise (`deviations="partials"`,
    [`partial_deviations`]; no weights). The STFT frames turn at that
    partial's rate, counted from the frame's place in the loop ([`frame_rotation`]; the
    decoder takes the first latent frame's index, `frame_offset`), from a fixed phase that
    alternates by pi from bin to bin (`LOBE_PHASE`). A held latent then decodes to steady
    partials at their own frequencies, and nothing but the turn moves the phase.

    Why a fixed phase (measured offline, tools/train/README.md): a Hann-windowed partial's
    bins in its main lobe have phases pi apart from bin to bin at every frame, whatever its
    frequency, so once the turns are right that pattern is the whole answer; an absolute
    phase the head would have to guess is not in latents from a magnitude-only encoder.
    With the source's own deviations, gm-tiny's magnitudes decode to chroma 0.73 with it
    and 0.61 with a zero phase (0.47 as shipped).

    With `latent_head` a second linear head reads the latent-rate features (`dim` wide) and
    adds its log magnitudes to each of their 4 STFT frames: the magnitudes then span
    `fine_dim + dim` dimensions, not `fine_dim`, for a quarter of the frames' cost; what
    changes within a latent frame (attacks) stays with the frame-rate head."""

    def __init__(self, dim: int = 256, fine_dim: int = 128, blocks: int = 3, fine_blocks: int = 2,
                 position_phase: bool = False, deviations: str = "head",
                 latent_head: bool = False):
        super().__init__()
        if deviations not in DEVIATION_SOURCES:
            raise ValueError(f"deviations {deviations!r}: one of {DEVIATION_SOURCES}")
        if latent_head and not position_phase:
            raise ValueError("latent_head: a position-phase decoder's (its head predicts "
                             "magnitudes only)")
        self.position_phase = position_phase
        self.deviations = deviations if position_phase else None
        self.register_buffer("latent_mean", torch.zeros(g.LATENT_CHANNELS, 1))
        self.register_buffer("latent_std", torch.ones(g.LATENT_CHANNELS, 1))
        self.inp = nn.Conv1d(g.LATENT_CHANNELS, dim, 3, padding=1)
        self.coarse = nn.Sequential(*[ConvNeXt(dim, 5) for _ in range(blocks)])
        self.up = nn.Conv1d(dim, g.FRAMES_PER_LATENT * fine_dim, 1)
        self.fine_dim = fine_dim
        self.fine = nn.Sequential(*[ConvNeXt(fine_dim, 7) for _ in range(fine_blocks)])
        self.norm = nn.LayerNorm(fine_dim)
        self.head = nn.Linear(fine_dim, g.AUDIO_CHANNELS * g.BINS * (1 if position_phase else 2))
        if latent_head:
            # Starts silent: a fresh decoder learns both heads together from there.
            self.latent_norm = nn.LayerNorm(dim)
            self.latent_head = nn.Linear(dim, g.AUDIO_CHANNELS * g.BINS)
            nn.init.zeros_(self.latent_head.weight)
            nn.init.zeros_(self.latent_head.bias)
        self.latent_head_on = latent_head
        if self.deviations == "head":
            self.deviation_norm = nn.LayerNorm(dim)
            self.deviation_head = nn.Linear(dim, g.AUDIO_CHANNELS * g.BINS)
            # Every bin starts at its centre: random deviations start on random grid points,
            # a beating no neighbouring step undoes (measured: 0.4 dB worse at the start).
            nn.init.zeros_(self.deviation_head.weight)
            nn.init.zeros_(self.deviation_head.bias)

    def forward(self, latents, frame_offset=None):  # [B, C, T] -> stft [B, A, 4T, F, 2]
        return self.from_raw(latents * self.latent_std + self.latent_mean, frame_offset)

    def from_raw(self, z, frame_offset=None):  # unscaled latents (the encoder's `raw`) -> stft
        if self.position_phase and not (self.training and torch.is_grad_enabled()):
            parts = self.parts(z)
            return played_stft(parts.logmag, parts.deviation, self._offset(frame_offset, z),
                               parts.partial)
        return to_stft(*self.polar(z, frame_offset))

    @staticmethod
    def _offset(frame_offset, z):
        if frame_offset is None:
            return torch.zeros(1, dtype=torch.long, device=z.device)
        return frame_offset

    def parts(self, z) -> Parts:
        """What the heads predict ([`Parts`])."""
        b, _, t = z.shape
        coarse = self.coarse(self.inp(z))  # [B, D, T]
        # Channel shuffle x4: [B, 4*D, T] -> [B, D, 4T], frame 4t+k from group k.
        x = self.up(coarse).reshape(b, g.FRAMES_PER_LATENT, self.fine_dim, t)
        x = x.permute(0, 2, 3, 1).reshape(b, self.fine_dim, t * g.FRAMES_PER_LATENT)
        x = self.fine(x).transpose(1, 2)  # [B, N, D]
        n = t * g.FRAMES_PER_LATENT
        y = self.head(self.norm(x))  # [B, N, A*F*parts]
        if self.latent_head_on:  # position phase only: y is all log magnitudes
            level = self.latent_head(self.latent_norm(coarse.transpose(1, 2)))  # [B, T, A*F]
            y = (y.reshape(b, t, g.FRAMES_PER_LATENT, -1) + level[:, :, None]).reshape(b, n, -1)
        parts = 1 if self.position_phase else 2
        y = y.reshape(b, n, g.AUDIO_CHANNELS, parts, g.BINS).permute(0, 2, 1, 4, 3)
        logmag = torch.clamp(y[..., 0], max=8.0)  # y: [B, A, N, F, parts]
        if not self.position_phase:
            return Parts(logmag, y[..., 1], None, None)
        if self.deviations == "peaks":
            return Parts(logmag, None, peak_deviations(logmag.detach()), None)
        if self.deviations == "partials":
            return Parts(logmag, None, *partial_deviations(logmag.detach()))
        d = self.deviation_head(self.deviation_norm(coarse.transpose(1, 2)))  # [B, T, A*F]
        return Parts(logmag, None, d.reshape(b, t, g.AUDIO_CHANNELS, g.BINS).transpose(1, 2),
                     None)

    def polar(self, z, frame_offset=None):
        """The STFT in parts: the log magnitude [B, A, N, F], the phase before the turn
        ([B, A, N, F], or `LOBE_PHASE` [F] with `position_phase`; with `deviations=
        "partials"` [B, A, N, F], `NOISE_PHASE` where a bin has no partial) and the position turn
        ([`Turn`], its phasor in training only; None without `position_phase`, so an
        exported plain decoder adds no zeros on latentd's decode path). Training's form:
        decoding in eval mode plays the same turns in fewer operations ([`played_stft`])."""
        logmag, head_phase, deviation, partial = self.parts(z)
        if not self.position_phase:
            return logmag, head_phase, None
        d = torch.repeat_interleave(deviation, g.FRAMES_PER_LATENT, dim=2)  # [B, A, N, F]
        soft = self.deviations == "head" and self.training and torch.is_grad_enabled()
        offset = self._offset(frame_offset, z)
        turn = frame_rotation(d, offset, logmag.shape[2], soft)
        if partial is None:
            return logmag, LOBE_PHASE.to(z.device), turn
        kept = torch.repeat_interleave(partial, g.FRAMES_PER_LATENT, dim=2)
        noise = NOISE_PHASE.to(z.device)[period_frames(offset, logmag.shape[2], z.device)]
        phase = kept * LOBE_PHASE.to(z.device) + (1.0 - kept) * noise[:, None]
        return logmag, phase, Turn(turn.angle * kept, None, deviation)


# The rule's turn a frame in 32nds of a circle (`TURN_STEPS`): a partial `s / PHASE_GRID`
# bins off bin `k`'s centre turns `(pi / 2) * (k + s / PHASE_GRID)` a frame (hop = n_fft / 4),
# `PHASE_GRID * k + s` steps of `2 pi / TURN_STEPS`, of which only the remainder matters.
TURN_STEPS = 4 * PHASE_GRID


def _noise_phase():
    gen = torch.Generator().manual_seed(NOISE_PHASE_SEED)
    phase = (2.0 * torch.rand(TURN_STEPS, g.BINS, generator=gen) - 1.0) * math.pi
    # Exact in fp16, so a bundle stores it as it is whether or not its weights are halved
    # (and `from_bundle` finds it there).
    return phase.half().float()


NOISE_PHASE = _noise_phase()  # see NOISE_PHASE_SEED


def played_stft(logmag, deviation, frame_offset, partial=None):
    """The STFT a position-phase decoder plays, [B, A, N, F, 2], from its log magnitudes
    [B, A, N, F], its deviations per latent frame [B, A, N / 4, F] (bins) and the first
    latent frame's index `frame_offset` [B] int64: `to_stft(logmag, LOBE_PHASE,
    frame_rotation(...))` within float rounding, in fewer operations. `partial` [B, A, N / 4,
    F] (`deviations="partials"`): 1 where a bin plays its partial so, 0 where it plays
    `NOISE_PHASE` instead.

    Why: this is latentd's decode path, where every decoder-scope knob waits on it, and
    ONNX Runtime spends its time on the operations over every bin of every frame. Here the
    turn's rate is reduced to whole steps once per latent frame, and each frame's angle is
    one multiply and one add before its cosine and sine (measured, tools/train/README.md).
    A lookup of the 32 phasors was slower still: ORT's integer multiply, remainder and
    gather over every bin cost more than the arithmetic they replace."""
    b, a, n, f = logmag.shape
    t = deviation.shape[2]
    k = torch.arange(f, device=logmag.device, dtype=logmag.dtype)
    rate = torch.remainder(PHASE_GRID * k + grid_steps(deviation), TURN_STEPS)  # [B, A, T, F]
    period = period_frames(frame_offset, n, logmag.device)  # [B, N]
    m = period.to(logmag.dtype) * (2 * math.pi / TURN_STEPS)
    angle = rate[:, :, :, None, :] * m.reshape(-1, 1, t, g.FRAMES_PER_LATENT, 1)
    angle = angle.reshape(b, a, n, f) + LOBE_PHASE.to(logmag.device)
    if partial is not None:
        noise = NOISE_PHASE.to(logmag.device)[period][:, None]  # [B, 1, N, F]
        kept = torch.repeat_interleave(partial, g.FRAMES_PER_LATENT, dim=2)
        angle = noise + kept * (angle - noise)
    mag = torch.exp(logmag)
    return torch.stack([mag * torch.cos(angle), mag * torch.sin(angle)], dim=-1)


def to_stft(logmag, phase, turn: Turn | None = None):
    """[B, A, N, F] log magnitude and phase, turned by `turn` -> stft [B, A, N, F, 2]."""
    mag = torch.exp(logmag)
    if turn is not None and turn.phasor is None:
        phase = phase + turn.angle
    stft = torch.stack([mag * torch.cos(phase), mag * torch.sin(phase)], dim=-1)
    if turn is None or turn.phasor is None:
        return stft
    re, im, c, s = stft[..., 0], stft[..., 1], turn.phasor[..., 0], turn.phasor[..., 1]
    return torch.stack([re * c - im * s, re * s + im * c], dim=-1)


def istft(stft):
    """[B, A, N, F, 2] -> audio [B, A, N * hop]: latentd's inverse, in torch."""
    b, a, n, f, _ = stft.shape
    spec = torch.view_as_complex(stft.reshape(b * a, n, f, 2).contiguous()).transpose(1, 2)
    window = torch.hann_window(g.N_FFT, periodic=True, device=stft.device)
    audio = torch.istft(spec, g.N_FFT, g.HOP, window=window, center=True, length=n * g.HOP)
    return audio.reshape(b, a, n * g.HOP)


def stft(audio):
    """audio [B, A, S] -> [B, A, S/hop, F, 2]: the decoder's target in latentd's convention
    (torch.stft center=True, frames 0..S/hop-1)."""
    b, a, s = audio.shape
    window = torch.hann_window(g.N_FFT, periodic=True, device=audio.device)
    spec = torch.stft(audio.reshape(b * a, s), g.N_FFT, g.HOP, window=window, center=True,
                      return_complex=True)[:, :, : s // g.HOP]
    return torch.view_as_real(spec.transpose(1, 2)).reshape(b, a, s // g.HOP, g.BINS, 2)


def decoder_sizes(sizes: dict) -> dict:
    """The `Decoder` keyword arguments among an `Autoencoder`'s `sizes` (`dec_*`)."""
    return {k[4:]: v for k, v in sizes.items() if k.startswith("dec_")}


@torch.no_grad()
def position_phase_from(plain: Decoder, sizes: dict) -> Decoder:
    """A position-phase decoder that decodes `plain`'s log magnitudes: every weight but the
    head's phase rows is `plain`'s, and the deviation head (with `deviations="head"`)
    starts at zero (every bin at its centre). Trained alone (`--keep-magnitudes`), it cannot
    disturb the magnitudes the trunk learned; with `deviations="peaks"` there is no head and
    the whole decoder goes on from `plain`'s magnitudes."""
    assert not plain.position_phase and sizes.get("position_phase")
    decoder = Decoder(**sizes)
    state = {k: v for k, v in plain.state_dict().items() if not k.startswith("head.")}
    # The plain head's rows are [A, parts=2, F]: part 0 the log magnitude, part 1 the phase.
    for name in ("weight", "bias"):
        rows = plain.head.state_dict()[name]
        state["head." + name] = rows.reshape(g.AUDIO_CHANNELS, 2, g.BINS, -1)[:, 0].reshape(
            g.AUDIO_CHANNELS * g.BINS, *rows.shape[1:])
    missing, unexpected = decoder.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("deviation_") for k in missing), (missing, unexpected)
    return decoder


def position_phase_sizes(deviations: str) -> dict:
    """The `Autoencoder` sizes that make its decoder a position-phase one taking its
    deviations from `deviations` (`autoencoder.DEVIATION_SOURCES`)."""
    sizes = {"dec_position_phase": True}
    if deviations != "head":  # the default: checkpoints from before the choice lack the key
        sizes["dec_deviations"] = deviations
    return sizes


class Autoencoder(nn.Module):
    """`sizes`: `enc_*` / `dec_*` keyword arguments of the encoder and decoder (a checkpoint
    stores them as `sizes`; none means the defaults, gm-tiny's shipped shapes)."""

    def __init__(self, **sizes):
        super().__init__()
        self.sizes = dict(sizes)
        enc = {k[4:]: v for k, v in sizes.items() if k.startswith("enc_")}
        self.encoder = Encoder(**enc)
        self.decoder = Decoder(**decoder_sizes(sizes))

    def set_latent_scale(self, mean, std):
        for part in (self.encoder, self.decoder):
            part.latent_mean.copy_(mean.reshape(-1, 1))
            part.latent_std.copy_(std.reshape(-1, 1))
