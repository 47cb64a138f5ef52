//! `OnnxModel` on real ONNX Runtime (CPU provider) with random-weight bundles written by
//! `tools/bundles/make_test_bundle.py`: loading, a full pipeline run, batch invariance,
//! determinism, weights that change the sound, bad bundles refused with one typed error, and
//! no allocation in latentd's own per-tick code.
//!
//! Skips with `SKIPPED: <why>` when the library or the bundle tooling is absent; fails then
//! under `LATENTD_REQUIRE_ORT=1`.

use latentd_tests::test_bundles;

use std::path::Path;
use std::sync::Arc;

use latentd_engine::conditioning::ConditionEncoder;
use latentd_engine::conditioning::Conditioning;
use latentd_engine::knobs::{KnobId, KnobSnapshot, KnobStore};
use latentd_engine::model::bundle::onnx::{
    ModelError, OnnxCond, OnnxLatents, OnnxLoadError, OnnxModel, OnnxOptions,
};
use latentd_engine::model::{Model, SlotStart, SlotStep, StepShared};
use latentd_engine::pipeline::{FinishedLatent, StreamPipeline};
use latentd_engine::rng::NoiseKey;

// The allocation checker sees the Rust allocator only (ORT's C-heap mallocs are not counted).
#[global_allocator]
static ALLOC: assert_no_alloc::AllocDisabler = assert_no_alloc::AllocDisabler;

fn options() -> Option<OnnxOptions> {
    Some(OnnxOptions {
        library: Some(test_bundles::library()?),
        ..OnnxOptions::default()
    })
}

fn load(dir: &Path) -> Result<OnnxModel, OnnxLoadError> {
    OnnxModel::load(dir, options().expect("checked by the caller"))
}

/// The tiny bundle (seed `seed`) and the model loaded from it, or `None` (skipped).
fn tiny(seed: u32) -> Option<(tempfile::TempDir, OnnxModel)> {
    tiny_decoding(seed, "audio")
}

/// [`tiny`] with `--decoder <decoder>` (`audio` or `stft`).
fn tiny_decoding(seed: u32, decoder: &str) -> Option<(tempfile::TempDir, OnnxModel)> {
    tiny_with(seed, &["--decoder", decoder])
}

/// [`tiny`] with more `make_test_bundle.py` arguments.
fn tiny_with(seed: u32, extra: &[&str]) -> Option<(tempfile::TempDir, OnnxModel)> {
    options()?;
    let seed = seed.to_string();
    let mut args = vec!["--preset", "tiny", "--seed", &seed];
    args.extend_from_slice(extra);
    let dir = test_bundles::bundle(&args)?;
    let model = load(dir.path()).expect("the tiny bundle loads");
    Some((dir, model))
}

/// `make_test_bundle.py --decoder-frame-offset`'s tone in loop time: its period in samples
/// and its amplitude (FRAME_TONE_PERIOD, FRAME_TONE_GAIN there).
const FRAME_TONE_PERIOD: usize = 1201;
const FRAME_TONE_GAIN: f32 = 0.05;

fn prompt(model: &OnnxModel, tags: &str) -> Conditioning<OnnxCond> {
    let a = model.encode_prompt(tags).expect("prompt encodes");
    Conditioning::prompt_only(1, tags, a)
}

fn knobs(set: &[(KnobId, f64)]) -> KnobSnapshot {
    let (store, _reader) = KnobStore::new();
    for &(id, v) in set {
        store.set_id(id, v).expect("knob value");
    }
    store.current()
}

/// Runs the stream pipeline until `want` latents finished; returns them.
fn run_pipeline(
    model: &Arc<OnnxModel>,
    frames: usize,
    knobs: &KnobSnapshot,
    cond: &Conditioning<OnnxCond>,
    want: usize,
) -> Vec<FinishedLatent<OnnxLatents>> {
    let mut pipe = StreamPipeline::new(Arc::clone(model), frames);
    let mut done = Vec::new();
    for _ in 0..100 {
        pipe.tick(knobs, cond, &mut done).expect("no failed tick");
        if done.len() >= want {
            break;
        }
    }
    assert!(done.len() >= want, "{} latents finished", done.len());
    done
}

