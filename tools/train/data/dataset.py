"""Dataset generation: clip plan, seeds, tags, augmentation and the files on disk.

A dataset of N clips is N/2 cover groups: each group is one composition rendered twice
with other programs (and drum kit), so clips 2g and 2g+1 share `group` g and every note
event. Seeds: composition seeds of a training set lie in [0, HELDOUT_BASE), of a heldout
set in [HELDOUT_BASE, 2*HELDOUT_BASE), so evaluation music is never trained on.
Rendering fans out over `jobs` processes (one Renderer each); tags that depend on the
whole dataset (bright/dark) are decided in the parent after all clips are rendered.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import time
import wave
from collections import Counter
from multiprocessing import Pool

import numpy as np

from . import GENERATOR_VERSION
from .composer import (DRUM_CHANNEL, PARTS, WITHOUT_DRUMS, check_without_drums, compose, orchestrate,
                       solo_composition)
from .features import spectral_centroid
from .render import SAMPLE_RATE, Renderer, tinysoundfont_version
from .vocab import PROGRAM_FAMILY, TAGS, tempo_tag

# The command-line flag of each arrangement of the clips without drums (`compose`'s
# `without_drums`); `sparse` keeps the flag it was first recorded with.
WITHOUT_DRUMS_FLAGS = {"style": "", "sparse": " --sparse-without-drums", "held": " --without-drums held"}

HELDOUT_BASE = 1 << 40
SEED_STRIDE = 1 << 24  # groups per base seed
COVERS = 2  # renderings per composition
SOLO_P = 0.12  # share of groups rendered as one instrument (melody + chords only)
ENERGETIC_MIN = 1.5  # composition energy score at/above which a clip is `energetic`
CALM_MAX = 0.75  # ... at/below which it is `calm`
BRIGHT_QUANTILES = (1 / 3, 2 / 3)  # centroid below the first is `dark`, above the second `bright`

# Licence-checked soundfonts, known by content (SHA-256) so a copy anywhere (a GPU machine's
# carried folder) is accepted and nothing else is: hash -> (installed path, Debian package,
# licence). Only MIT-licensed GM fonts; never GPL ones.
SOUNDFONTS = {
    "916aaca6b0eb9f9083eb42399614acb2ff4ec72ce28dffff1814592a9696b479": (
        "/usr/share/sounds/sf3/MuseScore_General_Lite.sf3", "musescore-general-soundfont-small", "MIT"),
    "74594e8f4250680adf590507a306655a299935343583256f3b722c48a1bc1cb0": (
        "/usr/share/sounds/sf2/FluidR3_GM.sf2", "fluid-soundfont-gm", "MIT"),
}
DEFAULT_SOUNDFONTS = ["/usr/share/sounds/sf3/MuseScore_General_Lite.sf3"]


def soundfont_licence(path: str) -> tuple[str, str]:
    """(Debian package, licence) of a licence-checked soundfont at `path`, by its content;
    ValueError for a missing file or any other font."""
    if not os.path.exists(path):
        known = ", ".join(f"{p} (Debian package {pkg})" for p, pkg, _ in SOUNDFONTS.values())
        raise ValueError(f"soundfont {path} is missing (the licence-checked ones: {known})")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() not in SOUNDFONTS:
        names = sorted(os.path.basename(p) for p, _, _ in SOUNDFONTS.values())
        raise ValueError(f"soundfont {path} is not one of the licence-checked ones {names} "
                         f"(SHA-256 {digest.hexdigest()})")
    _, pkg, lic = SOUNDFONTS[digest.hexdigest()]
    return pkg, lic


def group_seed(base_seed: int, group: int, heldout: bool) -> int:
    """The composition seed of `group` in a dataset made with `base_seed`."""
    if not 0 <= base_seed < HELDOUT_BASE // SEED_STRIDE or not 0 <= group < SEED_STRIDE:
        raise ValueError(f"seed {base_seed} or group {group} out of range")
    return (HELDOUT_BASE if heldout else 0) + base_seed * SEED_STRIDE + group


def plan_clip(index: int, base_seed: int, seconds: float, heldout: bool, soundfonts: list,
              without_drums: str = "style"):
    """The composition, orchestration and augmentation of clip `index` (deterministic).

    `without_drums`: [`compose`]'s arrangement of the clips without drums."""
    group = index // COVERS
    variant = index % COVERS
    cseed = group_seed(base_seed, group, heldout)
    comp = compose(cseed, seconds, without_drums=without_drums)
    grng = random.Random(cseed * 7 + 1)
    solo = grng.random() < SOLO_P
    if solo:
        comp = solo_composition(comp)
    orch = None
    for v in range(variant + 1):
        orch = orchestrate(comp, cseed * 16 + v, avoid=orch, solo=solo)
    arng = random.Random(cseed * 16 + variant + 7_777)
    aug = {
        "gain_db": round(arng.uniform(-3.0, 3.0), 3),
        "width": round(arng.uniform(0.7, 1.3), 3),
        "tuning_cents": round(arng.uniform(-8.0, 8.0), 3),
        "pans": {str(ch): (64 if ch == PARTS["melody"] else 64 + arng.randint(-24, 24))
                 for ch in sorted(orch.programs)},
    }
    sf = soundfonts[grng.randrange(len(soundfonts))] if len(soundfonts) > 1 else soundfonts[0]
    return group, variant, comp, orch, aug, sf, solo


