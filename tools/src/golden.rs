//! `latentctl golden`: runs the golden scenarios of `latentd_engine::runner::golden` with
//! the built-in model or a model bundle (`--model DIR`, on ONNX Runtime), in simulated time (in-process, deterministic) or in real time on an
//! audio output opened through the daemon library (`null` or `jack`), and prints a table
//! (and writes the JSON report with `--out`).
//!
//! Threading: the caller's thread runs the script; the output's callback plays the ring;
//! the engine thread writes it.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use latentd::audio::PeriodProcessor;
use latentd::audio::select::{BackendChoice, OutputOptions, open_output};
use latentd::engine_select::EngineChoice;
use latentd_engine::PlayheadRing;
use latentd_engine::model::Model;
use latentd_engine::model::bundle::onnx::{OnnxModel, OnnxOptions};
use latentd_engine::runner::golden::{
    GoldenOptions, GoldenRun, Scenario, run_realtime, run_sim, source_loop,
};

/// On or off.
#[derive(Clone, Copy, ValueEnum)]
pub enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

/// Outputs the real-time run can play through.
#[derive(Clone, Copy, ValueEnum)]
pub enum AudioChoice {
    /// A thread that plays periods in real time into nothing.
    Null,
    /// A JACK client (the server named by `JACK_DEFAULT_SERVER`).
    Jack,
}

/// `latentctl golden` arguments.
#[derive(Args, Clone)]
pub struct GoldenArgs {
    /// Run in simulated time (deterministic, fast).
    #[arg(
        long,
        conflicts_with = "realtime",
        required_unless_present = "realtime"
    )]
    sim: bool,
    /// Run in real time on an audio output.
    #[arg(long)]
    realtime: bool,
    /// Output for --realtime.
    #[arg(long, value_enum, default_value = "null")]
    audio: AudioChoice,
    /// Near-playhead repatch.
    #[arg(long, value_enum, default_value = "on")]
    repatch: Switch,
    /// Scenarios to run (repeatable): knob_step, denoise_step, prompt_change,
    /// timbre_apply, loop_band, stall. Default: all.
    #[arg(long = "scenario", value_parser = Scenario::from_name)]
    scenarios: Vec<Scenario>,
    /// Actions per scenario.
    #[arg(long, default_value_t = 20)]
    actions: usize,
    /// Seconds between actions.
    #[arg(long, default_value_t = 0.6)]
    spacing: f64,
    /// Loop length in seconds.
    #[arg(long, default_value_t = 8.0)]
    loop_s: f64,
    /// Multiplier on the decode-gap EMA for the repatch distance (design: 1.6).
    #[arg(long)]
    repatch_gain: Option<f64>,
    /// Period in frames (sim and null output; JACK dictates its own).
    #[arg(long, default_value_t = 128)]
    period: usize,
    /// Write the JSON report here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Engine backend (builtin-cuda and auto need a build with `--features cuda`).
    #[arg(long, value_enum, default_value = "builtin-cpu")]
    engine: EngineChoice,
    /// A model bundle (docs/bundles.md) to run instead of the built-in model; ONNX Runtime
    /// is found as the daemon finds it (`ORT_DYLIB_PATH`, ...).
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
}

