"""latentd training-data generator: procedural music, rendered with GM soundfonts.

Modules: `vocab` (the fixed tag vocabulary and GM program families), `composer`
(deterministic procedural compositions as note events), `render` (offline tinysoundfont
rendering at 48 kHz stereo), `features` (spectral centroid and onset count of rendered
audio), `dataset` (clip generation, tags, WAV/JSONL/provenance output). Pure Python +
numpy; single-threaded per process (the dataset module fans out over processes).
"""

GENERATOR_VERSION = "1.2.0"  # 1.1: --sparse-without-drums; 1.2: --without-drums held