def score_tags(comp, orch, solo: bool) -> list:
    """Tags known from the score and programs (brightness is added from the audio later)."""
    tags = set(orch.families())
    tags.add(comp.style)
    tags.add(tempo_tag(comp.tempo))
    tags.add("major" if comp.mode == "major" else "minor")
    tags.add("drums" if comp.has_drums else "nodrums")
    if comp.energy >= ENERGETIC_MIN:
        tags.add("energetic")
    elif comp.energy <= CALM_MAX:
        tags.add("calm")
    if comp.melody_center <= 62:
        tags.add("low")
    elif comp.melody_center >= 72:
        tags.add("high")
    if solo:
        tags.add("solo")
    unknown = tags - set(TAGS)
    assert not unknown, f"tags outside the vocabulary: {unknown}"
    return sorted(tags)


def events_json(comp) -> str:
    """The clip's note events, canonical JSON (what determinism is checked on)."""
    return json.dumps([[n.start, n.dur, n.chan, n.key, n.vel] for n in comp.notes], separators=(",", ":"))


def augment(audio: np.ndarray, aug: dict) -> np.ndarray:
    """Stereo width, loudness normalisation to -20 dBFS RMS plus the gain jitter, peak guard."""
    mid = 0.5 * (audio[:, 0] + audio[:, 1])
    side = 0.5 * (audio[:, 0] - audio[:, 1]) * aug["width"]
    out = np.stack([mid + side, mid - side], axis=1)
    rms = float(np.sqrt(np.mean(out.astype(np.float64) ** 2)))
    if rms > 0:
        out *= 10 ** ((-20.0 + aug["gain_db"]) / 20) / rms
    peak = float(np.abs(out).max())
    if peak > 0.98:
        out *= 0.98 / peak
    return out


