"""The fixed tag vocabulary and the General MIDI program families it names.

Written once here; `tags.txt` in every dataset is this list. Every tag is one lowercase
token, so a prompt like "bright fast drums" is three tags. Constants only, no state.
"""

# Instrument families -> the GM programs (0-based) the composer uses for each.
FAMILY_PROGRAMS = {
    "piano": [0, 1, 2],
    "epiano": [4, 5],
    "organ": [16, 17, 19],
    "guitar": [24, 25, 26, 27, 29, 30],
    "bass": [32, 33, 34, 35, 36, 38, 39],
    "strings": [40, 42, 48, 49],
    "brass": [56, 57, 61],
    "sax": [64, 65, 66],
    "flute": [72, 73, 75],
    "synth": [80, 81, 84],
    "pad": [88, 89, 90, 91, 94, 95],
    "bells": [8, 9, 10, 11, 14],
    "choir": [52, 53],
}
PROGRAM_FAMILY = {p: fam for fam, progs in FAMILY_PROGRAMS.items() for p in progs}

STYLES = ["ambient", "pop", "rock", "jazz", "techno", "house", "hiphop", "classical", "folk", "lofi"]
TEMPO_TAGS = ["slow", "medium", "fast"]  # < 90, 90..130, > 130 BPM
MODE_TAGS = ["major", "minor"]  # dorian counts as minor
ENERGY_TAGS = ["calm", "energetic"]
DRUM_TAGS = ["drums", "nodrums"]
REGISTER_TAGS = ["low", "high"]  # the melody's register
BRIGHTNESS_TAGS = ["bright", "dark"]  # from the rendered audio, relative to the dataset
TEXTURE_TAGS = ["solo"]  # one pitched instrument, no drums

TAGS = (
    list(FAMILY_PROGRAMS)
    + STYLES
    + TEMPO_TAGS
    + MODE_TAGS
    + ENERGY_TAGS
    + DRUM_TAGS
    + REGISTER_TAGS
    + BRIGHTNESS_TAGS
    + TEXTURE_TAGS
)
assert len(TAGS) == len(set(TAGS)), "tag vocabulary has duplicates"
assert all(t.isalpha() and t.islower() for t in TAGS)

# GM drum kits (bank 128 presets) used for drum channels.
DRUM_KITS = {"standard": 0, "room": 8, "power": 16, "electronic": 24, "tr808": 25, "jazz": 32, "brush": 40}


def tempo_tag(bpm: float) -> str:
    """The tempo bucket of a tempo in BPM."""
    if bpm < 90:
        return "slow"
    if bpm <= 130:
        return "medium"
    return "fast"
