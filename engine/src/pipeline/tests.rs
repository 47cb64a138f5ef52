//! Pipeline tests against the built-in model (short loops so debug builds stay quick).

use super::*;
use crate::conditioning::{ConditionEncoder, PromptSpec};
use crate::knobs::KnobStore;
use crate::model::builtin::{BuiltinCond, BuiltinModel, CpuLatents};

const FRAMES: usize = 50; // a 2 s loop

fn source(model: &BuiltinModel) -> Arc<CpuLatents> {
    let rate = 48_000usize;
    let samples: Vec<f32> = (0..rate * 2)
        .flat_map(|i| {
            let t = i as f32 / rate as f32;
            let note = if ((t * 4.0) as usize).is_multiple_of(2) {
                220.0
            } else {
                330.0
            };
            let v = 0.3 * (std::f32::consts::TAU * note * t).sin();
            [v, v * 0.8]
        })
        .collect();
    let view = crate::audio_clip::AudioView {
        samples: &samples,
        channels: 2,
        sample_rate: 48_000,
    };
    Arc::new(model.encode_source(view).unwrap())
}

fn conditioning(model: &BuiltinModel) -> Conditioning<BuiltinCond> {
    let a = model.encode_prompt("fast bright drums pluck").unwrap();
    let prompt = crate::conditioning::CommittedPrompt {
        spec: PromptSpec {
            tags: "fast bright drums pluck".into(),
            tags_b: None,
        },
        a,
        b: None,
    };
    Conditioning {
        epoch: 1,
        prompt: Some(Arc::new(prompt)),
        timbre: None,
        structure: None,
    }
}

fn knobs(settings: &[(&str, f64)]) -> KnobSnapshot {
    let (store, mut reader) = KnobStore::new();
    for (name, value) in settings {
        store.set(name, *value).unwrap();
    }
    reader.read().clone()
}