/// Run `latentctl golden`.
pub fn run(args: GoldenArgs) -> Result<(), String> {
    let mut opts = GoldenOptions {
        actions: args.actions,
        spacing_s: args.spacing,
        loop_s: args.loop_s,
        period_frames: args.period,
        ..GoldenOptions::default()
    };
    if !args.scenarios.is_empty() {
        opts.scenarios = args.scenarios.clone();
    }
    opts.engine.lead.repatch = matches!(args.repatch, Switch::On);
    if let Some(g) = args.repatch_gain {
        opts.engine.repatch_gain = g;
    }
    opts.engine.validate().map_err(|e| e.to_string())?;
    let run = match &args.model {
        Some(dir) => {
            let model = OnnxModel::load(dir, OnnxOptions::default())
                .map_err(|e| format!("model {}: {e}", dir.display()))?;
            eprintln!("engine backend: bundle: {}", model.describe());
            if let Some(chunk_s) = model.manifest().walk_chunk_s() {
                opts.engine.walk_chunk_s = chunk_s;
            }
            run_golden(Arc::new(model), &opts, &args)?
        }
        None => {
            let (model, backend) = latentd::engine_select::build_builtin(args.engine)?;
            eprintln!("engine backend: {}", backend());
            run_golden(model, &opts, &args)?
        }
    };
    print_table(&run);
    if let Some(path) = &args.out {
        std::fs::write(path, run.to_json() + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn run_golden<M: Model>(
    model: Arc<M>,
    opts: &GoldenOptions,
    args: &GoldenArgs,
) -> Result<GoldenRun, String> {
    if args.sim {
        run_sim(model, opts).map_err(|e| e.to_string())
    } else {
        realtime(model, opts, args.audio)
    }
}

fn realtime<M: Model>(
    model: Arc<M>,
    opts: &GoldenOptions,
    audio: AudioChoice,
) -> Result<GoldenRun, String> {
    let choice = match audio {
        AudioChoice::Null => BackendChoice::Null,
        AudioChoice::Jack => BackendChoice::Jack,
    };
    let g = model.geometry();
    let output = open_output(
        choice,
        &OutputOptions {
            client_name: "latentctl-golden".into(),
            autoconnect: false,
            sample_rate: g.sample_rate,
            period_frames: opts.period_frames,
            midi_in: None,
            inputs: 0,
        },
    )
    .map_err(|e| e.to_string())?;
    let format = output.format();
    if format.sample_rate != g.sample_rate {
        return Err(format!(
            "the output runs at {} Hz; the model makes {} Hz",
            format.sample_rate, g.sample_rate
        ));
    }
    let source = source_loop(g.sample_rate, g.audio_channels, opts.loop_s);
    let ring = PlayheadRing::from_interleaved(
        source.samples,
        source.channels,
        source.sample_rate,
        PlayheadRing::guard_for_period(format.period_frames),
    )
    .map_err(|e| e.to_string())?;
    let (writer, reader) = ring.split();
    let running = output
        .start(PeriodProcessor::new(reader, None))
        .map_err(|e| e.to_string())?;
    eprintln!(
        "latentctl golden: playing through {} at {} Hz, period {} frames",
        running.name(),
        format.sample_rate,
        format.period_frames
    );
    let xruns = || running.stats().xruns;
    let result = run_realtime(model, writer, opts, &xruns);
    running.stop().map_err(|e| e.to_string())?;
    result.map(|(run, _)| run).map_err(|e| e.to_string())
}

fn print_table(run: &GoldenRun) {
    println!(
        "golden ({}, repatch {}): ms, p50 / p95 / p99",
        run.mode,
        if run.repatch { "on" } else { "off" }
    );
    for (name, report) in &run.scenarios {
        for (kind, f) in &report.actions {
            let cell = |p: &Option<latentd_engine::runner::Percentiles>| {
                p.map_or("-".to_string(), |p| {
                    format!("{:.1} / {:.1} / {:.1}", p.p50, p.p95, p.p99)
                })
            };
            println!(
                "{name:>14} {:<14} n={:<3} ack {:<22} next {:<22} first {:<24} full {:<24} unheard {}",
                format!("{kind:?}"),
                f.actions,
                cell(&f.ack_gap_ms),
                cell(&f.next_slice_ms),
                cell(&f.audible_first_ms),
                cell(&f.audible_full_ms),
                f.unheard
            );
        }
        let s = &report.stream;
        let cell = |p: &Option<latentd_engine::runner::Percentiles>, scale: f64| {
            p.map_or("-".to_string(), |p| {
                format!("{:.2} / {:.2}", p.p50 * scale, p.p95 * scale)
            })
        };
        println!(
            "{name:>14} stream: tick ms {} decode ms {} lead ms {} late {} underruns {}",
            cell(&s.tick_ms, 1.0),
            cell(&s.decode_ms, 1.0),
            cell(&s.lead_s, 1000.0),
            s.late_landings,
            s.underruns
        );
    }
}