fn decode_all(model: &OnnxModel, l: &OnnxLatents) -> Vec<f32> {
    let g = model.geometry();
    let frames = model.latent_frames(l);
    let mut out = vec![0.0f32; frames * g.samples_per_latent_frame() * g.audio_channels];
    model
        .decode_window(l, &[1.0; 8], false, 0, frames, &mut out)
        .expect("decode");
    out
}

#[test]
fn a_pipeline_run_makes_finite_audio_of_the_loop_length() {
    let Some((_dir, model)) = tiny(0) else { return };
    assert!(
        model.describe().contains("tiny-random"),
        "{}",
        model.describe()
    );
    let model = Arc::new(model);
    let cond = prompt(&model, "slow piano, warm pad");
    let k = knobs(&[(KnobId::depth, 2.0), (KnobId::steps, 4.0)]);
    let frames = 50; // 2 s at 25 frames/s
    let done = run_pipeline(&model, frames, &k, &cond, 3);
    for f in &done {
        let x = f.latents.as_slice();
        assert_eq!(x.len(), frames * 64);
        assert!(x.iter().all(|v| v.is_finite()));
        let audio = decode_all(&model, &f.latents);
        assert_eq!(audio.len(), 2 * 48_000 * 2);
        assert!(audio.iter().all(|v| v.is_finite()));
        let rms = (audio.iter().map(|v| v * v).sum::<f32>() / audio.len() as f32).sqrt();
        assert!(rms > 1e-4, "audible: rms {rms}");
    }
}

#[test]
fn unknown_words_are_reported_and_an_all_unknown_prompt_refused() {
    let Some((_dir, model)) = tiny(0) else { return };
    let p = model
        .encode_prompt("slow Zorblax piano 9000")
        .expect("encodes");
    assert_eq!(p.unknown_words, ["Zorblax", "9000"]);
    let err = model.encode_prompt("zorblax").expect_err("nothing known");
    assert!(err.to_string().contains("zorblax"), "{err}");
}

fn start(
    model: &OnnxModel,
    frames: usize,
    noise_window: u32,
    source: Option<&OnnxLatents>,
) -> OnnxLatents {
    model.start_slot(SlotStart {
        frames,
        source,
        feedback: None,
        t_start: 0.8,
        noise: NoiseKey {
            seed: 5,
            window: noise_window,
            step: 0,
        },
    })
}

/// Steps the given slots `steps` times, all in one batch per step.
fn step_batch(
    model: &OnnxModel,
    xs: &mut [OnnxLatents],
    noise_windows: &[u32],
    shared: &StepShared<'_, OnnxModel>,
    sde: bool,
) {
    let ts = [0.8f32, 0.6, 0.3, 0.0];
    for k in 0..3 {
        let mut batch: Vec<SlotStep<'_, OnnxLatents>> = xs
            .iter_mut()
            .zip(noise_windows)
            .map(|(x, &noise_window)| SlotStep {
                x,
                t_curr: ts[k],
                t_next: ts[k + 1],
                t_start: 0.8,
                sde,
                x0_lock: 0.3,
                noise: NoiseKey {
                    seed: 5,
                    window: noise_window,
                    step: k as u32 + 1,
                },
            })
            .collect();
        model.denoise_batch(&mut batch, shared).expect("step");
    }
}

#[test]
fn a_slot_gives_the_same_bits_alone_or_in_a_batch_of_four() {
    let Some((_dir, model)) = tiny(0) else { return };
    let frames = 25; // odd: padded to the bundle's t_multiple
    let cond = prompt(&model, "dark techno kick");
    let source = start(&model, frames, 99, None);
    let curve = model.upload_curve(&vec![0.7; frames]);
    for sde in [false, true] {
        let k = knobs(&[(KnobId::prompt_blend, 0.0)]);
        let shared = StepShared {
            cond: &cond,
            knobs: &k,
            source: Some(&source),
            sde_curve: Some(&curve),
        };
        let noise_windows = [0u32, 1, 2, 3];
        let mut together: Vec<_> = noise_windows
            .iter()
            .map(|&s| start(&model, frames, s, Some(&source)))
            .collect();
        step_batch(&model, &mut together, &noise_windows, &shared, sde);
        for (i, &s) in noise_windows.iter().enumerate() {
            let mut alone = vec![start(&model, frames, s, Some(&source))];
            step_batch(&model, &mut alone, &[s], &shared, sde);
            let a: Vec<u32> = alone[0].as_slice().iter().map(|v| v.to_bits()).collect();
            let b: Vec<u32> = together[i].as_slice().iter().map(|v| v.to_bits()).collect();
            assert!(
                a == b,
                "slot {s} (sde {sde}) differs alone vs in a batch of 4"
            );
        }
    }
}

