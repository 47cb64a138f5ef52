"""Play a model through latentd on a private JACK server (dummy backend) in the scenarios
docs/models.md reports, record each from the daemon's own output, and measure the sound.

    python3 tools/measure/model_report.py --latentd target/release/latentd \
        --model models/gm-tiny --heldout /work/data/heldout --out target/measure [--pictures docs/img]

Each scenario starts a fresh latentd (`--audio jack`, a 10 s loop, its own state folder),
records `--seconds` of output, stops it with SIGINT and measures the last whole loop with
`sound.py`: generation from tags alone (denoise 1, no source; the drums / nodrums pair on
`--drum-seeds` seeds, since a loop is one take per seed), reconstruction of heldout
clips the model never saw (denoise 0, next to the analytic built-in model on the same clip)
and covers (denoise 0.3 and 1 on a heldout source). Writes `report.json` (every run and the
ratios the issue asks for) and, with `--pictures`, spectrograms of four prompts.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import sound

LOOP_S = 10.0
# Every run is a fresh daemon (its own state folder) recording with `--record` from its
# start: the recorder is armed before the output's first period and the playhead starts at
# the loop's start, so the recording's first frame is loop position 0.
PLAYHEAD_START = 0
PROMPTS = {
    "drums": "pop piano bass drums",
    "nodrums": "pop piano bass nodrums",
    "bright": "bright pop synth drums",
    "dark": "dark pop synth drums",
    "tonal_piano": "solo piano slow nodrums calm",
    "tonal_strings": "classical strings slow nodrums",
    "tonal_organ": "organ jazz nodrums",
}
PICTURES = ["default", "tonal_strings", "bright", "dark"]
# The prompts with drums, whose beat strength (sound.py) the summary reports.
BEAT_RUNS = ["default", "drums", "bright", "dark"]


class Jack:
    def __init__(self, name: str):
        self.name = name
        self.proc = subprocess.Popen(["jackd", "--no-realtime", "-n", name, "-d", "dummy",
                                      "-r", "48000", "-p", "256"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        env = dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER="1")
        for _ in range(100):
            if subprocess.run(["jack_lsp"], env=env, capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        raise SystemExit("jackd (dummy) did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def play(args, jack: Jack, wav: Path, extra: list[str], seconds: float) -> str:
    state = tempfile.mkdtemp(prefix="latentd-measure-")
    env = dict(os.environ, JACK_DEFAULT_SERVER=jack.name, JACK_NO_START_SERVER="1",
               XDG_STATE_HOME=state, ORT_DYLIB_PATH=str(args.ort))
    cmd = [str(args.latentd), "--audio", "jack", "--client-name", "measure",
           "--osc", "127.0.0.1:0", "--oscquery-port", "0", "--record", str(wav),
           "--loop-seconds", str(LOOP_S)] + extra
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    # The dummy server may run behind the wall clock on a loaded machine: wait for the
    # recording to hold `seconds` of audio (float32 stereo), not for wall time.
    want = 64 + int(seconds * 48000) * 8
    deadline = time.time() + 6 * seconds
    while time.time() < deadline and proc.poll() is None:
        if wav.exists() and wav.stat().st_size >= want:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    if proc.returncode != 0:
        raise SystemExit(f"latentd {' '.join(extra)} exited {proc.returncode}:\n{out}")
    return out


def source_clip(heldout: Path, index: int, out: Path) -> Path:
    """A heldout clip looped to LOOP_S (the clips are 8 s), as PCM16 WAV."""
    audio, rate = sound.read_wav(heldout / "clips" / f"{index:05d}.wav")
    n = int(LOOP_S * rate)
    reps = int(np.ceil(n / len(audio)))
    looped = np.tile(audio, (reps, 1))[:n]
    pcm = (np.clip(looped, -1, 1) * 32767).astype("<i2")
    import wave
    with wave.open(str(out), "wb") as w:
        w.setnchannels(pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return out


def data_drums_ratio(data: Path, prompt: str) -> dict:
    """The drums / nodrums onset-rate ratio of the training clips in `data`
    (make_dataset's `clips.jsonl`) whose style is the one `prompt` names, measured as the
    model's runs are (`sound.onset_count` over each whole clip): what a model that follows
    its data shows for that pair of prompts."""
    rows = [json.loads(line) for line in (data / "clips.jsonl").read_text().splitlines()]
    styles = {row["style"] for row in rows} & set(prompt.split())
    if len(styles) != 1:
        raise SystemExit(f"--data: {prompt!r} names {len(styles)} of the data's styles, not one")
    style = styles.pop()
    rates = {True: [], False: []}
    for row in rows:
        if row["style"] == style:
            audio, rate = sound.read_wav(data / row["file"])
            rates[row["has_drums"]].append(sound.onset_count(audio, rate) * rate / len(audio))
    if not (rates[True] and rates[False]):
        raise SystemExit(f"--data: no {style} clips {'with' if not rates[True] else 'without'} drums")
    drums, nodrums = float(np.mean(rates[True])), float(np.mean(rates[False]))
    return {"style": style, "clips_drums": len(rates[True]), "clips_nodrums": len(rates[False]),
            "drums_onsets_per_s": drums, "nodrums_onsets_per_s": nodrums,
            "ratio": drums / max(nodrums, 1e-9)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latentd", type=Path, required=True)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--heldout", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ort", type=Path, default=Path(".ort/libonnxruntime.so").resolve())
    ap.add_argument("--seconds", type=float, default=3 * LOOP_S)
    ap.add_argument("--clips", type=int, default=4, help="heldout clips for reconstruction")
    ap.add_argument("--pictures", type=Path)
    ap.add_argument("--data", type=Path,
                    help="the training data (make_dataset's output): also report its own "
                         "drums / nodrums onset ratio for the prompts' style")
    ap.add_argument("--drum-seeds", type=int, default=4,
                    help="seeds the drums / nodrums ratio is measured on (0, 1, ...)")
    args = ap.parse_args()
    if args.pictures and importlib.util.find_spec("matplotlib") is None:
        # Say so now, not after the runs (minutes): the pictures are drawn last.
        ap.error("--pictures needs matplotlib (python3 -m pip install matplotlib)")
    if args.data and not (args.data / "clips.jsonl").is_file():
        ap.error(f"--data {args.data}: no clips.jsonl (make_dataset's output)")
    # Before the runs (minutes), so a --data that cannot answer fails at once.
    data_ratio = data_drums_ratio(args.data, PROMPTS["drums"]) if args.data else None
    args.out.mkdir(parents=True, exist_ok=True)
    model = ["--model", str(args.model)]
    jack = Jack(f"measure{os.getpid()}")
    runs = {}
    try:
        def run(name, extra, source=None):
            wav = args.out / f"{name}.wav"
            play(args, jack, wav, extra, args.seconds)
            runs[name] = sound.analyze(wav, source, LOOP_S, PLAYHEAD_START)
            print(json.dumps({name: runs[name]}), flush=True)

        run("default", model + ["--knob", "denoise=1"])
        for key, prompt in PROMPTS.items():
            run(key, model + ["--prompt", prompt, "--knob", "denoise=1"])
        # A loop is one take per seed (docs/engine.md), so the drums ratio is a seed's:
        # seed 0 is the runs above, the others are recorded here.
        for seed in range(1, args.drum_seeds):
            for key in ("drums", "nodrums"):
                run(f"{key}_seed{seed}", model + ["--prompt", PROMPTS[key], "--knob", "denoise=1",
                                                  "--knob", f"seed={seed}"])
        for i in range(args.clips):
            src = source_clip(args.heldout, 2 * i, args.out / f"source{i}.wav")
            run(f"recon{i}", model + ["--source", str(src), "--knob", "denoise=0"], src)
            run(f"recon{i}_analytic", ["--engine", "builtin-cpu", "--source", str(src),
                                        "--knob", "denoise=0"], src)
        src = args.out / "source0.wav"
        run("cover_0.3", model + ["--source", str(src), "--prompt", PROMPTS["tonal_strings"],
                                  "--knob", "denoise=0.3"], src)
        run("cover_1", model + ["--source", str(src), "--prompt", PROMPTS["tonal_strings"],
                                "--knob", "denoise=1"], src)
    finally:
        jack.stop()

    def mean(key, names):
        return float(np.mean([runs[n][key] for n in names]))

    def drums_ratio(suffix):
        return runs["drums" + suffix]["onsets_per_s"] / max(runs["nodrums" + suffix]["onsets_per_s"],
                                                           1e-9)

    recon = [f"recon{i}" for i in range(args.clips)]
    tonal = [k for k in PROMPTS if k.startswith("tonal")]
    sources = [sound.analyze(args.out / f"source{i}.wav", None, LOOP_S)
               for i in range(args.clips)]
    summary = {
        "reconstruction_log_mel_db": mean("log_mel_error_db", recon),
        "reconstruction_log_mel_db_analytic": mean("log_mel_error_db",
                                                   [r + "_analytic" for r in recon]),
        "drums_over_nodrums_onset_rate": drums_ratio(""),
        "drums_over_nodrums_onset_rate_by_seed": [drums_ratio(f"_seed{seed}" if seed else "")
                                                  for seed in range(args.drum_seeds)],
        "bright_over_dark_centroid": runs["bright"]["centroid_hz"] / runs["dark"]["centroid_hz"],
        "tonal_noise_frames": {k: runs[k]["noise_frames"] for k in tonal},
        "tonal_pitch_step_rate": {k: runs[k]["pitch_step_rate"] for k in tonal},
        "cover_chroma_correlation_0.3": runs["cover_0.3"]["chroma_correlation"],
        "cover_chroma_correlation_1": runs["cover_1"]["chroma_correlation"],
        "heldout_source_pitch_step_rate": float(np.mean([s["pitch_step_rate"]
                                                         for s in sources])),
        "beat_strength": {k: runs[k]["beat_strength"] for k in BEAT_RUNS},
        "heldout_source_beat_strength": [s["beat_strength"] for s in sources],
    }
    if data_ratio is not None:
        summary["data_drums_over_nodrums_onset_rate"] = data_ratio
    (args.out / "report.json").write_text(json.dumps({"summary": summary, "runs": runs},
                                                     indent=1))
    print(json.dumps(summary, indent=1))
    if args.pictures:
        for name in PICTURES:
            prompt = PROMPTS.get(name, "the bundle's default prompt")
            sound.spectrogram(args.out / f"{name}.wav", args.pictures / f"gm-tiny-{name}.png",
                              f"gm-tiny, {prompt!r}, denoise 1 (last {LOOP_S:.0f} s loop)",
                              LOOP_S)


if __name__ == "__main__":
    main()
