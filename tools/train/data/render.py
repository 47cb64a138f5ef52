"""Offline rendering of note events with tinysoundfont at 48 kHz stereo.

`Renderer` loads one soundfont once (a couple of seconds for the sf3) and renders any
number of clips: events are applied at sample-accurate times by generating audio in
segments between them (capped at CHUNK frames). No audio device is opened. One Renderer
per process; not thread-safe (tinysoundfont's synth is stateful).
"""

from __future__ import annotations

import numpy as np
import tinysoundfont

from .composer import DRUM_CHANNEL
from .vocab import DRUM_KITS

SAMPLE_RATE = 48000
CHUNK = 4096


class Renderer:
    """A tinysoundfont synth with one soundfont loaded."""

    def __init__(self, sf_path: str, sample_rate: int = SAMPLE_RATE):
        self.sf_path = sf_path
        self.sample_rate = sample_rate
        self.synth = tinysoundfont.Synth(gain=-3.0, samplerate=sample_rate)
        self.sfid = self.synth.sfload(sf_path)

    def render(self, notes, programs: dict, kit: str | None, seconds: float,
               pans: dict | None = None, tuning_cents: float = 0.0) -> np.ndarray:
        """Render `notes` (composer.Note) for exactly `seconds`: float32 array (frames, 2)."""
        synth = self.synth
        synth.notes_off()
        synth.sounds_off()
        # Flush any release tail left by a previous clip.
        synth.generate_simple(CHUNK)
        for chan in range(16):
            synth.control_change(chan, 121, 0)  # reset controllers
        for chan, prog in programs.items():
            synth.program_select(chan, self.sfid, 0, prog)
            synth.set_tuning(chan, tuning_cents / 100.0)
        if kit is not None:
            synth.program_select(DRUM_CHANNEL, self.sfid, 128, DRUM_KITS[kit], is_drums=True)
        for chan, pan in (pans or {}).items():
            synth.control_change(chan, 10, int(pan))
        frames = int(round(seconds * self.sample_rate))
        events = []  # (frame, order, kind, chan, key, vel): note-offs before note-ons at one frame
        for n in notes:
            on = int(round(n.start * self.sample_rate))
            off = int(round((n.start + n.dur) * self.sample_rate))
            if on < frames:
                events.append((on, 1, n.chan, n.key, n.vel))
                events.append((min(off, frames), 0, n.chan, n.key, 0))
        events.sort()
        out = np.zeros((frames, 2), dtype=np.float32)
        pos = 0
        i = 0
        while pos < frames:
            while i < len(events) and events[i][0] <= pos:
                _, kind, chan, key, vel = events[i]
                if kind:
                    synth.noteon(chan, key, vel)
                else:
                    synth.noteoff(chan, key)
                i += 1
            nxt = events[i][0] if i < len(events) else frames
            n = max(1, min(nxt - pos, CHUNK, frames - pos))
            buf = synth.generate_simple(n)
            out[pos:pos + n] = np.frombuffer(buf, dtype=np.float32).reshape(n, 2)
            pos += n
        synth.notes_off()
        return out


def tinysoundfont_version() -> str:
    """The installed tinysoundfont version (recorded in PROVENANCE.md)."""
    from importlib.metadata import version

    return version("tinysoundfont")