#[test]
fn runs_are_deterministic_and_the_weights_change_the_sound() {
    let Some((_dir, model)) = tiny(0) else { return };
    let Some((_dir2, again)) = tiny(0) else {
        return;
    };
    let Some((_dir3, other)) = tiny(1) else {
        return;
    };
    let k = knobs(&[
        (KnobId::depth, 2.0),
        (KnobId::steps, 4.0),
        (KnobId::sampler, 1.0),
    ]);
    let audio_of = |m: OnnxModel| {
        let m = Arc::new(m);
        let cond = prompt(&m, "bright flute");
        let done = run_pipeline(&m, 30, &k, &cond, 2);
        decode_all(&m, &done[1].latents)
    };
    let a = audio_of(model);
    let b = audio_of(again);
    let c = audio_of(other);
    assert!(
        a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
        "same bundle, same bits"
    );
    let diff = a
        .iter()
        .zip(&c)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(diff > 1e-3, "other weights, other sound (max diff {diff})");
}

#[test]
fn the_per_tick_step_does_not_allocate() {
    for decoder in ["audio", "stft"] {
        let Some((_dir, model)) = tiny_decoding(0, decoder) else {
            return;
        };
        per_tick_step_does_not_allocate(&model);
    }
}

fn per_tick_step_does_not_allocate(model: &OnnxModel) {
    let frames = 50;
    let cond = prompt(model, "calm strings");
    let source = start(model, frames, 99, None);
    let curve = model.upload_curve(&vec![0.5; frames]);
    let k = knobs(&[(KnobId::sampler, 1.0)]);
    let shared = StepShared {
        cond: &cond,
        knobs: &k,
        source: Some(&source),
        sde_curve: Some(&curve),
    };
    let mut xs: Vec<_> = (0..4)
        .map(|s| start(model, frames, s, Some(&source)))
        .collect();
    let mut out = vec![0.0f32; 9 * 1920 * 2];
    let mut run = |check: bool| {
        let mut batch: Vec<SlotStep<'_, OnnxLatents>> = xs
            .iter_mut()
            .enumerate()
            .map(|(i, x)| SlotStep {
                x,
                t_curr: 0.7,
                t_next: 0.5,
                t_start: 0.8,
                sde: true,
                x0_lock: 0.2,
                noise: NoiseKey {
                    seed: 1,
                    window: i as u32,
                    step: 1,
                },
            })
            .collect();
        let mut step = || {
            model.denoise_batch(&mut batch, &shared).expect("step");
            model
                .decode_window(batch[0].x, &[1.0; 8], false, 3, 9, &mut out)
                .expect("decode");
        };
        if check {
            assert_no_alloc::assert_no_alloc(step);
        } else {
            step();
        }
    };
    run(false); // the first tick at a shape binds its tensors
    run(true);
    run(true);
}

