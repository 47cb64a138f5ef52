//! The bundle engine through the real daemon: `latentd --engine bundle --model DIR` plays a
//! random-weight `latentd-bundle/1` (written by `tools/bundles/make_test_bundle.py`, run on
//! ONNX Runtime through the library `scripts/setup.sh` installs) into a private JACK dummy
//! server; `/status.reply` names the bundle and its provider; other weights give another
//! sound; the same for a bundle whose decoder outputs an STFT (inverted by the host) and for
//! bundles in ACE-Step v1.5's own architecture written by tools/export-acestep; a timbre
//! reference is taken by a bundle with a timbre graph and refused by one without; a broken
//! bundle is one error line and exit 2.
//!
//! Skips (printing `SKIPPED: <why>`) without python3 + onnx or the runtime library, and fails
//! instead under `LATENTD_REQUIRE_ORT=1` (CI sets it).
//!
//! Threading: one private JACK server per test; the daemons find it through
//! `JACK_DEFAULT_SERVER` set on their own environment only.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::service_fixture::{Daemon, Launch, Osc};
use latentd_tests::JackServer;
use latentd_tests::test_bundles::{acestep_export, bundle, library};
use rosc::OscType;

const RATE: u32 = 48_000;
const PERIOD: usize = 256;
/// Audio recorded per run once the daemon plays.
const PLAY: Duration = Duration::from_secs(4);
/// The engine's first windows may take this long (bundle load, first ticks).
const START: Duration = Duration::from_secs(30);
/// Spectrum bands (log-spaced, 40 Hz to 16 kHz) of the sound profile.
const BANDS: usize = 48;
/// Frames per spectrum frame.
const FRAME: usize = 2048;

/// Runs the daemon on `server` with `model` for [`PLAY`] after it starts playing; returns
/// what it played (interleaved stereo at the server's rate) and its `/status` backend.
fn play(server: &JackServer, library: &Path, model: &Path) -> (Vec<f32>, String) {
    play_with_timbre(server, library, model, None)
}

/// [`play`], with `timbre` (stereo samples at [`RATE`]) committed as the timbre reference
/// first, when given.
fn play_with_timbre(
    server: &JackServer,
    library: &Path,
    model: &Path,
    timbre: Option<&[f32]>,
) -> (Vec<f32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("played.wav");
    let (mut daemon, osc) = start_playing(server, library, model, &dir, &record);
    if let Some(samples) = timbre {
        write_wav(&dir.path().join("timbre.wav"), samples);
        osc.send("/timbre", vec![OscType::String("timbre.wav".into())]);
        let done = osc.reply("/done", START).expect("no /done /timbre");
        assert_eq!(done.args[0], OscType::String("/timbre".into()), "{done:?}");
    }
    // Let the engine overwrite the silent loop it starts from.
    std::thread::sleep(PLAY);
    let backend = osc.status().backend;
    daemon.stop_cleanly();
    let mut reader = hound::WavReader::open(&record).unwrap();
    let samples: Vec<f32> = reader.samples::<f32>().map(Result::unwrap).collect();
    (samples, backend)
}

/// Starts the daemon on `server` with `model`, recording to `record`, its media folder `dir`;
/// returns once it plays, with an OSC client.
fn start_playing(
    server: &JackServer,
    library: &Path,
    model: &Path,
    dir: &tempfile::TempDir,
    record: &Path,
) -> (Daemon, Osc) {
    let mut launch = Launch::bundle_on_jack(server.name(), library, model, 8, record);
    launch
        .args
        .extend(["--media".into(), dir.path().display().to_string()]);
    let daemon = Daemon::start(dir, launch);
    daemon.wait_line("playing a loop of 384000 frames", START);
    let osc = Osc::new(daemon.osc_addr(START));
    (daemon, osc)
}

/// Writes interleaved stereo at [`RATE`] as a float WAV.
fn write_wav(path: &Path, stereo: &[f32]) {
    common::write_float_wav(path, 2, RATE, stereo);
}