def write_wav(path: str, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """16-bit PCM stereo WAV, written under a temporary name and renamed."""
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2")
    tmp = path + ".tmp"
    with wave.open(tmp, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    os.replace(tmp, path)


_RENDERERS: dict = {}


def _renderer(sf_path: str) -> Renderer:
    if sf_path not in _RENDERERS:
        _RENDERERS[sf_path] = Renderer(sf_path)
    return _RENDERERS[sf_path]


def render_clip(index: int, base_seed: int, seconds: float, heldout: bool, soundfonts: list, out_dir: str,
                without_drums: str = "style"):
    """Render clip `index` to out_dir/clips/NNNNN.wav; return its record (without brightness)."""
    group, variant, comp, orch, aug, sf, solo = plan_clip(index, base_seed, seconds, heldout, soundfonts,
                                                          without_drums)
    audio = _renderer(sf).render(comp.notes, orch.programs, orch.kit, seconds,
                                 pans={int(k): v for k, v in aug["pans"].items()},
                                 tuning_cents=aug["tuning_cents"])
    audio = augment(audio, aug)
    name = f"{index:05d}"
    write_wav(os.path.join(out_dir, "clips", name + ".wav"), audio)
    ev = events_json(comp)
    with open(os.path.join(out_dir, "events", name + ".json"), "w") as f:
        f.write(ev + "\n")
    return {
        "file": f"clips/{name}.wav",
        "seconds": seconds,
        "tags": score_tags(comp, orch, solo),
        "group": group,
        "variant": variant,
        "style": comp.style,
        "tempo": comp.tempo,
        "key": comp.key_name,
        "mode": comp.mode,
        "programs": {str(ch): p for ch, p in sorted(orch.programs.items())},
        "instruments": {str(ch): PROGRAM_FAMILY[p] for ch, p in sorted(orch.programs.items())},
        "drum_kit": orch.kit,
        "seed": comp.seed,
        "soundfont": os.path.basename(sf),
        "has_drums": comp.has_drums,
        "drum_events": sum(1 for n in comp.notes if n.chan == DRUM_CHANNEL),
        "events": f"events/{name}.json",
        "events_sha256": hashlib.sha256(ev.encode()).hexdigest(),
        "augment": aug,
        "centroid_hz": round(spectral_centroid(audio, SAMPLE_RATE), 2),
    }


def _render_star(args):
    return render_clip(*args)


def brightness_thresholds(centroids) -> tuple:
    lo, hi = np.quantile(np.asarray(centroids, dtype=np.float64), BRIGHT_QUANTILES)
    return float(lo), float(hi)


def add_brightness(records: list, thresholds: tuple) -> None:
    lo, hi = thresholds
    for r in records:
        extra = ["dark"] if r["centroid_hz"] < lo else (["bright"] if r["centroid_hz"] > hi else [])
        r["tags"] = sorted(set(r["tags"]) | set(extra))


def _package_version(pkg: str) -> str:
    try:
        return subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True,
                              check=True).stdout.strip() or "unknown"
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def make_dataset(out_dir: str, clips: int, seconds: float, seed: int, jobs: int, heldout: bool,
                 soundfonts: list | None = None, brightness_from: str | None = None, log=sys.stderr,
                 without_drums: str = "style") -> dict:
    """Generate the dataset; return a summary (records, thresholds, elapsed seconds)."""
    soundfonts = soundfonts or DEFAULT_SOUNDFONTS
    licences = {sf: soundfont_licence(sf) for sf in soundfonts}
    group_seed(seed, (clips - 1) // COVERS, heldout)  # raises ValueError when out of range
    t0 = time.time()
    os.makedirs(os.path.join(out_dir, "clips"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "events"), exist_ok=True)
    check_without_drums(without_drums)  # before the workers start
    work = [(i, seed, seconds, heldout, soundfonts, out_dir, without_drums) for i in range(clips)]
    if jobs > 1:
        with Pool(jobs) as pool:
            records = pool.map(_render_star, work, chunksize=max(1, clips // (jobs * 8)))
    else:
        records = [_render_star(w) for w in work]
    if brightness_from:
        with open(os.path.join(brightness_from, "brightness.json")) as f:
            b = json.load(f)
        thresholds = (b["dark_below_hz"], b["bright_above_hz"])
    else:
        thresholds = brightness_thresholds([r["centroid_hz"] for r in records])
    add_brightness(records, thresholds)
    with open(os.path.join(out_dir, "clips.jsonl"), "w") as f:
        for r in records:
            f.write(json.dumps(r, sort_keys=True) + "\n")
    with open(os.path.join(out_dir, "tags.txt"), "w") as f:
        f.write("\n".join(TAGS) + "\n")
    with open(os.path.join(out_dir, "brightness.json"), "w") as f:
        json.dump({"dark_below_hz": thresholds[0], "bright_above_hz": thresholds[1],
                   "source": brightness_from or "this dataset"}, f, indent=1)
        f.write("\n")
    elapsed = time.time() - t0
    _write_provenance(out_dir, clips, seconds, seed, heldout, licences, thresholds, brightness_from, elapsed,
                      without_drums)
    return {"records": records, "thresholds": thresholds, "elapsed": elapsed}


def _write_provenance(out_dir, clips, seconds, seed, heldout, licences, thresholds, brightness_from, elapsed,
                      without_drums):
    soundfonts = list(licences)
    lo_seed = group_seed(seed, 0, heldout)
    hi_seed = group_seed(seed, max(0, (clips - 1) // COVERS), heldout)
    lines = [
        "# Provenance",
        "",
        f"- Generator: latentd tools/train/data version {GENERATOR_VERSION} (procedural composition written in",
        "  the project; no third-party music).",
        f"- Command: `python3 tools/train/make_dataset.py --out {out_dir} --clips {clips} --seconds {seconds:g}"
        f" --seed {seed}{' --heldout' if heldout else ''}"
        f"{' --brightness-from ' + brightness_from if brightness_from else ''}"
        f"{WITHOUT_DRUMS_FLAGS[without_drums]}"
        + "".join(f" --soundfont {sf}" for sf in soundfonts if soundfonts != DEFAULT_SOUNDFONTS) + "`",
        f"- Seed space: {'heldout' if heldout else 'training'}; composition seeds {lo_seed}..{hi_seed}"
        f" (training seeds < {HELDOUT_BASE}, heldout seeds >= {HELDOUT_BASE}).",
        f"- Clips: {clips} x {seconds:g} s, 48 kHz stereo 16-bit PCM; {COVERS} renderings per composition (`group`).",
        f"- Clips without drums: {WITHOUT_DRUMS[without_drums]}.",
        f"- Renderer: tinysoundfont {tinysoundfont_version()} (PyPI, MIT), numpy {np.__version__},"
        f" Python {sys.version.split()[0]}. Note events and tags are deterministic; audio may differ"
        " with another renderer version.",
        f"- Brightness thresholds (spectral centroid): dark < {thresholds[0]:.1f} Hz, bright > {thresholds[1]:.1f} Hz"
        f" ({'from ' + brightness_from if brightness_from else 'terciles of this dataset'}).",
        f"- Generation time: {elapsed:.1f} s.",
        "",
        "## Soundfonts",
        "",
    ]
    for sf in soundfonts:
        pkg, lic = licences[sf]
        lines.append(f"- `{os.path.basename(sf)}` ({sf}): Debian package `{pkg}` version {_package_version(pkg)},"
                     f" licence {lic} (see /usr/share/doc/{pkg}/copyright).")
    with open(os.path.join(out_dir, "PROVENANCE.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def tag_stats(records: list) -> str:
    """Count per tag (every vocabulary tag, zeros included), then per style."""
    counts = Counter(t for r in records for t in r["tags"])
    width = max(len(t) for t in TAGS)
    out = [f"tag stats over {len(records)} clips:"]
    out += [f"  {t:<{width}} {counts.get(t, 0):5d}" for t in TAGS]
    return "\n".join(out)