fn load_err(dir: &Path) -> OnnxLoadError {
    match load(dir) {
        Ok(_) => panic!("the bundle in {} loaded", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn a_bundle_with_a_missing_file_is_refused() {
    let Some(_) = options() else { return };
    let Some(dir) = test_bundles::bundle(&["--preset", "tiny"]) else {
        return;
    };
    std::fs::remove_file(dir.path().join("decoder.onnx")).unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, OnnxLoadError::Manifest(_)), "{e:?}");
    assert!(e.to_string().contains("decoder.onnx"), "{e}");
}

/// A tiny bundle broken by `make_test_bundle.py --fault <fault>`, and its load error.
fn faulty(fault: &str) -> Option<OnnxLoadError> {
    options()?;
    let decoder = if fault.starts_with("stft") {
        "stft"
    } else {
        "audio"
    };
    let dir = test_bundles::bundle(&["--preset", "tiny", "--fault", fault, "--decoder", decoder])?;
    Some(load_err(dir.path()))
}

#[test]
fn an_stft_decoder_with_a_wrong_output_name_or_bin_count_is_refused() {
    let Some(e) = faulty("stft-output-name") else {
        return;
    };
    assert!(
        matches!(&e, OnnxLoadError::Tensor { file, tensor, reason }
            if file == "decoder.onnx" && tensor == "stft" && reason.contains("spectrum")),
        "{e:?}"
    );
    let e = faulty("stft-bins").expect("checked above");
    assert!(
        matches!(&e, OnnxLoadError::Tensor { tensor, reason, .. }
            if tensor == "stft" && reason.contains("axis 3 is 960") && reason.contains("961")),
        "{e}"
    );
}

/// An STFT decoder's windowed decode is finite, not silent, depends on the weights, and
/// keeps the centre of its window: a walk of windows decodes like the whole loop at once.
#[test]
fn an_stft_bundle_decodes_finite_weight_dependent_audio() {
    let Some((_d0, m0)) = tiny_decoding(0, "stft") else {
        return;
    };
    let (_d7, m7) = tiny_decoding(7, "stft").expect("seed 0 loaded");
    let x = start(&m0, 40, 5, None);
    let (a0, a7) = (decode_all(&m0, &x), decode_all(&m7, &x));
    assert!(a0.iter().all(|v| v.is_finite()));
    let rms = (a0.iter().map(|v| v * v).sum::<f32>() / a0.len() as f32).sqrt();
    assert!(rms > 0.01, "rms {rms}");
    let diff = a0
        .iter()
        .zip(&a7)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff > 1e-2, "other weights, other sound (max diff {diff})");
    // Frames 10..19 alone: the same samples as inside the whole loop's decode.
    let g = m0.geometry();
    let per = g.samples_per_latent_frame() * g.audio_channels;
    let mut part = vec![0.0f32; 9 * per];
    m0.decode_window(&x, &[1.0; 8], false, 10, 9, &mut part)
        .expect("decode");
    let whole = &a0[10 * per..19 * per];
    let worst = part
        .iter()
        .zip(whole)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "window vs whole: {worst}");
}

#[test]
fn a_dit_with_a_wrong_tensor_name_is_refused() {
    let Some(e) = faulty("dit-output-name") else {
        return;
    };
    assert!(
        matches!(&e, OnnxLoadError::Tensor { file, tensor, reason }
            if file == "dit.onnx" && tensor == "velocity" && reason.contains("noise_pred")),
        "{e:?}"
    );
}

#[test]
fn a_dit_with_a_wrong_rank_is_refused() {
    let Some(e) = faulty("dit-output-rank") else {
        return;
    };
    assert!(
        matches!(&e, OnnxLoadError::Tensor { tensor, reason, .. }
            if tensor == "velocity" && reason.contains("rank 2")),
        "{e:?}"
    );
}

#[test]
fn an_input_outside_the_convention_is_refused() {
    let Some(_) = options() else { return };
    let Some(dir) = test_bundles::bundle(&["--preset", "tiny"]) else {
        return;
    };
    test_bundles::edit_graph(
        dir.path(),
        "dit.onnx",
        "g = m.graph\n\
         [setattr(i, 'name', 't') for i in g.input if i.name == 'timestep']\n\
         for n in g.node:\n    n.input[:] = ['t' if x == 'timestep' else x for x in n.input]",
    );
    let e = load_err(dir.path());
    assert!(
        matches!(&e, OnnxLoadError::Tensor { tensor, .. } if tensor == "t"),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("timestep"),
        "names the accepted inputs: {e}"
    );
}

#[test]
fn a_dit_that_outputs_nan_is_refused_at_load() {
    let Some(e) = faulty("dit-nan") else { return };
    assert!(
        matches!(
            &e,
            OnnxLoadError::Probe(ModelError::NonFinite {
                file: "dit",
                tensor: "velocity",
                ..
            })
        ),
        "{e:?}"
    );
}

#[test]
fn a_decoder_that_outputs_nan_is_refused_at_load() {
    let Some(e) = faulty("decoder-nan") else {
        return;
    };
    assert!(
        matches!(&e, OnnxLoadError::Probe(ModelError::Run { file: "decoder", reason })
            if reason.contains("non-finite")),
        "{e:?}"
    );
}