/// Mean level in dB of [`BANDS`] log-spaced bands over the last 2 s of the left channel.
fn profile(stereo: &[f32]) -> Vec<f64> {
    let left: Vec<f64> = stereo.iter().step_by(2).map(|&s| f64::from(s)).collect();
    let tail = &left[left.len().saturating_sub(2 * RATE as usize)..];
    let freqs: Vec<f64> = (0..BANDS)
        .map(|b| 40.0 * (16_000.0f64 / 40.0).powf(b as f64 / (BANDS - 1) as f64))
        .collect();
    let mut power = vec![0.0; BANDS];
    let frames = tail.chunks_exact(FRAME).collect::<Vec<_>>();
    for frame in &frames {
        for (p, f) in power.iter_mut().zip(&freqs) {
            let w = 2.0 * std::f64::consts::PI * f / f64::from(RATE);
            let (mut re, mut im) = (0.0, 0.0);
            for (n, x) in frame.iter().enumerate() {
                let hann = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / FRAME as f64).cos();
                re += x * hann * (w * n as f64).cos();
                im += x * hann * (w * n as f64).sin();
            }
            *p += (re * re + im * im) / frames.len() as f64;
        }
    }
    power.iter().map(|p| 10.0 * (p + 1e-20).log10()).collect()
}

fn mean_abs_db(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len() as f64
}

fn rms(samples: &[f32]) -> f64 {
    (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len().max(1) as f64)
        .sqrt()
}

struct Bundles {
    library: PathBuf,
    seed0: tempfile::TempDir,
    seed7: tempfile::TempDir,
}

/// Two tiny bundles (seeds 0 and 7) whose decoder outputs `decoder` (`audio` or `stft`).
fn bundles(decoder: &str) -> Option<Bundles> {
    Some(Bundles {
        library: library()?,
        seed0: bundle(&["--preset", "tiny", "--seed", "0", "--decoder", decoder])?,
        seed7: bundle(&["--preset", "tiny", "--seed", "7", "--decoder", decoder])?,
    })
}

#[test]
fn a_bundle_plays_through_jack_and_its_weights_make_its_sound() {
    plays_and_its_weights_make_its_sound("audio");
}

#[test]
fn an_stft_bundle_plays_through_jack_and_its_weights_make_its_sound() {
    plays_and_its_weights_make_its_sound("stft");
}

fn plays_and_its_weights_make_its_sound(decoder: &str) {
    let Some(b) = bundles(decoder) else { return };
    let server = JackServer::start(RATE, PERIOD);

    let (first, backend) = play(&server, &b.library, b.seed0.path());
    assert!(
        backend.starts_with("bundle: tiny-random") && backend.contains("CPU"),
        "/status backend {backend:?}"
    );
    assert!(first.iter().all(|s| s.is_finite()), "non-finite samples");
    let tail = &first[first.len() - 2 * 2 * RATE as usize..];
    let level = rms(tail);
    assert!(level > 0.01, "the bundle played near silence: rms {level}");

    let (again, _) = play(&server, &b.library, b.seed0.path());
    let (other, _) = play(&server, &b.library, b.seed7.path());
    let (p_first, p_again, p_other) = (profile(&first), profile(&again), profile(&other));
    let same = mean_abs_db(&p_first, &p_again);
    let changed = mean_abs_db(&p_first, &p_other);
    eprintln!("spectral distance: same weights {same:.2} dB, other weights {changed:.2} dB");
    assert!(
        changed > 1.0 && changed > 3.0 * same,
        "other weights did not change the sound: {changed:.2} dB vs {same:.2} dB between two \
         runs of the same bundle"
    );
}

#[test]
fn an_acestep_export_plays_through_jack_and_its_weights_make_its_sound() {
    // ACE-Step v1.5's own model code (diffusers' transformer, condition encoder, audio
    // tokenizer, Oobleck VAE; transformers' Qwen3) at small widths with random weights,
    // exported by tools/export-acestep: the graphs latentd gets from a real checkpoint.
    let Some(library) = library() else { return };
    let Some(seed0) = acestep_export(0) else {
        return;
    };
    let seed7 = acestep_export(7).expect("the first export ran");
    let server = JackServer::start(RATE, PERIOD);
    let (first, backend) = play(&server, &library, seed0.path());
    assert!(
        backend.starts_with("bundle: acestep-tiny-random") && backend.contains("CPU"),
        "/status backend {backend:?}"
    );
    assert!(first.iter().all(|s| s.is_finite()), "non-finite samples");
    let level = rms(&first[first.len() - 2 * 2 * RATE as usize..]);
    assert!(level > 1e-4, "the export played silence: rms {level}");
    let (other, _) = play(&server, &library, seed7.path());
    let changed = mean_abs_db(&profile(&first), &profile(&other));
    eprintln!("spectral distance between the seeds' exports: {changed:.2} dB");
    assert!(
        changed > 1.0,
        "other weights did not change the sound: {changed:.2} dB"
    );

    // A timbre reference goes through the export's encoder and timbre graph (one row among
    // the caption's hundreds here, so its effect on random weights is small: the graphs
    // themselves are checked in tools/export-acestep/tests).
    let (timbred, _) = play_with_timbre(&server, &library, seed0.path(), Some(&buzz(2.0)));
    assert!(timbred.iter().all(|s| s.is_finite()), "non-finite samples");
    let moved = mean_abs_db(&profile(&first), &profile(&timbred));
    eprintln!("spectral distance with the timbre reference: {moved:.2} dB");
}

