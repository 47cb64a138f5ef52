//! The `latentd` binary: parse the command line, open the output, play the loop from the
//! playhead ring until SIGINT or SIGTERM, then stop cleanly and print the counters.
//!
//! Order matters for "nothing half-started": settings and the source's header are checked
//! before any output opens; an output that opened is dropped (closed) if anything after it
//! fails. Startup errors print one line, `latentd: error: ...`, and exit with status 2.
//!
//! Threading: everything here runs on the main thread, which ends up waiting for a signal;
//! the output's realtime callback and the recorder's writer thread are started by their
//! modules.

use std::process::ExitCode;

use latentd::audio::PeriodProcessor;
use latentd::audio::select::{OUTPUT_CHANNELS, OutputOptions, open_output};
use latentd::cli::{Invocation, Settings, parse_args};
use latentd::record::Recorder;
use latentd_engine::PlayheadRing;
use latentd_engine::audio_file::{self, LoopAudio};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// In debug builds every allocation inside the realtime callback aborts the process.
#[cfg(debug_assertions)]
#[global_allocator]
static ALLOCATOR: assert_no_alloc::AllocDisabler = assert_no_alloc::AllocDisabler;

/// Seconds of audio the record queue holds before the callback drops frames.
const RECORD_QUEUE_SECONDS: f64 = 2.0;

/// Exit status for bad input or anything that stops startup.
const EXIT_STARTUP: u8 = 2;
/// Exit status for a failure while stopping.
const EXIT_RUNTIME: u8 = 1;

fn main() -> ExitCode {
    let settings = match parse_args(std::env::args_os()) {
        Ok(Invocation::Run(settings)) => settings,
        Ok(Invocation::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::CheckConfig(settings)) => {
            print!("{}", settings.to_toml());
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(EXIT_STARTUP, &e),
    };
    let level = settings.log_level.filter();
    // libjack reports every failed connect (and its own shared-memory chatter) as errors
    // through the jack crate's log bridge; latentd states the outcome in its own words, so
    // libjack's lines only show when debugging.
    let libjack = if level >= log::LevelFilter::Debug {
        level
    } else {
        log::LevelFilter::Off
    };
    env_logger::Builder::new()
        .filter_level(level)
        .filter_module("jack", libjack)
        .filter_module("jack_sys", libjack)
        .target(env_logger::Target::Stderr)
        .init();
    match run(&settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => fail(code, &message),
    }
}

fn fail(code: u8, message: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("latentd: error: {message}");
    ExitCode::from(code)
}

/// Start, play until a signal, stop. Errors carry their exit status.
fn run(settings: &Settings) -> Result<(), (u8, String)> {
    let startup = |e: &dyn std::fmt::Display| (EXIT_STARTUP, e.to_string());
    // Signals first, so one that arrives during startup is not lost.
    let mut signals = Signals::new([SIGINT, SIGTERM])
        .map_err(|e| startup(&format!("cannot install signal handlers: {e}")))?;

    // Validate every input before opening anything.
    if let Some(path) = &settings.source {
        audio_file::probe_wav(path).map_err(|e| startup(&format!("source {e}")))?;
    }
    if let Some(path) = &settings.record {
        check_record_path(path).map_err(|e| startup(&e))?;
    }

    let output = open_output(
        settings.backend,
        &OutputOptions {
            client_name: settings.client_name.clone(),
            autoconnect: settings.autoconnect,
            sample_rate: settings.sample_rate,
            period_frames: settings.period_frames,
        },
    )
    .map_err(|e| startup(&e))?;
    let format = output.format();
    log::info!(
        "audio: {} output, {} Hz, period {} frames, {} channels",
        output.name(),
        format.sample_rate,
        format.period_frames,
        format.channels
    );

    // From here on, returning early drops (closes) `output`.
    let audio = load_loop(settings, format.sample_rate).map_err(|e| startup(&e))?;
    let frames = audio.frames();
    let ring = PlayheadRing::from_interleaved(
        audio.samples,
        audio.channels,
        audio.sample_rate,
        PlayheadRing::guard_for_period(format.period_frames),
    )
    .map_err(|e| startup(&format!("loop: {e}")))?;
    let handle = ring.handle();
    let (_writer, reader) = ring.split();

    let (recorder, tap) = match &settings.record {
        Some(path) => {
            let (rec, producer) = Recorder::start(
                path,
                format.sample_rate,
                format.channels,
                RECORD_QUEUE_SECONDS,
            )
            .map_err(|e| startup(&e))?;
            (Some(rec), Some((producer, format.channels)))
        }
        None => (None, None),
    };
    let running = output
        .start(PeriodProcessor::new(reader, tap))
        .map_err(|e| startup(&e))?;
    log::info!(
        "playing a loop of {frames} frames ({:.2} s){}",
        frames as f64 / format.sample_rate as f64,
        match &settings.record {
            Some(p) => format!(", recording to {}", p.display()),
            None => String::new(),
        }
    );

    let signal = signals.forever().next().unwrap_or(SIGTERM);
    log::info!(
        "{} received, stopping",
        if signal == SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        }
    );

    let stats = running.stats();
    let stopped = running.stop();
    let recorded = recorder.map(Recorder::finish);
    let counters = handle.counters();
    eprintln!(
        "latentd: stopped: periods={} frames={} torn_reads={} late_frames={} xruns={} record_dropped={}",
        counters.periods,
        counters.frames_played,
        counters.torn_reads,
        counters.late_frames,
        stats.xruns,
        stats.record_dropped
    );
    stopped.map_err(|e| (EXIT_RUNTIME, e.to_string()))?;
    if let Some(recorded) = recorded {
        let frames = recorded.map_err(|e| (EXIT_RUNTIME, e.to_string()))?;
        log::info!("recorded {frames} frames");
    }
    Ok(())
}

/// The loop to play: the source converted to the output's rate and channels, or the
/// built-in test loop.
fn load_loop(settings: &Settings, sample_rate: u32) -> Result<LoopAudio, String> {
    match &settings.source {
        Some(path) => {
            let audio = audio_file::load_wav(path, sample_rate, OUTPUT_CHANNELS)
                .map_err(|e| format!("source {e}"))?;
            log::info!(
                "source {}: {} frames at {} Hz",
                path.display(),
                audio.frames(),
                sample_rate
            );
            Ok(audio)
        }
        None => {
            log::info!(
                "no --source: playing the built-in test loop ({} s)",
                settings.loop_seconds
            );
            Ok(audio_file::test_signal(
                sample_rate,
                OUTPUT_CHANNELS,
                settings.loop_seconds,
            ))
        }
    }
}

/// The record path must name a file in an existing directory.
fn check_record_path(path: &std::path::Path) -> Result<(), String> {
    if path.is_dir() {
        return Err(format!("record {}: is a directory", path.display()));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!(
            "record {}: directory {} does not exist",
            path.display(),
            dir.display()
        ));
    }
    Ok(())
}