#[test]
fn a_nan_at_run_time_is_a_typed_error_and_leaves_the_slots_unchanged() {
    let Some(_) = options() else { return };
    // NaN only for late timesteps: the load probe (t = 1) passes, a step at t = 0.2 fails.
    let Some(dir) = test_bundles::bundle(&["--preset", "tiny", "--fault", "dit-nan-late"]) else {
        return;
    };
    let model = load(dir.path()).expect("loads: the probe step is early");
    let frames = 10;
    let cond = prompt(&model, "piano");
    let k = knobs(&[]);
    let shared = StepShared {
        cond: &cond,
        knobs: &k,
        source: None,
        sde_curve: None,
    };
    let mut xs: Vec<_> = (0..2).map(|s| start(&model, frames, s, None)).collect();
    let before = xs.clone();
    let mut batch: Vec<SlotStep<'_, OnnxLatents>> = xs
        .iter_mut()
        .map(|x| SlotStep {
            x,
            t_curr: 0.2,
            t_next: 0.1,
            t_start: 0.8,
            sde: false,
            x0_lock: 0.0,
            noise: NoiseKey {
                seed: 0,
                window: 0,
                step: 1,
            },
        })
        .collect();
    let e = model.denoise_batch(&mut batch, &shared).expect_err("NaN");
    assert_eq!(
        e,
        ModelError::NonFinite {
            file: "dit",
            tensor: "velocity",
            row: 0
        }
    );
    drop(batch);
    assert_eq!(xs, before, "the slots are unchanged");
}

#[test]
fn a_walk_chunk_decodes_like_the_same_window_of_the_whole_loop() {
    let Some((_dir, model)) = tiny(0) else { return };
    chunk_windows_decode_like_the_loop(&model);
    // A decoder that takes `frame_offset` is told the window's place in the loop, not in
    // the chunk: otherwise its tone would restart at each chunk and these would differ.
    let (_dir, model) = tiny_with(0, &["--decoder-frame-offset"]).expect("seed 0 loaded");
    chunk_windows_decode_like_the_loop(&model);
}

fn chunk_windows_decode_like_the_loop(model: &OnnxModel) {
    use latentd_engine::model::ChunkPlace;
    let total = 60;
    let whole = start(model, total, 7, None);
    let chunk = model.slice_latents(&whole, 20, 20);
    let before = model.slice_latents(&whole, 0, 20);
    let after = model.slice_latents(&whole, 40, 20);
    let place = ChunkPlace {
        before: &before,
        after: &after,
        loop_offset: 20,
        loop_frames: total,
    };
    let gains = [1.0, 0.5, 2.0, 1.0, 0.0, 1.0, 1.5, 1.0];
    let len = |frames: usize| frames * 1920 * 2;
    // Windows at the chunk's start, middle and end reach into both neighbours (context 8).
    for (start, frames) in [(0usize, 9usize), (6, 9), (15, 5)] {
        let mut from_chunk = vec![0.0f32; len(frames)];
        model
            .decode_chunk_window(
                &chunk,
                Some(&place),
                &gains,
                false,
                start,
                frames,
                &mut from_chunk,
            )
            .expect("chunk decode");
        let mut from_loop = vec![0.0f32; len(frames)];
        model
            .decode_window(&whole, &gains, false, 20 + start, frames, &mut from_loop)
            .expect("loop decode");
        assert!(
            from_chunk
                .iter()
                .zip(&from_loop)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "window at {start} of the chunk"
        );
    }
    let mut silent = vec![1.0f32; len(9)];
    model
        .decode_window(&whole, &[0.0; 8], true, 0, 9, &mut silent)
        .expect("silence");
    assert!(
        silent.iter().all(|&v| v == 0.0),
        "all-zero gains give exact silence"
    );
}