/// `seconds` of a bright stereo buzz (a 1760 Hz saw) at [`RATE`].
fn buzz(seconds: f32) -> Vec<f32> {
    (0..(seconds * RATE as f32) as usize)
        .flat_map(|i| {
            let v = 0.4 * (2.0 * (i as f32 * 1760.0 / RATE as f32).fract() - 1.0);
            [v, -v]
        })
        .collect()
}

#[test]
fn a_timbre_reference_is_taken_by_a_bundle_with_a_timbre_graph_and_refused_without() {
    // `/timbre FILE` on a bundle with a `[timbre]` graph is encoded and committed (`/done`,
    // the sound stays finite; that the rows move the DiT by timbre_strength is
    // engine/tests/onnx_model.rs's); on one without, it is `/fail` naming why, and the
    // daemon plays on.
    let Some(library) = library() else { return };
    let Some(with) = bundle(&["--preset", "tiny", "--timbre"]) else {
        return;
    };
    let without = bundle(&["--preset", "tiny"]).expect("the first bundle was written");
    let server = JackServer::start(RATE, PERIOD);
    let (timbred, backend) = play_with_timbre(&server, &library, with.path(), Some(&buzz(2.0)));
    assert!(timbred.iter().all(|s| s.is_finite()), "non-finite samples");
    assert!(rms(&timbred[timbred.len() / 2..]) > 0.01, "{backend}");

    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("played.wav");
    let (mut daemon, osc) = start_playing(&server, &library, without.path(), &dir, &record);
    write_wav(&dir.path().join("timbre.wav"), &buzz(1.0));
    osc.send("/timbre", vec![OscType::String("timbre.wav".into())]);
    let fail = osc.reply("/fail", START).expect("no /fail /timbre");
    assert_eq!(fail.args[0], OscType::String("/timbre".into()), "{fail:?}");
    let reason = format!("{:?}", fail.args[1]);
    assert!(reason.contains("takes no timbre reference"), "{reason}");
    assert!(osc.status().backend.starts_with("bundle: tiny-random"));
    daemon.stop_cleanly();
}

#[test]
fn a_broken_bundle_is_one_error_line_and_exit_2() {
    let Some(b) = bundles("audio") else { return };
    let broken = bundle(&["--preset", "tiny", "--fault", "dit-output-name"]).unwrap();
    let missing = b.seed0.path().join("no-such-bundle");
    let bad_rank = bundle(&["--preset", "tiny", "--fault", "dit-output-rank"]).unwrap();
    let stft = |fault| bundle(&["--preset", "tiny", "--decoder", "stft", "--fault", fault]);
    let stft_name = stft("stft-output-name").unwrap();
    let stft_bins = stft("stft-bins").unwrap();
    for (model, expect) in [
        (broken.path().to_path_buf(), "velocity"),
        (bad_rank.path().to_path_buf(), "velocity"),
        (missing, "no-such-bundle"),
        (stft_name.path().to_path_buf(), "`stft`: missing output"),
        (stft_bins.path().to_path_buf(), "axis 3 is 960"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut daemon = Daemon::start(
            &dir,
            Launch {
                env: vec![("ORT_DYLIB_PATH", b.library.display().to_string())],
                args: vec!["--model".into(), model.display().to_string()],
                ..Launch::default()
            },
        );
        let status = daemon
            .wait(Duration::from_secs(20))
            .expect("the daemon kept running with a broken bundle");
        std::thread::sleep(Duration::from_millis(50));
        let lines = daemon.lines();
        assert_eq!(status.code(), Some(2), "{lines:?}");
        let errors: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with("latentd: error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{lines:?}");
        assert!(
            errors[0].contains("model") && errors[0].contains(expect),
            "{:?} does not name {expect:?}",
            errors[0]
        );
    }
}