fn bits(model: &BuiltinModel, l: &CpuLatents) -> Vec<u32> {
    model
        .latents_to_host(l)
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// The walk window the parity streams generate (not 0, so the window reaches the noise key).
const PARITY_WINDOW: u32 = 3;

/// Streams `ticks` ticks in window [`PARITY_WINDOW`], submitting a different request every few
/// ticks.
fn stream(
    model: &Arc<BuiltinModel>,
    knobs: &KnobSnapshot,
    cond: &Conditioning<BuiltinCond>,
    ticks: usize,
) -> Vec<FinishedLatent<CpuLatents>> {
    let mut pipeline = StreamPipeline::new(Arc::clone(model), FRAMES);
    pipeline.set_window(PARITY_WINDOW, Some(source(model)), FRAMES);
    let mut finished = Vec::new();
    for tick in 0..ticks {
        if tick % 3 == 0 {
            let mut params = SlotParams::from_knobs(knobs);
            params.seed = 1000 + tick as u32;
            params.denoise = 0.2 + 0.1 * (tick % 7) as f32;
            pipeline.submit(params);
        }
        pipeline.tick(knobs, cond, &mut finished).expect("tick");
    }
    finished
}

fn drain_parity(knobs: KnobSnapshot) {
    let model = Arc::new(BuiltinModel::new());
    let cond = conditioning(&model);
    let finished = stream(&model, &knobs, &cond, 40);
    assert!(finished.len() >= 10, "only {} finished", finished.len());
    let src = source(&model);
    for done in &finished {
        let alone = run_request(
            &*model,
            done.params,
            PARITY_WINDOW,
            FRAMES,
            Some(&src),
            None,
            &knobs,
            &cond,
        )
        .expect("the built-in model cannot fail");
        assert_eq!(
            bits(&model, &done.latents),
            bits(&model, &alone),
            "slot {}",
            done.serial
        );
    }
}

#[test]
fn streaming_equals_each_request_run_alone_ode() {
    drain_parity(knobs(&[("x0_target", 0.3)]));
}

#[test]
fn streaming_equals_each_request_run_alone_sde() {
    drain_parity(knobs(&[
        ("sampler", 1.0),
        ("sde_amp", 0.7),
        ("periodicity", 2.0),
    ]));
}

#[test]
fn same_inputs_give_bit_identical_latents() {
    for sde in [0.0, 1.0] {
        let k = knobs(&[("sampler", sde), ("feedback", 0.4), ("feedback_depth", 2.0)]);
        let model = Arc::new(BuiltinModel::new());
        let cond = conditioning(&model);
        let a: Vec<_> = stream(&model, &k, &cond, 30)
            .iter()
            .map(|f| bits(&model, &f.latents))
            .collect();
        let model = Arc::new(BuiltinModel::new());
        let b: Vec<_> = stream(&model, &k, &cond, 30)
            .iter()
            .map(|f| bits(&model, &f.latents))
            .collect();
        assert!(!a.is_empty());
        assert_eq!(a, b, "sde {sde}");
        let k2 = knobs(&[("sampler", sde), ("seed", 5.0)]);
        let c: Vec<_> = stream(&model, &k2, &cond, 30)
            .iter()
            .map(|f| bits(&model, &f.latents))
            .collect();
        assert_eq!(a.len(), c.len());
    }
}

/// The finished latents of `ticks` ticks in window `window` of the source loop, as bits.
fn window_takes(
    model: &Arc<BuiltinModel>,
    k: &KnobSnapshot,
    window: u32,
    ticks: usize,
) -> Vec<Vec<u32>> {
    let cond = conditioning(model);
    let mut pipeline = StreamPipeline::new(Arc::clone(model), FRAMES);
    pipeline.set_window(window, Some(source(model)), FRAMES);
    let mut finished = Vec::new();
    for _ in 0..ticks {
        pipeline.tick(k, &cond, &mut finished).expect("tick");
    }
    finished.iter().map(|f| bits(model, &f.latents)).collect()
}

#[test]
fn slots_with_the_same_values_make_one_take_per_window_and_seed() {
    // Every slot of a window starts from the same noise, so with the knobs held the
    // stretches that the slots write join into one take, not a patchwork of samples. Another
    // window or another seed is another take; a window met again replays its own.
    let model = Arc::new(BuiltinModel::new());
    let held = knobs(&[("denoise", 0.7), ("feedback", 0.0), ("seed", 5.0)]);
    let first = window_takes(&model, &held, 0, 30);
    assert!(first.len() >= 8, "only {} finished", first.len());
    assert!(first.iter().all(|take| *take == first[0]), "one take");
    let other_window = window_takes(&model, &held, 1, 12);
    assert!(other_window.iter().all(|take| *take == other_window[0]));
    assert_ne!(other_window[0], first[0], "window 1 has its own take");
    let reseeded = knobs(&[("denoise", 0.7), ("feedback", 0.0), ("seed", 6.0)]);
    assert_ne!(
        window_takes(&model, &reseeded, 0, 12)[0],
        first[0],
        "seed 6"
    );
    assert_eq!(
        window_takes(&model, &held, 0, 12)[0],
        first[0],
        "window 0 again"
    );
}

#[test]
fn warm_pipeline_delivers_every_steps_over_depth_ticks_in_the_same_tick() {
    let model = Arc::new(BuiltinModel::new());
    let cond = conditioning(&model);
    let k = knobs(&[]); // depth 4, steps 8
    let mut pipeline = StreamPipeline::new(Arc::clone(&model), FRAMES);
    let mut finished = Vec::new();
    let mut ticks_with_output = Vec::new();
    for tick in 0..40u64 {
        let before = finished.len();
        pipeline.tick(&k, &cond, &mut finished).expect("tick");
        if finished.len() > before {
            ticks_with_output.push(tick);
            assert_eq!(finished.last().unwrap().tick, tick);
        }
        assert!(pipeline.in_flight() <= 4);
    }
    // The first slot starts in tick 0 and takes 8 steps: it finishes in tick 7.
    assert_eq!(ticks_with_output[0], 7);
    for pair in ticks_with_output.windows(2) {
        assert_eq!(pair[1] - pair[0], 2, "{ticks_with_output:?}");
    }
}

#[test]
fn newest_pending_request_wins() {
    let model = Arc::new(BuiltinModel::new());
    let cond = conditioning(&model);
    let k = knobs(&[]);
    let mut pipeline = StreamPipeline::new(Arc::clone(&model), FRAMES);
    let mut finished = Vec::new();
    pipeline.tick(&k, &cond, &mut finished).expect("tick"); // slot 0 starts from the knobs
    let mut first = SlotParams::from_knobs(&k);
    first.seed = 11;
    let mut second = first;
    second.seed = 22;
    pipeline.submit(first);
    pipeline.submit(second);
    for _ in 0..12 {
        pipeline.tick(&k, &cond, &mut finished).expect("tick");
    }
    let seeds: Vec<u32> = finished.iter().map(|f| f.params.seed).collect();
    assert_eq!(seeds[..2], [0, 22], "{seeds:?}");
}

#[test]
fn depth_and_steps_changes_keep_in_flight_slots() {
    let model = Arc::new(BuiltinModel::new());
    let cond = conditioning(&model);
    let (store, mut reader) = KnobStore::new();
    let mut pipeline = StreamPipeline::new(Arc::clone(&model), FRAMES);
    let mut finished = Vec::new();
    for _ in 0..7 {
        pipeline
            .tick(reader.read(), &cond, &mut finished)
            .expect("tick");
    }
    let in_flight = pipeline.in_flight();
    assert_eq!(in_flight, 4);
    store.set("depth", 1.0).unwrap();
    store.set("steps", 4.0).unwrap();
    let mut last_tick = 0;
    for _ in 0..40 {
        pipeline
            .tick(reader.read(), &cond, &mut finished)
            .expect("tick");
        assert!(
            pipeline.ticks() - last_tick <= 9,
            "a gap longer than one request: dropout"
        );
        if let Some(f) = finished.last() {
            last_tick = f.tick;
        }
    }
    // Every slot that was in flight finished with its own 8 steps; later ones use 4.
    let serials: Vec<u32> = finished.iter().map(|f| f.serial).collect();
    assert_eq!(
        serials,
        (0..serials.len() as u32).collect::<Vec<_>>(),
        "no slot dropped"
    );
    assert!(
        finished.iter().any(|f| f.params.steps == 8)
            && finished.iter().any(|f| f.params.steps == 4)
    );
    assert_eq!(pipeline.in_flight(), 1);
}

#[test]
fn a_slot_without_a_base_runs_its_whole_schedule_whatever_denoise_says() {
    let model = Arc::new(BuiltinModel::new());
    let cond = conditioning(&model);
    let src = source(&model);
    let alone = |denoise: f64, source: Option<&CpuLatents>| {
        let k = knobs(&[("denoise", denoise)]);
        let params = SlotParams::from_knobs(&k);
        let x = run_request(&*model, params, 0, FRAMES, source, None, &k, &cond).unwrap();
        bits(&model, &x)
    };
    // No source and no feedback: nothing to start near, so every denoise runs from t = 1
    // (before, denoise 0 delivered the start noise itself, and 0.5 half-denoised noise).
    let full = alone(1.0, None);
    assert_eq!(alone(0.0, None), full, "denoise 0, no base");
    assert_eq!(alone(0.5, None), full, "denoise 0.5, no base");
    // With a source, denoise still sets how far from it a slot starts.
    assert_ne!(alone(0.5, Some(&src)), alone(1.0, Some(&src)));

    // The stream follows the same rule. With feedback 1 and denoise 0, the slots that start
    // before any has finished (serials 0-3 at depth 4) have no base and run whole; the first
    // to start after serial 0 finished (serial 4) has serial 0 as its base, and denoise 0
    // gives it back unchanged.
    let k = knobs(&[("denoise", 0.0), ("feedback", 1.0)]);
    let mut pipeline = StreamPipeline::new(Arc::clone(&model), FRAMES);
    let mut finished = Vec::new();
    for _ in 0..40 {
        pipeline.tick(&k, &cond, &mut finished).expect("tick");
    }
    let by_serial = |n: u32| {
        let done = finished.iter().find(|f| f.serial == n);
        bits(&model, &done.expect("finished").latents)
    };
    for n in 0..4 {
        let params = SlotParams::from_knobs(&k);
        let whole = run_request(&*model, params, 0, FRAMES, None, None, &k, &cond).unwrap();
        assert_eq!(by_serial(n), bits(&model, &whole), "serial {n} runs whole");
    }
    assert_eq!(by_serial(4), by_serial(0), "serial 4 starts at its base");
}