#[test]
fn a_decoder_told_its_frame_offset_continues_a_tone_across_windows() {
    // The same seed with and without `--decoder-frame-offset`: the same decoder weights, so
    // the outputs differ by the tone alone, which follows loop time only if every window is
    // given its own first frame (negative at the loop's start, where context reaches back).
    let Some((_d0, plain)) = tiny(0) else { return };
    let (_d1, toned) = tiny_with(0, &["--decoder-frame-offset"]).expect("seed 0 loaded");
    let total = 30;
    let latents = start(&plain, total, 3, None);
    let gains = [1.0; 8];
    let (a, hop) = (2, 1920);
    let mut worst = 0.0f32;
    for (first, frames) in [(0usize, 7usize), (7, 9), (16, 1), (17, 13)] {
        let mut without = vec![0.0f32; frames * hop * a];
        let mut with = vec![0.0f32; frames * hop * a];
        plain
            .decode_window(&latents, &gains, false, first, frames, &mut without)
            .expect("decode");
        toned
            .decode_window(&latents, &gains, false, first, frames, &mut with)
            .expect("decode");
        for (i, (w, p)) in with.iter().zip(&without).enumerate() {
            let t = first * hop + i / a;
            let phase = std::f32::consts::TAU * (t % FRAME_TONE_PERIOD) as f32;
            let tone = FRAME_TONE_GAIN * (phase / FRAME_TONE_PERIOD as f32).sin();
            worst = worst.max((w - p - tone).abs());
        }
    }
    assert!(worst < 1e-5, "the tone is off loop time by up to {worst}");
}

#[test]
fn a_cfg_bundle_doubles_the_batch_and_the_guidance_knob_moves_the_result() {
    let Some(_) = options() else { return };
    let Some(dir) = test_bundles::bundle(&["--preset", "tiny"]) else {
        return;
    };
    let manifest = dir.path().join("bundle.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("guidance = \"none\""));
    std::fs::write(
        &manifest,
        text.replace("guidance = \"none\"", "guidance = \"cfg\""),
    )
    .unwrap();
    let model = load(dir.path()).expect("the cfg bundle loads");
    let frames = 12;
    let cond = prompt(&model, "epic brass choir");
    let run = |guidance: f64, noise_windows: &[u32]| -> Vec<OnnxLatents> {
        let k = knobs(&[(KnobId::guidance, guidance), (KnobId::cfg_rescale, 0.5)]);
        let shared = StepShared {
            cond: &cond,
            knobs: &k,
            source: None,
            sde_curve: None,
        };
        let mut xs: Vec<_> = noise_windows
            .iter()
            .map(|&s| start(&model, frames, s, None))
            .collect();
        step_batch(&model, &mut xs, noise_windows, &shared, false);
        xs
    };
    let plain = run(1.0, &[0, 1]);
    let guided = run(4.0, &[0, 1]);
    assert_ne!(plain[1], guided[1], "guidance 4 moves the result");
    let alone = run(4.0, &[1]);
    let bits = |l: &OnnxLatents| l.as_slice().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&alone[0]),
        bits(&guided[1]),
        "CFG keeps batch invariance"
    );
}

/// One denoise step of every slot in `xs`, in one batch (t 0.8 -> 0.6).
fn one_step(
    model: &OnnxModel,
    xs: &mut [OnnxLatents],
    shared: &StepShared<'_, OnnxModel>,
) -> Result<(), ModelError> {
    let mut batch: Vec<SlotStep<'_, OnnxLatents>> = xs
        .iter_mut()
        .enumerate()
        .map(|(slot, x)| SlotStep {
            x,
            t_curr: 0.8,
            t_next: 0.6,
            t_start: 0.8,
            sde: false,
            x0_lock: 0.0,
            noise: NoiseKey {
                seed: 0,
                window: slot as u32,
                step: 1,
            },
        })
        .collect();
    model.denoise_batch(&mut batch, shared)
}

