//! The model latentd ships, `models/gm-tiny` (trained by `tools/train/gm_tiny`, docs/models.md),
//! through the real daemon: it loads on ONNX Runtime's CPU provider, starts on the bundle's own
//! default prompt, plays music (finite, at a sane level, not a noise wash) into a private JACK
//! dummy server, reports a prompt's unknown words in `/done /prompt`, and names the knobs it
//! cannot honour (timbre and structure: it takes no references) in `/status.reply` and OSCQuery.
//!
//! Skips (printing `SKIPPED: <why>`) without the runtime library, and fails instead under
//! `LATENTD_REQUIRE_ORT=1` (CI sets it).
//!
//! Threading: one private JACK server; the daemon finds it through `JACK_DEFAULT_SERVER` set on
//! its own environment only.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::service_fixture::{Daemon, Launch, Osc};
use latentd_tests::JackServer;
use latentd_tests::test_bundles::{library, repo_root};
use rosc::OscType;

const RATE: u32 = 48_000;
/// Long enough for the engine to overwrite the silent loop it starts from.
const PLAY: Duration = Duration::from_secs(12);
const START: Duration = Duration::from_secs(60);

fn shipped() -> PathBuf {
    repo_root().join("models/gm-tiny")
}

/// The shipped bundle's `bundle.toml`, parsed.
fn manifest() -> toml::Value {
    let manifest = std::fs::read_to_string(shipped().join("bundle.toml")).unwrap();
    toml::from_str(&manifest).unwrap()
}

/// The bundle's `[text] default_prompt`, read from its manifest.
fn default_prompt() -> String {
    manifest()["text"]["default_prompt"]
        .as_str()
        .expect("the shipped bundle names its default prompt")
        .to_owned()
}

/// Fraction of 2048-sample frames of the left channel (within 40 dB of the loudest) whose
/// spectral flatness (geometric over arithmetic mean of the power spectrum) exceeds 0.3:
/// white noise is near 1, a chord near 0.
fn noise_like_fraction(stereo: &[f32]) -> f64 {
    use realfft::RealFftPlanner;
    const N: usize = 2048;
    let left: Vec<f32> = stereo.iter().step_by(2).copied().collect();
    let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N);
    let mut spectrum = fft.make_output_vec();
    let mut frames = Vec::new();
    for chunk in left.chunks_exact(N) {
        let mut input: Vec<f32> = chunk
            .iter()
            .enumerate()
            .map(|(n, x)| {
                x * (0.5 - 0.5 * (2.0 * std::f32::consts::PI * n as f32 / N as f32).cos())
            })
            .collect();
        fft.process(&mut input, &mut spectrum).unwrap();
        let power: Vec<f64> = spectrum[1..]
            .iter()
            .map(|c| f64::from(c.norm_sqr()) + 1e-20)
            .collect();
        let energy: f64 = power.iter().sum();
        let geo = (power.iter().map(|p| p.ln()).sum::<f64>() / power.len() as f64).exp();
        frames.push((energy, geo / (energy / power.len() as f64)));
    }
    let loudest = frames.iter().map(|f| f.0).fold(0.0, f64::max);
    let loud: Vec<f64> = frames
        .iter()
        .filter(|f| f.0 > loudest * 1e-4)
        .map(|f| f.1)
        .collect();
    loud.iter().filter(|&&flat| flat > 0.3).count() as f64 / loud.len().max(1) as f64
}

#[test]
fn the_shipped_model_plays_music_on_its_default_prompt() {
    let Some(library) = library() else { return };
    let server = JackServer::start(RATE, 256);
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("played.wav");
    let oscquery_port = common::http::free_port();
    let mut daemon = Daemon::start(
        &dir,
        Launch {
            oscquery_port,
            ..Launch::bundle_on_jack(server.name(), &library, &shipped(), 10, &record)
        },
    );
    let prompt = default_prompt();
    daemon.wait_line(&format!("prompt: {prompt:?}"), START);
    daemon.wait_line("playing a loop of 480000 frames", START);
    let osc = Osc::new(daemon.osc_addr(START));
    let status = osc.status();
    assert!(
        status.backend.starts_with("bundle: gm-tiny") && status.backend.contains("CPU"),
        "/status backend {:?}",
        status.backend
    );
    let inert = ["timbre_strength", "structure_strength"];
    assert_eq!(status.inert_knobs, inert, "/status.reply inert_knobs");
    let oscquery = std::net::SocketAddr::from(([127, 0, 0, 1], oscquery_port));
    for (knob, tagged) in [(inert[0], true), (inert[1], true), ("denoise", false)] {
        let (_, body) = common::http::exchange(oscquery, "GET", &format!("/knob/{knob}"));
        let node: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            node.get("TAGS") == Some(&serde_json::json!(["inert"])),
            tagged,
            "OSCQuery /knob/{knob}: {node}"
        );
    }
    // The knobs start at the bundle's `[sampler]` defaults (shift 3.0 is not the knob
    // table's 3.5), not at the table's.
    let sampler = &manifest()["sampler"];
    for (knob, key) in [("steps", "default_steps"), ("shift", "default_shift")] {
        let want = sampler[key]
            .as_float()
            .or(sampler[key].as_integer().map(|i| i as f64));
        let (_, body) = common::http::exchange(oscquery, "GET", &format!("/knob/{knob}?VALUE"));
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            value["VALUE"][0].as_f64(),
            want,
            "OSCQuery /knob/{knob}?VALUE: {value} (bundle.toml [sampler] {key})"
        );
    }
    std::thread::sleep(PLAY);

    let done = osc
        .ask(
            "/prompt",
            vec![OscType::String("piano zzgrok".into())],
            "/done",
        )
        .expect("no /done /prompt");
    assert_eq!(done.args.len(), 3, "{:?}", done.args);
    assert_eq!(done.args[2], OscType::String("zzgrok".into()));

    daemon.stop_cleanly();
    let mut reader = hound::WavReader::open(&record).unwrap();
    let played: Vec<f32> = reader.samples::<f32>().map(Result::unwrap).collect();
    assert!(played.iter().all(|s| s.is_finite()), "non-finite samples");
    // The last 4 s: the engine's output by now, on the default prompt.
    let tail = &played[played.len().saturating_sub(4 * 2 * RATE as usize)..];
    let rms = (tail.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / tail.len() as f64).sqrt();
    let dbfs = 20.0 * rms.log10();
    assert!((-40.0..-3.0).contains(&dbfs), "level {dbfs:.1} dBFS");
    let noisy = noise_like_fraction(tail);
    eprintln!(
        "shipped model: {dbfs:.1} dBFS, noise-like frames {:.1} %",
        noisy * 100.0
    );
    assert!(noisy < 0.5, "{:.1} % noise-like frames", noisy * 100.0);
}
