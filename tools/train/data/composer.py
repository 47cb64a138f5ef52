"""Deterministic procedural composer: seed -> note events, programs and score tags.

`compose(seed, seconds)` picks a style, key, mode, tempo, chord progression, bass line,
melody (scale-constrained, phrase-structured), optional pad/arpeggio and a drum pattern,
all from `random.Random(seed)` so the same arguments give the same events on every
machine. `orchestrate(comp, seed)` chooses the GM programs (and drum kit) separately, so a
cover (same composition, other instruments) shares every note event with its source.
Pure functions, no I/O, no global state.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .vocab import DRUM_KITS, FAMILY_PROGRAMS, PROGRAM_FAMILY

DRUM_CHANNEL = 9  # GM channel 10
# Pitched parts and their MIDI channels.
PARTS = {"melody": 0, "chords": 1, "bass": 2, "arp": 3}
# How the clips without drums are arranged (`compose`'s `without_drums`), densest first.
WITHOUT_DRUMS = {
    "style": "their style's own rhythm section",
    "sparse": "arranged sparse (held chords, half-note bass, no arpeggio, long melody notes)",
    "held": "arranged held (held chords, the bass held through each chord, no arpeggio, melody"
            " notes of two beats or more)",
}

SCALES = {
    "major": [0, 2, 4, 5, 7, 9, 11],
    "minor": [0, 2, 3, 5, 7, 8, 10],
    "dorian": [0, 2, 3, 5, 7, 9, 10],
}
KEY_NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]


@dataclass(frozen=True)
class Note:
    """One note: start and length in seconds, MIDI channel, key, velocity."""

    start: float
    dur: float
    chan: int
    key: int
    vel: int


@dataclass
class Style:
    """What a style allows: tempo range, modes, progressions, parts and their families."""

    tempo: tuple
    modes: list
    progressions: list  # scale degrees (0-based), one chord per bar (or half bar if split)
    drums_p: float
    density: tuple  # melody notes per beat, (min, max)
    melody: list  # families
    chords: list
    bass: list
    pad_p: float
    arp_p: float
    sevenths: bool = False
    chord_rhythm: str = "sustain"  # sustain | quarters | eighths | offbeat | comp
    bass_rhythm: str = "roots"  # roots | eighths | offbeat | walking | sparse
    kits: list = field(default_factory=lambda: ["standard"])
    split: bool = False  # two chords per bar


STYLES = {
    "ambient": Style((60, 84), ["major", "minor", "dorian"], [[0, 5, 3, 4], [0, 3, 0, 4], [0, 5, 2, 3]],
                     0.15, (0.25, 0.6), ["pad", "bells", "flute", "strings", "choir", "epiano"],
                     ["pad", "strings", "choir"], ["bass", "pad"], 0.6, 0.3, False, "sustain", "sparse",
                     ["room", "standard"]),
    "pop": Style((90, 128), ["major", "minor"], [[0, 4, 5, 3], [5, 3, 0, 4], [0, 5, 3, 4], [0, 3, 4, 3]],
                 0.8, (0.8, 1.6), ["piano", "synth", "guitar", "flute", "epiano", "bells"],
                 ["piano", "guitar", "epiano", "pad"], ["bass"], 0.3, 0.3, False, "quarters", "eighths",
                 ["standard", "room"]),
    "rock": Style((100, 160), ["major", "minor"], [[0, 6, 3, 0], [0, 3, 4, 3], [0, 5, 3, 4], [5, 3, 0, 4]],
                  0.9, (0.8, 1.6), ["guitar", "organ", "synth", "brass"], ["guitar", "organ", "piano"],
                  ["bass"], 0.1, 0.1, False, "eighths", "eighths", ["power", "standard", "room"]),
    "jazz": Style((80, 170), ["major", "minor", "dorian"], [[1, 4, 0, 0], [1, 4, 0, 5], [0, 5, 1, 4]],
                  0.75, (1.0, 2.2), ["sax", "piano", "brass", "flute", "guitar"], ["piano", "epiano", "guitar"],
                  ["bass"], 0.1, 0.0, True, "comp", "walking", ["jazz", "brush"]),
    "techno": Style((124, 140), ["minor", "dorian"], [[0, 0, 5, 5], [0, 0, 0, 3], [0, 6, 5, 6]],
                    1.0, (0.8, 2.0), ["synth", "bells"], ["pad", "synth", "organ"], ["bass"],
                    0.5, 0.6, False, "offbeat", "offbeat", ["electronic", "tr808"]),
    "house": Style((118, 128), ["minor", "major", "dorian"], [[0, 5, 3, 4], [1, 4, 0, 5], [0, 3, 0, 3]],
                   1.0, (0.6, 1.4), ["piano", "synth", "epiano", "organ"], ["piano", "organ", "epiano", "pad"],
                   ["bass"], 0.3, 0.4, True, "offbeat", "offbeat", ["electronic", "tr808", "standard"]),
    "hiphop": Style((70, 98), ["minor", "dorian"], [[0, 5, 3, 4], [0, 0, 5, 4], [0, 3, 5, 4]],
                    0.95, (0.5, 1.2), ["piano", "epiano", "bells", "strings", "flute", "synth"],
                    ["epiano", "piano", "pad", "strings"], ["bass"], 0.3, 0.2, True, "comp", "sparse",
                    ["tr808", "standard", "electronic"]),
    "classical": Style((60, 140), ["major", "minor"], [[0, 3, 4, 0], [0, 5, 1, 4], [0, 4, 5, 2, 3, 0, 3, 4]],
                       0.0, (0.8, 2.0), ["piano", "strings", "flute", "brass", "choir"],
                       ["strings", "piano", "organ", "choir"], ["strings", "bass"], 0.2, 0.4, False,
                       "sustain", "roots"),
    "folk": Style((80, 140), ["major", "dorian", "minor"], [[0, 3, 0, 4], [0, 4, 5, 3], [0, 6, 3, 0]],
                  0.4, (0.8, 1.6), ["flute", "guitar", "strings", "piano"], ["guitar", "piano"], ["bass"],
                  0.1, 0.4, False, "quarters", "roots", ["room", "brush"]),
    "lofi": Style((70, 92), ["minor", "dorian", "major"], [[1, 4, 0, 5], [0, 5, 1, 4], [3, 2, 1, 0]],
                  0.85, (0.4, 1.0), ["epiano", "piano", "guitar", "sax", "flute", "bells"],
                  ["epiano", "piano", "guitar", "pad"], ["bass"], 0.3, 0.1, True, "comp", "sparse",
                  ["brush", "room", "jazz"]),
}

# 16-step drum grids per style: instrument key -> step string ('x' hit, 'o' soft hit).
KICK, SNARE, CLAP, RIM, HAT, OHAT, RIDE, SHAKER, TOM = 36, 38, 39, 37, 42, 46, 51, 70, 45
DRUM_PATTERNS = {
    "ambient": [{RIDE: "x...x...x...x...", KICK: "x...............", RIM: "........o......."}],
    "pop": [{KICK: "x.......x.x.....", SNARE: "....x.......x...", HAT: "x.x.x.x.x.x.x.x."},
            {KICK: "x..x....x.......", CLAP: "....x.......x...", HAT: "xoxoxoxoxoxoxoxo"}],
    "rock": [{KICK: "x.......x.x.....", SNARE: "....x.......x...", HAT: "x.x.x.x.x.x.x.x."},
             {KICK: "x.x.....x.x.....", SNARE: "....x.......x...", RIDE: "x.x.x.x.x.x.x.x."}],
    "jazz": [{RIDE: "x..ox..ox..ox..o", HAT: "....x.......x...", KICK: "o.......o......."}],
    "techno": [{KICK: "x...x...x...x...", OHAT: "..x...x...x...x.", CLAP: "....x.......x...",
                HAT: "xxxxxxxxxxxxxxxx"},
               {KICK: "x...x...x...x...", HAT: "..x...x...x...x.", RIM: "...x..x....x..x."}],
    "house": [{KICK: "x...x...x...x...", OHAT: "..x...x...x...x.", CLAP: "....x.......x...",
               SHAKER: "xoxoxoxoxoxoxoxo"}],
    "hiphop": [{KICK: "x......x..x.....", SNARE: "....x.......x...", HAT: "x.x.x.x.x.x.x.x."},
               {KICK: "x.........x..x..", CLAP: "....x.......x...", HAT: "xxx.x.xxx.x.x.xx"}],
    "classical": [{TOM: "x.......x......."}],
    "folk": [{KICK: "x.......x.......", RIM: "....x.......x...", SHAKER: "x.x.x.x.x.x.x.x."}],
    "lofi": [{KICK: "x......x..x.....", SNARE: "....x.......x...", HAT: "x.xox.x.x.xox.x."}],
}


@dataclass
class Composition:
    """A composed clip: note events (drums on DRUM_CHANNEL) plus the score-level facts."""

    seed: int
    style: str
    tempo: float
    key: int  # pitch class of the tonic
    mode: str
    has_drums: bool
    parts: dict  # part name -> family list it may use (from the style)
    melody_center: int
    notes: list  # [Note], sorted
    seconds: float
    energy: float

    @property
    def key_name(self) -> str:
        return KEY_NAMES[self.key]


@dataclass
class Orchestration:
    """The GM programs per channel and the drum kit of one rendering."""

    programs: dict  # channel -> GM program (0-based)
    kit: str | None

    def families(self) -> list:
        return sorted({PROGRAM_FAMILY[p] for p in self.programs.values()})


def _chord(scale_pcs, root_deg, sevenths):
    degs = [root_deg, root_deg + 2, root_deg + 4] + ([root_deg + 6] if sevenths else [])
    return [scale_pcs[d % 7] + 12 * (d // 7) for d in degs]  # semitones above the tonic


def check_without_drums(without_drums: str):
    """Raise ValueError unless `without_drums` names an arrangement (`WITHOUT_DRUMS`)."""
    if without_drums not in WITHOUT_DRUMS:
        raise ValueError(f"without_drums {without_drums!r}: one of {', '.join(WITHOUT_DRUMS)}")


def compose(seed: int, seconds: float = 8.0, drums: bool | None = None, style: str | None = None,
            without_drums: str = "style") -> Composition:
    """Compose one clip of `seconds` from `seed`. `drums`/`style` force a choice (tests, covers).

    `without_drums` (a key of `WITHOUT_DRUMS`) arranges the clips without drums: `style` is
    how gm-tiny's first data was made (pop's quarter-note chords and eighth-note bass);
    `sparse` is how a band plays when the drums drop out (a breakdown, a ballad verse);
    `held` is sparser still.
    The random draws are the same for `style` and `sparse`, so every clip with drums, and
    every choice of key, tempo and progression, stays as it was under all three.
    """
    check_without_drums(without_drums)
    rng = random.Random(seed)
    style_name = style or rng.choice(sorted(STYLES))
    st = STYLES[style_name]
    tempo = float(rng.randint(*st.tempo))
    tonic = rng.randrange(12)
    mode = rng.choice(st.modes)
    has_drums = rng.random() < st.drums_p
    if drums is not None:
        has_drums = drums
    sparse = without_drums != "style" and not has_drums
    held = without_drums == "held" and not has_drums
    scale = SCALES[mode]
    beat = 60.0 / tempo
    bar = 4 * beat
    n_bars = int(seconds / bar) + 2
    prog = rng.choice(st.progressions)
    chords_per_bar = 2 if (st.split and tempo < 100 and rng.random() < 0.3) else 1
    chord_len = bar / chords_per_bar
    chord_seq = [prog[i % len(prog)] for i in range(n_bars * chords_per_bar)]
    sevenths = st.sevenths or rng.random() < 0.15
    density = rng.uniform(*st.density)
    base = 48 + tonic  # tonic in octave 3
    notes: list[Note] = []

    def add(start, dur, chan, key, vel):
        if start < seconds and 0 <= key < 128:
            notes.append(Note(round(start, 6), round(max(0.02, min(dur, seconds - start)), 6), chan,
                              int(key), int(max(1, min(127, vel)))))

    use_pad = rng.random() < st.pad_p
    use_arp = rng.random() < st.arp_p and not sparse
    chord_rhythm = "sustain" if sparse else st.chord_rhythm
    # Chords (channel 1).
    ch = PARTS["chords"]
    for i, deg in enumerate(chord_seq):
        t0 = i * chord_len
        voicing = [base + 12 + s for s in _chord(scale, deg, sevenths)]
        while voicing[-1] > base + 30:
            voicing = [k - 12 for k in voicing]
        if chord_rhythm == "sustain" or use_pad:
            hits = [(0.0, chord_len * 0.98)]
        elif chord_rhythm == "quarters":
            hits = [(b * beat, beat * 0.9) for b in range(int(chord_len / beat))]
        elif chord_rhythm == "eighths":
            hits = [(b * beat / 2, beat * 0.45) for b in range(int(2 * chord_len / beat))]
        elif chord_rhythm == "offbeat":
            hits = [(b * beat + beat / 2, beat * 0.35) for b in range(int(chord_len / beat))]
        else:  # comp: syncopated, varied per bar
            pos = sorted(rng.sample([0, 1, 1.5, 2, 2.5, 3, 3.5], 3))
            hits = [(p * beat, beat * 0.8) for p in pos if p * beat < chord_len]
        for off, dur in hits:
            for k in voicing:
                add(t0 + off, dur, ch, k, rng.randint(58, 78))
    # Arpeggio (channel 3).
    if use_arp:
        ch = PARTS["arp"]
        step = beat / (4 if tempo < 110 else 2)
        pattern = rng.choice([[0, 1, 2, 1], [0, 1, 2, 3], [0, 2, 1, 2], [2, 1, 0, 1]])
        for i, deg in enumerate(chord_seq):
            tones = [base + 24 + s for s in _chord(scale, deg, True)]
            n = int(chord_len / step)
            for j in range(n):
                add(i * chord_len + j * step, step * 0.9, ch, tones[pattern[j % 4]], rng.randint(50, 70))
    # Bass (channel 2).
    ch = PARTS["bass"]
    bass_base = base - 12 if base - 12 >= 36 else base
    for i, deg in enumerate(chord_seq):
        t0 = i * chord_len
        root = bass_base + scale[deg % 7]
        fifth = bass_base + _chord(scale, deg, False)[2]
        r = "roots" if sparse and st.bass_rhythm != "sparse" else st.bass_rhythm
        if held:
            add(t0, chord_len * 0.98, ch, root, 90)
        elif r == "roots":
            for b in range(int(chord_len / beat) // 2):
                add(t0 + 2 * b * beat, 1.9 * beat, ch, root if b % 2 == 0 else fifth, 90)
        elif r == "eighths":
            for b in range(int(2 * chord_len / beat)):
                add(t0 + b * beat / 2, beat * 0.45, ch, root, 85 + 10 * (b % 2 == 0))
        elif r == "offbeat":
            for b in range(int(chord_len / beat)):
                add(t0 + b * beat + beat / 2, beat * 0.4, ch, root, 95)
        elif r == "walking":
            nxt = bass_base + scale[chord_seq[(i + 1) % len(chord_seq)] % 7]
            for b in range(int(chord_len / beat)):
                if b == 0:
                    k = root
                elif b == int(chord_len / beat) - 1:
                    k = nxt + rng.choice([-1, 1, 2])
                else:
                    k = bass_base + scale[(deg + rng.choice([1, 2, 4])) % 7]
                add(t0 + b * beat, beat * 0.9, ch, k, 88)
        else:  # sparse
            add(t0, chord_len * 0.7, ch, root, 92)
            if rng.random() < 0.5:
                add(t0 + chord_len * 0.625, beat * 0.8, ch, root + rng.choice([0, 12, 7]), 80)
    # Melody (channel 0): two-bar motifs, repeated with variation, chord tones on strong beats.
    ch = PARTS["melody"]
    center = rng.choice([60, 64, 67, 72, 76])
    slow = tempo < 90 or style_name in ("ambient",) or sparse
    durs_beats = [2.0, 3.0, 4.0] if held else [2.0, 1.5, 1.0, 3.0, 4.0] if slow else ([1.0, 0.5, 0.5, 0.25, 1.5] if density > 1.2 else
                                                         [1.0, 0.5, 2.0, 1.5])
    scale_keys = [k for k in range(center - 14, center + 15) if (k - tonic) % 12 in scale]

    def motif(length_beats):
        out, t = [], 0.0
        while t < length_beats:
            if held and length_beats - t < 2.0:
                break  # a rest to the phrase's end rather than a short note
            d = rng.choice(durs_beats)
            if rng.random() < 0.15 * (1.5 - min(density, 1.4)):
                t += d  # rest
                continue
            out.append((t, min(d, length_beats - t)))
            t += d
        return out

    phrase_beats = 8
    motifs = [motif(phrase_beats) for _ in range(2)]
    idx = scale_keys.index(min(scale_keys, key=lambda k: abs(k - center)))
    n_phrases = int(n_bars * 4 / phrase_beats) + 1
    for p in range(n_phrases):
        rhythm = motifs[[0, 0, 1, 0][p % 4]]
        for j, (tb, db) in enumerate(rhythm):
            t = p * phrase_beats * beat + tb * beat
            chord_i = min(int(t / chord_len), len(chord_seq) - 1)
            chord_pcs = {(tonic + s) % 12 for s in _chord(scale, chord_seq[chord_i], sevenths)}
            idx = max(0, min(len(scale_keys) - 1, idx + rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3])))
            if tb % 2 == 0:  # strong beat: snap to nearest chord tone
                cands = [i for i, k in enumerate(scale_keys) if k % 12 in chord_pcs]
                if cands:
                    idx = min(cands, key=lambda i: abs(i - idx))
            if abs(scale_keys[idx] - center) > 9:
                idx += -1 if scale_keys[idx] > center else 1
            last = j == len(rhythm) - 1
            add(t, db * beat * (0.98 if last or slow else 0.85), ch, scale_keys[idx],
                rng.randint(80, 105) - (10 if slow else 0))
    # Drums.
    if has_drums:
        pattern = rng.choice(DRUM_PATTERNS[style_name])
        step = beat / 4
        swing = 0.33 * step if style_name in ("jazz", "lofi", "hiphop") and rng.random() < 0.7 else 0.0
        for b in range(n_bars):
            for inst, steps in sorted(pattern.items()):
                for s, c in enumerate(steps):
                    if c == ".":
                        continue
                    t = b * bar + s * step + (swing if s % 2 else 0.0)
                    add(t, step, DRUM_CHANNEL, inst, (100 if c == "x" else 64) + rng.randint(-8, 8))
            if b % 4 == 3 and style_name in ("rock", "pop") and rng.random() < 0.5:
                add(b * bar + 15 * step, step, DRUM_CHANNEL, 49, 100)  # crash lead-in
    notes.sort(key=lambda n: (n.start, n.chan, n.key))
    energy = (tempo / 120.0) * density * (1.5 if has_drums else 0.7) * (1.2 if chord_rhythm in ("eighths", "offbeat") else 1.0)
    return Composition(seed, style_name, tempo, tonic, mode, has_drums,
                       {"melody": st.melody, "chords": ["pad"] if use_pad else st.chords, "bass": st.bass,
                        **({"arp": ["synth", "bells", "piano", "guitar"]} if use_arp else {})},
                       center, notes, seconds, energy)


def orchestrate(comp: Composition, seed: int, avoid: Orchestration | None = None,
                solo: bool = False) -> Orchestration:
    """Choose GM programs for `comp`'s parts from the style's families (and a drum kit).

    `avoid`: another orchestration of the same composition; every part gets another program.
    `solo`: every pitched part plays one instrument (a "solo piano" rendering).
    """
    rng = random.Random(seed)
    used = sorted({n.chan for n in comp.notes if n.chan != DRUM_CHANNEL})
    by_chan = {PARTS[p]: fams for p, fams in comp.parts.items()}
    programs = {}
    solo_prog = rng.choice(FAMILY_PROGRAMS[rng.choice(["piano", "piano", "epiano", "guitar"])])
    for chan in used:
        if solo:
            programs[chan] = solo_prog
            continue
        for _ in range(20):
            fam = rng.choice(by_chan[chan])
            prog = rng.choice(FAMILY_PROGRAMS[fam])
            if avoid is None or avoid.programs.get(chan) != prog:
                break
        programs[chan] = prog
    if solo and avoid is not None and all(avoid.programs.get(c) == solo_prog for c in used):
        alt = [p for f in ("piano", "epiano", "guitar") for p in FAMILY_PROGRAMS[f] if p != solo_prog]
        programs = {c: alt[seed % len(alt)] for c in used}
    kit = None
    if comp.has_drums:
        kits = STYLES[comp.style].kits
        kit = rng.choice(kits)
        if avoid is not None and len(kits) > 1 and kit == avoid.kit:
            kit = rng.choice([k for k in kits if k != avoid.kit])
    assert kit is None or kit in DRUM_KITS
    return Orchestration(programs, kit)


def solo_composition(comp: Composition) -> Composition:
    """The same composition reduced to melody + chords (for `solo` renderings): no bass, arp, drums."""
    keep = {PARTS["melody"], PARTS["chords"]}
    notes = [n for n in comp.notes if n.chan in keep]
    return Composition(comp.seed, comp.style, comp.tempo, comp.key, comp.mode, False,
                       {k: v for k, v in comp.parts.items() if k in ("melody", "chords")},
                       comp.melody_center, notes, comp.seconds, comp.energy * 0.6)