#[test]
fn an_interrupt_stops_a_running_denoise_and_leaves_the_slots_unchanged() {
    let Some(_) = options() else { return };
    // The shipped model on a 2 min loop: one batched step is long enough to stop midway.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/gm-tiny");
    let model = Arc::new(load(&shipped).expect("gm-tiny loads"));
    let frames = 25 * 120;
    let cond = prompt(&model, "piano");
    let k = knobs(&[]);
    let shared = StepShared {
        cond: &cond,
        knobs: &k,
        source: None,
        sde_curve: None,
    };
    let mut xs: Vec<_> = (0..4).map(|s| start(&model, frames, s, None)).collect();
    let before = xs.clone();

    // Asked before the call: the call returns at once.
    model.interrupt_denoise();
    assert_eq!(
        one_step(&model, &mut xs, &shared),
        Err(ModelError::Interrupted)
    );
    assert_eq!(xs, before, "the slots are unchanged");
    model.clear_denoise_interrupt();

    // Asked from another thread while ONNX Runtime runs the DiT.
    let asker = {
        let model = Arc::clone(&model);
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            model.interrupt_denoise();
        })
    };
    let started = std::time::Instant::now();
    let interrupted = one_step(&model, &mut xs, &shared);
    let stopped_after = started.elapsed();
    asker.join().unwrap();
    assert_eq!(interrupted, Err(ModelError::Interrupted));
    assert_eq!(xs, before, "the slots are unchanged");

    // Cleared, the same step runs whole (the session is usable after a stop).
    model.clear_denoise_interrupt();
    let started = std::time::Instant::now();
    one_step(&model, &mut xs, &shared).expect("a step after the clear runs");
    let whole = started.elapsed();
    assert_ne!(xs, before, "the step ran");
    assert!(
        stopped_after < whole,
        "the interrupted step took {stopped_after:?}, a whole one {whole:?}"
    );
}

/// `seconds` of a stereo saw at `hz` (the tiny bundle's rate, 48 kHz).
fn saw(hz: f32, seconds: f32) -> Vec<f32> {
    (0..(48_000.0 * seconds) as usize)
        .flat_map(|i| {
            let v = 0.4 * (2.0 * (i as f32 * hz / 48_000.0).fract() - 1.0);
            [v, 0.5 * v]
        })
        .collect()
}

fn view(samples: &[f32]) -> latentd_engine::audio_clip::AudioView<'_> {
    latentd_engine::audio_clip::AudioView {
        samples,
        channels: 2,
        sample_rate: 48_000,
    }
}

#[test]
fn a_timbre_reference_moves_the_condition_by_its_strength() {
    let Some(_) = options() else { return };
    let Some(dir) = test_bundles::bundle(&["--preset", "tiny", "--timbre"]) else {
        return;
    };
    let model = load(dir.path()).expect("the timbre bundle loads");
    assert!(!model.inert_knobs().contains(&"timbre_strength"));
    let (low, high) = (saw(110.0, 1.5), saw(1760.0, 3.0));
    let low_rows = model.encode_timbre(view(&low)).expect("encodes");
    let high_rows = model.encode_timbre(view(&high)).expect("encodes");
    assert_ne!(low_rows, high_rows, "another reference, other rows");
    let mono = latentd_engine::audio_clip::AudioView {
        samples: &low,
        channels: 1,
        sample_rate: 48_000,
    };
    let refused = model
        .encode_timbre(mono)
        .expect_err("mono is not the bundle's");
    assert!(refused.to_string().contains("timbre"), "{refused}");

    let frames = 12;
    let plain = prompt(&model, "epic brass choir");
    let with = |rows: &OnnxCond| Conditioning {
        timbre: Some(Arc::new(rows.clone())),
        ..plain.clone()
    };
    let run = |cond: &Conditioning<OnnxCond>, strength: f64| -> Vec<u32> {
        let k = knobs(&[(KnobId::timbre_strength, strength)]);
        let shared = StepShared {
            cond,
            knobs: &k,
            source: None,
            sde_curve: None,
        };
        let mut xs = vec![start(&model, frames, 0, None)];
        step_batch(&model, &mut xs, &[0], &shared, false);
        xs[0].as_slice().iter().map(|v| v.to_bits()).collect()
    };
    let none = run(&plain, 1.0);
    assert_eq!(
        run(&with(&high_rows), 0.0),
        none,
        "strength 0 is no reference"
    );
    let high_full = run(&with(&high_rows), 1.0);
    assert_ne!(high_full, none, "the reference reaches the DiT");
    assert_ne!(run(&with(&high_rows), 0.5), high_full, "strength moves it");
    assert_ne!(
        run(&with(&low_rows), 1.0),
        high_full,
        "each reference its own"
    );
}

#[test]
fn a_bundle_without_a_timbre_graph_refuses_a_reference() {
    let Some((_dir, model)) = tiny(0) else { return };
    assert!(model.inert_knobs().contains(&"timbre_strength"));
    let err = model
        .encode_timbre(view(&saw(220.0, 1.0)))
        .expect_err("no [timbre]");
    assert!(
        err.to_string().contains("takes no timbre reference"),
        "{err}"
    );
}
