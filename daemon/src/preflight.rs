//! The checks of a start that need no audio server, in one place: `latentd check-config` runs
//! them, and the start runs them first, so a config that `check-config` passes does not fail
//! later on anything that could have been known then.
//!
//! Checked: the source file is a readable, supported, non-empty WAV (header only, nothing
//! decoded); the record file can be created (not a directory, its folder exists); the media
//! folder exists and is a folder; the engine backend is one this build has; the loop is
//! long enough for the ring's guard at the configured period and for the engine's kept
//! window (the rule of the engine's start: the window plus the guard inside the loop, and
//! one latent frame more than the window), a source's length by its header, else
//! `source.loop_seconds`; with a model bundle (`bundle` needs one given) the loop is checked
//! by the start, once the bundle's rate and window are known. Not checked, as they need the running system: the
//! audio server (and a JACK server's own period, which can ask for a longer loop), a CUDA
//! device, the OSC port being free.
//!
//! Threading: main thread, before anything starts; reads file headers and metadata only.

use latentd_engine::audio_file;
use latentd_engine::model::builtin::{FRAME_RATE, SAMPLE_RATE as ENGINE_RATE};
use latentd_engine::ring::PlayheadRing;
use latentd_engine::runner::engine_config::EngineConfig;
use latentd_osc_schema::MediaRoot;

use crate::audio::Rates;
use crate::engine_select::EngineChoice;
use crate::settings::Settings;

/// Run every check; the first failure is one line, as the start would print it.
pub fn check(settings: &Settings) -> Result<(), String> {
    let source = match &settings.source {
        Some(path) => Some(audio_file::probe_wav(path).map_err(|e| format!("source {e}"))?),
        None => None,
    };
    if let Some(path) = &settings.record {
        crate::record::check_record_path(path)?;
    }
    MediaRoot::new(&settings.media_folder).map_err(|e| format!("media folder: {e}"))?;
    crate::engine_select::check_choice(settings.engine, &settings.model)?;
    if settings.engine == EngineChoice::Bundle {
        // A bundle's rate and window are known once it is loaded: the start checks them.
        return Ok(());
    }
    // The loop at the engine's rate, as the ring will hold it.
    let loop_frames = match &source {
        Some(info) => (info.frames as u64 * u64::from(ENGINE_RATE))
            .div_ceil(u64::from(info.sample_rate)) as usize,
        None => (settings.loop_seconds * f64::from(ENGINE_RATE)).round() as usize,
    };
    let rates = Rates {
        ring: ENGINE_RATE,
        output: settings.sample_rate,
    };
    let guard =
        PlayheadRing::guard_for_period(rates.ring_frames_per_period(settings.period_frames));
    let hop = (ENGINE_RATE / FRAME_RATE) as usize;
    let keep = EngineConfig::default().keep_latent_frames;
    let shortest = PlayheadRing::min_frames(guard)
        .max(keep * hop + guard + 1)
        .max((keep + 1) * hop);
    if loop_frames < shortest {
        return Err(format!(
            "loop: {loop_frames} frames ({:.4} s) at {ENGINE_RATE} Hz is shorter than the \
             {shortest} frames ({:.4} s) the engine's window and a period of {} frames need",
            loop_frames as f64 / f64::from(ENGINE_RATE),
            shortest as f64 / f64::from(ENGINE_RATE),
            settings.period_frames
        ));
    }
    Ok(())
}
