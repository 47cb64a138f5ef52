//! The daemon's life: start every part in an order that never half-starts, serve until a
//! signal, stop in the reverse order without a click.
//!
//! Start: (under a session manager, `NSM_URL`: announce and take the session's open
//! first, [`crate::nsm`]) → validate inputs → state file → model, knobs, conditioning (the saved session over
//! the config) → output (its period sizes the ring's guard; the ring runs at the model's
//! rate and the callback converts to the output's) → ring → engine thread →
//! recorder (its writer thread, parked until a recording starts; `--record` starts one
//! here) → output running → encoder thread, schedule thread ([`crate::schedule`]), MIDI
//! thread (with MIDI input on, [`crate::control::midi`]), OSC,
//! OSCQuery → zeroconf advertising ([`crate::discovery`]; a failure is only a warning) →
//! health thread (meters, alarms: [`crate::health`]) → memory locked → `READY=1`
//! (only now: the output plays and the sockets are bound; under NSM the open is answered
//! now) → watchdog.
//! Serve: SIGHUP reloads the config (`RELOADING=1` … `READY=1`, see [`crate::reload`]),
//! applying what can change live (log level, OSC allowlist, knob defaults, lead settings,
//! schedule)
//! without touching the audio, and naming the changed keys that need a restart; `STATUS=`
//! lines every few seconds; a failed engine tick (caught by the engine, which restarts its pipeline
//! while the ring keeps playing) is logged, and so are runtime model faults (a tick whose
//! model run failed or gave NaN / Inf, as the engine counts them in
//! [`EngineStats::model_faults`]; at most one line per [`MODEL_FAULT_LOG_EVERY`], with the
//! count), which the `STATUS=` line also carries.
//! Stop (SIGINT, SIGTERM and the other stop signals of [`crate::signals`]; a session
//! manager's quit and systemd's stop are SIGTERM too): [`Daemon::stop`], the one place the
//! order is written, each step logged (`stop: ...`): watchdog pings end, `STOPPING=1`; the
//! NSM, health, schedule and MIDI threads end; fade to silence (the output's supervisor
//! owns the one stop fade, [`OutputSupervisor::fade_out`]); zeroconf goodbyes; close OSC,
//! OSCQuery and the capture; finish the queued jobs, save the state; stop the output and the
//! engine; complete a running recording, print the counters. A start that fails half-way
//! drops what it built in reverse order; an output already playing fades as it drops.
//!
//! SIGUSR1 writes the engine's trace as JSON lines beside the state file. Every other signal
//! that would end the process is ignored with a log line (see [`crate::signals`]).
//!
//! Threading: main thread. Test hooks, only in a build with the `fault-injection` feature
//! (scripts/test.sh; never a release): `LATENTD_TEST_ENGINE_STALL_S=<s>` stalls the engine
//! thread that long, 1 s after `READY=1` (the watchdog test makes the engine hang with it);
//! `LATENTD_TEST_ENGINE_PANIC_AFTER_S=<s>` makes one engine tick panic, `<s>` seconds after
//! `READY=1` (the fault test checks the recovery: log, `/status`, unbroken audio).

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use latentd_engine::audio_clip::AudioView;
use latentd_engine::audio_file::LoopAudio;
use latentd_engine::conditioning::{Conditioner, ConditioningControl, PromptSpec};
use latentd_engine::knobs::KnobReader;
use latentd_engine::knobs::{KnobId, KnobStore};
use latentd_engine::model::Model;
use latentd_engine::ring::PlayheadRing;
use latentd_engine::ring::RingWriter;
use latentd_engine::runner::clock::RealClock;
use latentd_engine::runner::engine_config::EngineError;
use latentd_engine::runner::engine_config::{EngineConfig, EngineStats};
use latentd_engine::runner::engine_loop::{Engine, EngineHandle};
use latentd_osc_schema::{MediaRoot, Schema};
use signal_hook::iterator::Signals;

use crate::audio::input::input_queue;
use crate::audio::midi_in::{MIDI_QUEUE_CAPACITY, MidiInput};
use crate::audio::select::{OUTPUT_CHANNELS, OutputOptions, open_output};
use crate::audio::supervisor::OutputSupervisor;
use crate::audio::{AudioError, PeriodProcessor, Rates};
use crate::capture::Capture;
use crate::control::jobs::{JobContext, JobWorker};
use crate::control::midi::{MidiControl, spawn_drain};
use crate::control::session::Session;
use crate::control::{ControlHandler, DaemonEngine, Dispatcher, StatusSources};
use crate::discovery::{Advertiser, Announcement};
use crate::engine_select::ChosenModel;
use crate::engine_select::EngineChoice;
use crate::health::{HealthParts, HealthState, HealthThread, RecordAlarm};
use crate::load::{LoadError, load_wav_or_stop};
use crate::metrics::{Metrics, MetricsSources};
use crate::nsm::{NsmClient, NsmThread};
use crate::osc::oscquery::{KnobValues, OscQueryConfig, OscQueryServer};
use crate::osc::{DEFAULT_MAX_SUBSCRIBERS, OscConfig, OscServer, Subscribers};
use crate::presets::{PresetLibrary, presets_dir};
use crate::record::{RecordError, RecordFormat, RecordTarget, Recorder};
use crate::reload::{LiveParts, reload_config};
use crate::schedule::{LocalClock, ScheduleRunner};
use crate::settings::Settings;
use crate::signals::{IgnoredLog, SignalAction};
use crate::state::{DebouncedSaver, PersistentState, StateStore};
use crate::stoppable::StoppableThread;
use crate::systemd::{
    Liveness, Notifier, WatchdogSupervisor, Watched, ping_interval, watchdog_timeout_from_env,
};

/// Exit status for bad input at start (nothing was left running).
pub const EXIT_STARTUP: u8 = 2;
/// Exit status for a failure while running or stopping.
pub const EXIT_RUNTIME: u8 = 1;
/// "Exit status" of a start cut short by a stop signal (while a file loads): nothing was
/// changed, the process exits 0 after the message is logged.
pub const EXIT_STOPPED: u8 = 0;
/// Seconds of audio the record queue holds before it drops.
const RECORD_QUEUE_SECONDS: f64 = 2.0;
/// State saves are coalesced within this window.
const STATE_DEBOUNCE: Duration = Duration::from_millis(500);
/// How often `STATUS=` is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(5);
/// At most one log line about runtime model faults per this span.
pub const MODEL_FAULT_LOG_EVERY: Duration = Duration::from_secs(10);

/// Why the service ended early, with the exit status each reason gives
/// ([`ServiceError::exit_code`]).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Bad input at start (a file, a port, a model, the state); nothing was left running.
    #[error("{0}")]
    Startup(String),
    /// The audio output could not be opened or started (no server, the client name taken,
    /// a format it cannot play): a failure at start, exit status 2.
    #[error(transparent)]
    Output(AudioError),
    /// A failure while running or stopping.
    #[error("{0}")]
    Runtime(String),
    /// The audio output failed to stop cleanly: exit status 1.
    #[error(transparent)]
    OutputStop(AudioError),
    /// A start cut short by a stop signal (while a file loaded): nothing was changed.
    #[error("stop signal received: {0}")]
    Stopped(String),
}

impl ServiceError {
    /// The process's exit status: [`EXIT_STARTUP`], [`EXIT_RUNTIME`] or [`EXIT_STOPPED`].
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Startup(_) | Self::Output(_) => EXIT_STARTUP,
            Self::Runtime(_) | Self::OutputStop(_) => EXIT_RUNTIME,
            Self::Stopped(_) => EXIT_STOPPED,
        }
    }
}

type Failure = ServiceError;

fn startup(e: &dyn std::fmt::Display) -> Failure {
    ServiceError::Startup(e.to_string())
}

fn runtime(e: &dyn std::fmt::Display) -> Failure {
    ServiceError::Runtime(e.to_string())
}

/// A load at start that failed (exit 2) or was cut short by a stop signal (exit 0).
fn load_failure(what: &str, e: LoadError) -> Failure {
    match e {
        LoadError::Stopped(_) => ServiceError::Stopped(e.to_string()),
        e => startup(&format!("{what} {e}")),
    }
}

/// The engine thread's heartbeat, as the watchdog reads it.
struct EngineBeat(Arc<DaemonEngine>);

impl Liveness for EngineBeat {
    fn beats(&self) -> u64 {
        self.0.heartbeat()
    }
}

/// What [`start_engine`] needs besides the model.
struct EngineInputs<'a> {
    ring: RingWriter,
    knobs: &'a KnobStore,
    knob_reader: KnobReader,
    config: EngineConfig,
    settings: &'a Settings,
    restored: &'a PersistentState,
    /// Set by a stop signal: the start's reference loads give up on it.
    stop: &'a std::sync::atomic::AtomicBool,
}

/// The running engine as the rest of the daemon sees it: model-independent handles.
struct EngineParts {
    engine: Arc<DaemonEngine>,
    conditioner: Arc<dyn ConditioningControl>,
    /// Joins the engine thread once every other handle is gone (else its `Drop` does).
    stop_engine: Box<dyn FnOnce() -> Result<(), EngineError>>,
}

/// The one place that names the model's type: its conditioner (the start prompt and
/// references applied before the first tick), the engine thread, and the handles the
/// control plane gets.
fn start_engine<M: Model>(model: Arc<M>, inputs: EngineInputs<'_>) -> Result<EngineParts, Failure> {
    let rate = model.geometry().sample_rate;
    let (conditioner, cond_reader) = Conditioner::new(Arc::clone(&model), None);
    apply_start_conditioning(
        &conditioner,
        model.default_prompt(),
        inputs.settings,
        inputs.restored,
        rate,
        inputs.stop,
    )?;
    let clock = RealClock::new(inputs.ring.handle());
    let engine = Engine::spawn(
        model,
        inputs.ring,
        inputs.knob_reader,
        cond_reader,
        inputs.config,
        clock,
    )
    .map_err(|e| startup(&e))?;
    let engine: Arc<EngineHandle<M>> = Arc::new(engine);
    inputs.knobs.set_waker(engine.knob_waker());
    let stopper = Arc::clone(&engine);
    Ok(EngineParts {
        engine,
        conditioner: Arc::new(conditioner),
        stop_engine: Box::new(move || match Arc::try_unwrap(stopper) {
            Ok(engine) => engine.stop().map(drop),
            // A test hook thread still holds a handle: its drop stops the engine.
            Err(_) => Ok(()),
        }),
    })
}

/// Run the daemon with `settings` until SIGINT or SIGTERM. `args` is the command line, kept
/// for SIGHUP reloads. With `NSM_URL` set, join the session first: its open names the JACK
/// client and the state's folder before anything opens (see [`crate::nsm`] for the order).
pub fn run(settings: &Settings, args: Vec<OsString>) -> Result<(), Failure> {
    let Some(url) = crate::nsm::url_from_env() else {
        return run_session(settings, args, None);
    };
    let nsm = NsmClient::join(&url).map_err(|e| startup(&e))?;
    let settings = nsm.session_settings(settings).map_err(|e| {
        nsm.open_failed(&e.to_string());
        startup(&e)
    })?;
    let result = run_session(&settings, args, Some(&nsm));
    if let Err(why) = &result {
        nsm.open_failed(&why.to_string());
    }
    result
}

/// [`run`], joined to a session manager's session when `nsm` is given: the open is
/// answered once the daemon is ready.
fn run_session(
    settings: &Settings,
    args: Vec<OsString>,
    nsm: Option<&NsmClient>,
) -> Result<(), Failure> {
    let mut daemon = start(settings, nsm)?;
    daemon.serve(args);
    daemon.stop()
}

/// The running daemon: every part [`start`] built, held until [`Daemon::stop`]
/// stops them in the one order written there. The parts are grouped by role, and the
/// groups are declared in the order they stop, so that a daemon dropped without `stop` (a
/// panic while serving) ends them in nearly the same order; its output then fades as it
/// drops ([`OutputSupervisor`]'s drop).
pub struct Daemon<'a> {
    settings: &'a Settings,
    nsm: Option<&'a NsmClient>,
    signals: Signals,
    systemd: SystemdParts,
    actors: Actors,
    control: ControlParts,
    output: OutputParts,
    engine: EngineParts,
}

/// systemd's side: `READY=1` / `STATUS=` / `STOPPING=1`, and the watchdog's pings.
struct SystemdParts {
    notifier: Notifier,
    watchdog: Option<WatchdogSupervisor>,
}

/// The threads that act on their own, not asked by a client: the NSM thread (saves on the
/// session manager's request), health alarms, schedule cues, the MIDI drain.
struct Actors {
    nsm_thread: Option<NsmThread>,
    health: HealthThread,
    health_state: Arc<HealthState>,
    schedule: ScheduleRunner,
    midi_thread: Option<StoppableThread<()>>,
}

/// The control surface and what serves it: zeroconf, OSC, OSCQuery, the live capture, the
/// dispatcher, the job worker (encoder) and the session (the state file's saver).
struct ControlParts {
    advertiser: Option<Advertiser>,
    osc: OscServer,
    oscquery: Option<OscQueryServer>,
    capture: Option<Arc<Capture>>,
    dispatcher: Arc<Dispatcher>,
    worker: JobWorker,
    session: Arc<Session>,
}

/// The audio output (its supervisor owns the stop fade), the recorder behind its tap, and
/// the ring's counters for the last line.
struct OutputParts {
    running: OutputSupervisor,
    recorder: Arc<Recorder>,
    ring: latentd_engine::RingHandle,
}

/// Start every part in the order of the module doc; under a session manager (`nsm`)
/// its open is answered once the daemon is ready. A failure returns at once: what was
/// built so far drops in the reverse order it was built (an output already playing
/// fades as its supervisor drops).
pub fn start<'a>(
    settings: &'a Settings,
    nsm: Option<&'a NsmClient>,
) -> Result<Daemon<'a>, ServiceError> {
    let signals = crate::signals::install()
        .map_err(|e| startup(&format!("cannot install signal handlers: {e}")))?;
    // Set by a stop signal: the loads of the start give up on it (SIGTERM within 1 s).
    let stop_requested = crate::signals::stop_flag()
        .map_err(|e| startup(&format!("cannot install signal handlers: {e}")))?;
    let notifier = Notifier::from_env().map_err(|e| startup(&format!("NOTIFY_SOCKET: {e}")))?;

    // Every input is checked before anything opens, as `check-config` checks it.
    crate::preflight::check(settings).map_err(|e| startup(&e))?;
    let media = MediaRoot::new(&settings.media_folder)
        .map_err(|e| startup(&format!("media folder: {e}")))?;
    let schema = Arc::new(
        Schema::new(latentd_osc_schema::reference_knobs())
            .map_err(|e| startup(&format!("knob table: {e}")))?
            .with_media_root(media),
    );

    // MIDI input: its queue outlives every incarnation of the output (see audio::midi_in).
    let (midi_in, midi_reader) = if settings.midi {
        let (handle, reader) = MidiInput::queue(MIDI_QUEUE_CAPACITY);
        (Some(handle), Some(reader))
    } else {
        (None, None)
    };
    let output_options = OutputOptions {
        client_name: settings.client_name.clone(),
        autoconnect: settings.autoconnect,
        sample_rate: settings.sample_rate,
        period_frames: settings.period_frames,
        midi_in: midi_in.clone(),
        inputs: settings.inputs,
    };
    let output = open_output(settings.backend, &output_options).map_err(Failure::Output)?;
    // JACK has a MIDI port, PipeWire a MIDI stream; the null output has neither (a learn
    // is refused rather than left waiting forever).
    let (midi_in, midi_reader) = match output.name() {
        "jack" if settings.midi => {
            log::info!(
                "MIDI input on: port {}:{}",
                settings.client_name,
                crate::audio::midi_in::MIDI_PORT_NAME
            );
            (midi_in, midi_reader)
        }
        "pipewire" if settings.midi => {
            log::info!(
                "MIDI input on: PipeWire node {}",
                crate::audio::midi_in::pipewire_midi_node_name(&settings.client_name)
            );
            (midi_in, midi_reader)
        }
        other if settings.midi => {
            log::warn!(
                "MIDI input asked for, but the {other} output has no MIDI port (it talks to \
                 no audio server, so nothing could feed one; JACK and PipeWire have one): \
                 MIDI input is off"
            );
            (None, None)
        }
        _ => (midi_in, midi_reader),
    };
    let format = output.format();
    log::info!(
        "audio: {} output, {} Hz, period {} frames, {} channels",
        output.name(),
        format.sample_rate,
        format.period_frames,
        format.channels
    );
    let (store, restored, outcome) = StateStore::open(&settings.state_path);
    log::debug!("state {}: {outcome:?}", settings.state_path.display());
    let saver = DebouncedSaver::spawn(store, STATE_DEBOUNCE)
        .map_err(|e| startup(&format!("state saver: {e}")))?;

    let (model, backend_name) = crate::engine_select::build_model(settings.engine, &settings.model)
        .map_err(|e| startup(&e))?;
    let geometry = model.geometry();
    let inert_knobs = model.inert_knobs();
    let (knobs, knob_reader) = KnobStore::new();
    let knobs = Arc::new(knobs);
    apply_start_knobs(&knobs, &model.start_knobs(), settings, &restored);

    // The ring runs at the model's rate (the engine writes its windows straight into it),
    // also with `--engine off`, so a source set later is at the engine's rate; the output
    // callback converts when the server runs at another rate.
    let ring_rate = geometry.sample_rate;

    // The loop: the source (the saved one, else the configured one), else silence that the
    // engine fills from the prompt. A saved source that cannot be loaded any more (moved,
    // deleted) is skipped with a warning: the state file must never keep the daemon down.
    let rates = Rates {
        ring: ring_rate,
        output: format.sample_rate,
    };
    let ring_period = rates.ring_frames_per_period(format.period_frames);
    let saved_source = match &restored.source {
        Some(path) => match load_source(path, ring_rate, &stop_requested) {
            Ok(audio) => Some((path.clone(), audio)),
            Err(e @ LoadError::Stopped(_)) => return Err(load_failure("source", e)),
            Err(e) => {
                log::warn!("state: saved source {e}; not restored");
                None
            }
        },
        None => None,
    };
    let (source_path, source) = match saved_source {
        Some((path, audio)) => (Some(path), Some(audio)),
        None => match &settings.source {
            Some(path) => {
                let audio = load_source(path, ring_rate, &stop_requested)
                    .map_err(|e| load_failure("source", e))?;
                (Some(path.clone()), Some(audio))
            }
            None => (None, None),
        },
    };
    let ring = match &source {
        Some(audio) => PlayheadRing::from_interleaved(
            audio.samples.clone(),
            audio.channels,
            audio.sample_rate,
            PlayheadRing::guard_for_period(ring_period),
        ),
        None => PlayheadRing::silence(
            (settings.loop_seconds * f64::from(ring_rate)).round() as usize,
            OUTPUT_CHANNELS,
            ring_rate,
            PlayheadRing::guard_for_period(ring_period),
        ),
    }
    .map_err(|e| startup(&format!("loop: {e}")))?;
    let ring_handle = ring.handle();
    let (writer, reader) = ring.split();

    let generate = settings.engine != EngineChoice::Off;
    let default_config = EngineConfig::default();
    let engine_config = EngineConfig {
        lead: settings.lead,
        start_paused: !generate,
        walk_chunk_s: model.walk_chunk_s().unwrap_or(default_config.walk_chunk_s),
        ..default_config
    };
    let inputs = EngineInputs {
        ring: writer,
        knobs: &knobs,
        knob_reader,
        config: engine_config,
        settings,
        restored: &restored,
        stop: &stop_requested,
    };
    let EngineParts {
        engine,
        conditioner,
        stop_engine,
    } = match model {
        ChosenModel::Builtin(model) => start_engine(model, inputs),
        ChosenModel::Bundle(model) => start_engine(model, inputs),
    }?;
    if let Some(audio) = &source {
        engine
            .set_source(AudioView {
                samples: &audio.samples,
                channels: audio.channels,
                sample_rate: audio.sample_rate,
            })
            .map_err(|e| startup(&format!("source: {e}")))?;
    }
    if let Some(band) = restored.loop_band
        && let Err(e) = engine.set_loop(band.start, band.end)
    {
        log::warn!("state: saved loop band not restored: {e}");
    }

    // The recorder's writer thread is parked until a recording starts (`--record` now,
    // `/record/start` later); the callback only reads its flag until then.
    let subscribers = Subscribers::new(DEFAULT_MAX_SUBSCRIBERS);
    let health_state = Arc::new(HealthState::new(settings.health.action));
    let (recorder, tap) = Recorder::spawn(
        RecordFormat {
            sample_rate: format.sample_rate,
            channels: format.channels,
            queue_seconds: RECORD_QUEUE_SECONDS,
        },
        settings.record_config,
        Box::new(RecordAlarm {
            state: Arc::clone(&health_state),
            subscribers: subscribers.clone(),
            action: settings.health.action,
        }),
    )
    .map_err(|e| startup(&e))?;
    let recorder = Arc::new(recorder);
    if let Some(path) = &settings.record {
        recorder
            .start(RecordTarget {
                name: path.display().to_string(),
                path: path.clone(),
                replace: true,
            })
            .map_err(|e| startup(&e))?;
    }
    let mut processor = PeriodProcessor::new(reader, Some(tap))
        .converting_to(format.sample_rate, format.period_frames)
        .map_err(Failure::Output)?;
    // The live input's queue, when input ports are asked for (`/capture`).
    let mut input_reader = None;
    if settings.inputs > 0 {
        let (tap, reader) = input_queue(settings.inputs, format.sample_rate, ring_handle.clone());
        processor = processor.with_input(tap);
        input_reader = Some(reader);
    }
    if rates.converts() {
        log::info!(
            "audio: output at {} Hz, engine and ring at {} Hz: converting in the callback \
             ({} frames of added latency)",
            rates.output,
            rates.ring,
            processor.conversion_latency_frames()
        );
    }
    let output_stats = processor.stats();
    let meters = processor.meters();
    // The supervisor keeps the output alive: a JACK server that goes away is retried with
    // backoff and our ports and connections come back with it; the ring plays on.
    let running =
        OutputSupervisor::adopt(output, output_options, processor).map_err(Failure::Output)?;
    log::info!(
        "playing a loop of {} frames ({:.2} s){}{}",
        ring_handle.loop_frames(),
        ring_handle.loop_frames() as f64 / f64::from(ring_rate),
        match &source_path {
            Some(p) => format!(" from {}", p.display()),
            None => " generated from the prompt".into(),
        },
        match &settings.record {
            Some(p) => format!(", recording to {}", p.display()),
            None => String::new(),
        }
    );

    let mut session_state = restored.clone();
    session_state.source = source_path.clone();
    let session = Arc::new(Session::new(session_state, Some(saver)));
    let presets = Arc::new(PresetLibrary::open(presets_dir(&settings.state_path)));
    let (worker, jobs) = JobWorker::spawn(JobContext {
        conditioner: Arc::clone(&conditioner),
        engine: Arc::clone(&engine),
        subscribers: subscribers.clone(),
        session: Arc::clone(&session),
        presets: Arc::clone(&presets),
        geometry,
        stop: Arc::clone(&stop_requested),
    })
    .map_err(|e| startup(&format!("encoder thread: {e}")))?;
    let capture = input_reader.map(|reader| {
        Capture::new(
            reader,
            running.state_handle(),
            ring_handle.clone(),
            rates,
            jobs.clone(),
            settings.capture_save.clone(),
        )
    });
    let dispatcher = Arc::new(
        Dispatcher::new(
            Arc::clone(&schema),
            Arc::clone(&knobs),
            Arc::clone(&engine),
            jobs,
            subscribers.clone(),
            Arc::clone(&session),
            presets,
            StatusSources {
                output: Arc::clone(&output_stats),
                meters: Arc::clone(&meters),
                backend: if generate {
                    backend_name
                } else {
                    Arc::new(|| "off".into())
                },
                generate,
                output_state: running.state_handle(),
                inert_knobs: inert_knobs.clone(),
            },
        )
        .with_recorder(Arc::clone(&recorder))
        .with_midi(MidiControl::new(
            midi_in.map(|handle| handle.0),
            start_midi_maps(&schema, settings, &restored),
        ))
        .with_capture(capture.clone()),
    );
    let midi_thread = match midi_reader {
        Some(reader) => Some(
            spawn_drain(reader, Arc::clone(&dispatcher))
                .map_err(|e| startup(&format!("MIDI thread: {e}")))?,
        ),
        None => None,
    };
    let schedule = ScheduleRunner::spawn(
        settings.schedule.clone(),
        LocalClock,
        Arc::clone(&dispatcher) as Arc<dyn crate::schedule::CueSink>,
        crate::schedule::POLL,
    )
    .map_err(|e| startup(&format!("schedule thread: {e}")))?;
    if !settings.schedule.is_empty() {
        log::info!(
            "schedule: {} entries, local time zone {}",
            settings.schedule.len(),
            LocalClock::zone_description()
        );
    }
    let handler = ControlHandler::new(Arc::clone(&dispatcher))
        .map_err(|e| startup(&format!("OSC scheduler: {e}")))?;
    let osc = OscServer::start(
        OscConfig {
            bind: settings.osc_bind,
            allow: settings.osc_allow.clone(),
            ..OscConfig::default()
        },
        Arc::clone(&schema),
        subscribers.clone(),
        handler,
    )
    .map_err(|e| startup(&format!("OSC on {}: {e}", settings.osc_bind)))?;
    let oscquery = if settings.oscquery_port == 0 {
        None
    } else {
        let values = LiveValues {
            knobs: Arc::clone(&knobs),
            ring: ring_handle.clone(),
            meters: Arc::clone(&meters),
            metrics: Metrics::new(MetricsSources {
                dispatcher: Arc::clone(&dispatcher),
                engine: Arc::clone(&engine),
                health: Arc::clone(&health_state),
            }),
        };
        let config = OscQueryConfig {
            bind: std::net::SocketAddr::new(settings.osc_bind.ip(), settings.oscquery_port),
            allow: settings.osc_allow.clone(),
            osc_port: osc.udp_addr().port(),
            inert_knobs,
            ..OscQueryConfig::default()
        };
        Some(
            OscQueryServer::start(config, Arc::clone(&schema), Arc::new(values)).map_err(|e| {
                startup(&format!("OSCQuery on port {}: {e}", settings.oscquery_port))
            })?,
        )
    };
    log::info!(
        "OSC on udp+tcp {} (OSCQuery {})",
        osc.udp_addr(),
        oscquery
            .as_ref()
            .map(|q| q.addr().to_string())
            .unwrap_or_else(|| "off".into())
    );
    // Zeroconf: a failure is logged and the daemon plays on without it.
    let advertiser = Advertiser::start(
        settings.advertise,
        &Announcement {
            instance: settings.client_name.clone(),
            osc: osc.udp_addr(),
            oscquery_port: oscquery.as_ref().map(|q| q.addr().port()),
        },
    );

    let health = HealthThread::spawn(HealthParts {
        meters: Arc::clone(&meters),
        subscribers: subscribers.clone(),
        ring: ring_handle.clone(),
        config: settings.health,
        state: Arc::clone(&health_state),
    })
    .map_err(|e| startup(&format!("health thread: {e}")))?;

    lock_memory();
    if let Err(e) = notifier.ready() {
        log::warn!("sd_notify READY: {e}");
    }
    let nsm_thread = match nsm {
        Some(nsm) => Some(
            nsm.opened(Arc::clone(&session))
                .map_err(|e| runtime(&format!("NSM: answering the open: {e}")))?,
        ),
        None => None,
    };
    let watchdog = match watchdog_timeout_from_env() {
        Some(timeout) => Some(
            WatchdogSupervisor::spawn_with_veto(
                notifier.clone(),
                ping_interval(timeout),
                vec![
                    Watched::from_source(
                        "engine",
                        Arc::new(EngineBeat(Arc::clone(&engine))),
                        timeout / 2,
                    ),
                    Watched::from_source("audio", output_stats.clone(), timeout / 2),
                ],
                Some(Arc::clone(&health_state) as Arc<dyn crate::systemd::Veto>),
            )
            .map_err(|e| runtime(&format!("watchdog: {e}")))?,
        ),
        None => None,
    };
    test_fault_hook(&engine);
    Ok(Daemon {
        settings,
        nsm,
        signals,
        systemd: SystemdParts { notifier, watchdog },
        actors: Actors {
            nsm_thread,
            health,
            health_state,
            schedule,
            midi_thread,
        },
        control: ControlParts {
            advertiser,
            osc,
            oscquery,
            capture,
            dispatcher,
            worker,
            session,
        },
        output: OutputParts {
            running,
            recorder,
            ring: ring_handle,
        },
        engine: EngineParts {
            engine,
            conditioner,
            stop_engine,
        },
    })
}

impl Daemon<'_> {
    /// Serve until a stop signal: reloads on SIGHUP, `STATUS=` lines, engine fault reports
    /// (see the module doc); `args` is the command line, for reloads.
    pub fn serve(&mut self, args: Vec<OsString>) {
        let live = LiveParts {
            dispatcher: &self.control.dispatcher,
            engine: &*self.engine.engine,
            osc: &self.control.osc,
            oscquery: self.control.oscquery.as_ref(),
            nsm: self.nsm,
            schedule: &self.actors.schedule,
        };
        serve(
            &mut self.signals,
            &self.systemd.notifier,
            &live,
            &self.actors.health_state,
            self.settings,
            args,
        );
    }

    /// Stop every part, in this order, the one place it is written; each step is logged
    /// (`stop: ...`, info) before it runs:
    ///
    /// 1. systemd: the watchdog's pings end, then `STOPPING=1` (no ping may follow it).
    /// 2. What acts on its own ends: the NSM thread (no save request mid-stop), the health
    ///    thread (the fade is no silence alarm), the schedule (no cue fires into a stopping
    ///    daemon), the MIDI drain.
    /// 3. The stop fade, [`OutputSupervisor::fade_out`], its one owner: the output ramps to
    ///    silence while everything else still runs, so no later step can click.
    /// 4. Zeroconf goodbyes, before the ports close: browsers drop latentd before a client
    ///    can be refused.
    /// 5. OSC and OSCQuery close, then the capture ends (a running one without a source):
    ///    no client reaches a part that is stopping.
    /// 6. The queued jobs finish (the dispatcher goes, and with it the last sender of the
    ///    encoder's queue), then the session is saved: every change so far, the jobs'
    ///    included, is in the state file.
    /// 7. The output stops (nothing reads the ring any more), then the engine.
    /// 8. The recording completes (it holds all that was played, the fade included), and
    ///    the counters line is printed.
    pub fn stop(self) -> Result<(), ServiceError> {
        let Daemon {
            systemd,
            actors,
            control,
            output,
            engine,
            ..
        } = self;
        step("watchdog pings end, STOPPING=1");
        if let Some(w) = systemd.watchdog {
            w.stop();
        }
        let _ = systemd.notifier.stopping();

        step("NSM, health, schedule and MIDI threads end");
        if let Some(t) = actors.nsm_thread {
            t.stop();
        }
        actors.health.stop();
        actors.schedule.stop();
        if let Some(t) = actors.midi_thread {
            t.stop();
        }

        step("fade to silence");
        output.running.fade_out();

        step("zeroconf goodbyes");
        if let Some(a) = control.advertiser {
            a.stop();
        }

        step("OSC, OSCQuery and the capture close");
        control.osc.shutdown();
        drop(control.oscquery);
        if let Some(capture) = &control.capture {
            capture.shutdown(); // a running capture ends without a source; its queue sender goes
        }

        step("queued jobs finish, the session is saved");
        drop(control.dispatcher); // the last queue sender goes with it: the encoder finishes and ends
        control.worker.join();
        control.session.flush();

        step("output and engine stop");
        // The conditioner lives on until the engine has stopped, as it always did.
        let EngineParts {
            engine,
            conditioner: _conditioner,
            stop_engine,
        } = engine;
        drop(engine);
        let stats = output.running.status().stats;
        let stopped = output.running.stop();
        if let Err(e) = stop_engine() {
            log::warn!("engine: {e}");
        }

        step("the recording completes");
        let recorded = match output.recorder.stop() {
            Ok(finished) => Some(Ok(finished)),
            Err(RecordError::Idle { .. }) => None,
            Err(e) => Some(Err(e)),
        };
        drop(output.recorder);
        let counters = output.ring.counters();
        eprintln!(
            "latentd: stopped: periods={} frames={} torn_reads={} late_frames={} xruns={} record_dropped={}",
            counters.periods,
            counters.frames_played,
            counters.torn_reads,
            counters.late_frames,
            stats.xruns,
            stats.record_dropped
        );
        stopped.map_err(Failure::OutputStop)?;
        if let Some(recorded) = recorded {
            let finished = recorded.map_err(|e| runtime(&e))?;
            log::info!("recorded {} frames", finished.frames);
        }
        Ok(())
    }
}

/// Log one step of [`Daemon::stop`] before it runs.
fn step(what: &str) {
    log::info!("stop: {what}");
}

/// Serve until SIGINT or SIGTERM: reload on SIGHUP, refresh `STATUS=` (at once when a health
/// alarm rises or clears), report engine
/// panics (the engine catches them and restarts its pipeline; the ring keeps playing) and
/// runtime model faults (rate-limited, see [`ModelFaultLog`]).
fn serve(
    signals: &mut Signals,
    notifier: &Notifier,
    live: &LiveParts<'_>,
    health: &HealthState,
    settings: &Settings,
    args: Vec<OsString>,
) {
    let (dispatcher, engine) = (live.dispatcher, live.engine);
    let mut health_seen = health.changes();
    let mut running = settings.clone();
    let mut last_status = Instant::now() - STATUS_EVERY;
    let mut last_backend = String::new();
    let mut panics_reported = 0;
    let mut pushed_status = None;
    let mut ignored = IgnoredLog::default();
    let mut model_faults = ModelFaultLog::default();
    loop {
        dispatcher.push_status_changes(&mut pushed_status);
        dispatcher.push_knob_motion();
        let stats = engine.stats();
        // An alarm that rose or cleared shows in STATUS= at once.
        let health_now = health.changes();
        if last_status.elapsed() >= STATUS_EVERY || health_now != health_seen {
            health_seen = health_now;
            let s = dispatcher.status_report();
            if s.backend != last_backend {
                // A GPU failure shows here: the backend becomes "builtin-cpu (fallback ...)".
                if !last_backend.is_empty() {
                    log::error!("engine backend changed: {}", s.backend);
                }
                last_backend = s.backend.clone();
            }
            let output = if s.output == "running" {
                "playing".to_string()
            } else {
                format!("output {} (the engine keeps its state)", s.output)
            };
            let _ = notifier.status(&format!(
                "{output} {:.1}/{:.1} s, {:.0} ticks/s, lead {:.2} s, xruns {}, late {}{}{}",
                s.playhead_s,
                s.loop_s,
                s.ticks_per_s,
                s.lead_s,
                s.xruns,
                s.late_landings,
                ModelFaultLog::status_suffix(&stats),
                health.status_suffix()
            ));
            last_status = Instant::now();
        }
        let panics = stats.panics;
        if panics > panics_reported {
            log::error!(
                "engine: {} tick(s) failed ({panics} since start); pipeline restarted, the \
                 loop keeps playing",
                panics - panics_reported
            );
            panics_reported = panics;
        }
        model_faults.report(&stats, Instant::now());
        for signal in signals.pending() {
            match crate::signals::action(signal) {
                SignalAction::Reload => reload_config(notifier, &mut running, &args, live),
                SignalAction::DumpTrace => dump_trace(engine, &settings.state_path),
                SignalAction::Ignore => ignored.note(signal),
                SignalAction::Stop => {
                    log::info!("{} received, stopping", crate::signals::name(signal));
                    return;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the OSCQuery HTTP port serves live: the knob store's values, the output's levels
/// and the Prometheus metrics.
struct LiveValues {
    knobs: Arc<KnobStore>,
    ring: latentd_engine::RingHandle,
    meters: Arc<crate::audio::Meters>,
    metrics: Metrics,
}

impl KnobValues for LiveValues {
    fn knob_values(&self) -> Vec<(String, f64)> {
        // The values sounding now (mid-glide, the passing ones).
        let now = self.knobs.current().at(self.ring.playhead_and_clock().1);
        latentd_engine::knobs::KNOBS
            .iter()
            .filter_map(|k| KnobId::from_name(k.name).map(|id| (k.name.to_string(), now.get(id))))
            .collect()
    }

    fn metrics(&self) -> Option<String> {
        Some(self.metrics.encode())
    }

    fn levels(&self) -> Option<Vec<f64>> {
        Some(
            self.meters
                .levels()
                .iter()
                .flat_map(|l| [l.peak_dbfs, l.rms_dbfs])
                .collect(),
        )
    }
}

/// Logs runtime model faults: at most one line per [`MODEL_FAULT_LOG_EVERY`], with how
/// many ticks failed since the last line and since start, and the newest failure.
#[derive(Default)]
struct ModelFaultLog {
    /// The fault count the last line reported.
    logged: u64,
    /// When that line was written.
    at: Option<Instant>,
}

impl ModelFaultLog {
    fn report(&mut self, stats: &EngineStats, now: Instant) {
        let due = self
            .at
            .is_none_or(|at| now.duration_since(at) >= MODEL_FAULT_LOG_EVERY);
        if stats.model_faults <= self.logged || !due {
            return;
        }
        log::error!(
            "model failed: {} tick(s) ({} since start), the slots were left unchanged and the \
             loop keeps playing; last: {}",
            stats.model_faults - self.logged,
            stats.model_faults,
            stats.last_model_fault.as_deref().unwrap_or("unknown")
        );
        self.logged = stats.model_faults;
        self.at = Some(now);
    }

    /// What the `STATUS=` line adds: nothing while the model has not failed.
    fn status_suffix(stats: &EngineStats) -> String {
        match stats.model_faults {
            0 => String::new(),
            n => format!(
                ", model faults {n} (last: {})",
                stats.last_model_fault.as_deref().unwrap_or("unknown")
            ),
        }
    }
}

/// Lock what is allocated so far (the ring, the engine's buffers, the output's) into RAM,
/// so the audio callback never page-faults on it. Needs `LimitMEMLOCK=infinity` (the system
/// unit sets it) or root; without it latentd runs unlocked and says so.
fn lock_memory() {
    // SAFETY: plain FFI call with valid flags; it only changes the process's paging.
    if unsafe { libc::mlockall(libc::MCL_CURRENT) } == 0 {
        log::info!("memory locked (mlockall) after preallocation");
    } else {
        log::warn!(
            "memory not locked (mlockall: {}); raise LimitMEMLOCK to avoid page faults in \
             the audio path",
            std::io::Error::last_os_error()
        );
    }
}

/// SIGUSR1: write the engine's trace (every action and ring write, with their frames) as
/// JSON lines beside the state file, `trace-<unix seconds>.jsonl` (`-2`, … for more dumps in
/// the same second: a dump never overwrites another).
fn dump_trace(engine: &DaemonEngine, state_path: &Path) {
    let dir = state_path.parent().filter(|d| !d.as_os_str().is_empty());
    let stem = dir
        .unwrap_or(Path::new("."))
        .join(format!("trace-{}", crate::unique_file::unix_seconds()));
    let (path, result) = match crate::unique_file::create_unique(&stem, "jsonl") {
        Ok((file, path)) => (path, Ok(file)),
        Err(e) => (stem.with_extension("jsonl"), Err(e.to_string())),
    };
    let result = result.and_then(|file| {
        let mut out = std::io::BufWriter::new(file);
        engine.dump_trace(&mut out).map_err(|e| e.to_string())?;
        std::io::Write::flush(&mut out).map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => log::info!("trace written to {}", path.display()),
        Err(e) => log::error!("trace dump to {} failed: {e}", path.display()),
    }
}

/// MIDI maps at start: the saved session's when it has any, else the config's; each
/// checked as `/midi/map` checks it, a bad one skipped with a warning.
fn start_midi_maps(
    schema: &Schema,
    settings: &Settings,
    restored: &PersistentState,
) -> Vec<latentd_osc_schema::midi::MidiMap> {
    let (entries, from) = match &restored.midi_maps {
        Some(saved) => (saved, "state"),
        None => (&settings.midi_maps, "config"),
    };
    entries
        .iter()
        .filter_map(|entry| match entry.to_map(schema) {
            Ok(map) => Some(map),
            Err(e) => {
                log::warn!("{from}: {e}; skipped");
                None
            }
        })
        .collect()
}

/// Knobs at start, each layer over the one before: the model's defaults (a bundle's
/// `[sampler]`), the config's (and `--knob`s), then the saved session's.
fn apply_start_knobs(
    knobs: &KnobStore,
    model_defaults: &[(KnobId, f64)],
    settings: &Settings,
    restored: &PersistentState,
) {
    if let Err(e) = knobs.set_many(model_defaults) {
        log::warn!("model's default knobs not applied: {e}");
    }
    if let Err(e) = knobs.set_many(&settings.knobs) {
        log::warn!("config knobs not applied: {e}");
    }
    for (name, value) in &restored.knobs {
        match KnobId::from_name(name) {
            Some(id) => {
                if let Err(e) = knobs.set_id(id, *value) {
                    log::warn!("state: knob {name} not restored: {e}");
                }
            }
            None => log::warn!("state: unknown knob {name:?} ignored"),
        }
    }
}

/// Prompt and references at start: the saved session's, else the config's, else the
/// model's default prompt (so a newcomer hears music at once); a model without one starts
/// on its null condition.
fn apply_start_conditioning(
    conditioner: &dyn ConditioningControl,
    default_prompt: Option<&str>,
    settings: &Settings,
    restored: &PersistentState,
    rate: u32,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<(), Failure> {
    let tags = restored
        .prompt
        .clone()
        .or_else(|| settings.prompt.clone())
        .or_else(|| default_prompt.map(str::to_owned));
    let tags_b = restored
        .prompt_b
        .clone()
        .or_else(|| settings.prompt_b.clone());
    match tags {
        Some(tags) => match conditioner.set_prompt(PromptSpec {
            tags: tags.clone(),
            tags_b,
        }) {
            Ok(_) => log::info!("prompt: {tags:?}"),
            Err(e) => log::warn!("prompt {tags:?} not applied: {e}"),
        },
        None => log::info!("prompt: none (the model names no default prompt): null condition"),
    }
    let load = |path: &Path| load_wav_or_stop(path, rate, OUTPUT_CHANNELS, stop);
    if let Some(path) = &restored.timbre {
        match load(path) {
            Ok(a) => {
                if let Err(e) = conditioner.set_timbre(view(&a)) {
                    log::warn!("state: timbre {} not restored: {e}", path.display());
                }
            }
            Err(e @ LoadError::Stopped(_)) => return Err(load_failure("timbre", e)),
            Err(e) => log::warn!("state: timbre not restored: {e}"),
        }
    }
    if let Some(path) = &restored.structure {
        match load(path) {
            Ok(a) => {
                if let Err(e) = conditioner.set_structure(view(&a)) {
                    log::warn!("state: structure {} not restored: {e}", path.display());
                }
            }
            Err(e @ LoadError::Stopped(_)) => return Err(load_failure("structure", e)),
            Err(e) => log::warn!("state: structure not restored: {e}"),
        }
    }
    Ok(())
}

fn view(audio: &LoopAudio) -> AudioView<'_> {
    AudioView {
        samples: &audio.samples,
        channels: audio.channels,
        sample_rate: audio.sample_rate,
    }
}

fn load_source(
    path: &Path,
    rate: u32,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<LoopAudio, LoadError> {
    let audio = load_wav_or_stop(path, rate, OUTPUT_CHANNELS, stop)?;
    log::info!(
        "source {}: {} frames ({:.2} s) at {rate} Hz",
        path.display(),
        audio.frames(),
        audio.frames() as f64 / f64::from(rate)
    );
    Ok(audio)
}

/// Without the `fault-injection` feature there are no hooks.
#[cfg(not(feature = "fault-injection"))]
fn test_fault_hook(_engine: &Arc<DaemonEngine>) {}

/// See the module doc: test-only ways to make the engine thread hang or panic.
#[cfg(feature = "fault-injection")]
fn test_fault_hook(engine: &Arc<DaemonEngine>) {
    let seconds = |name: &str| {
        let value = std::env::var(name).ok()?;
        match value.parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => Some(s),
            _ => {
                log::warn!("test hook {name}={value:?} ignored: not a number of seconds >= 0");
                None
            }
        }
    };
    if let Some(after) = seconds("LATENTD_TEST_ENGINE_PANIC_AFTER_S") {
        let engine = Arc::clone(engine);
        let _ = std::thread::Builder::new()
            .name("test-panic".into())
            .spawn(move || {
                std::thread::sleep(Duration::from_secs_f64(after));
                log::warn!("test hook: the engine's next tick panics");
                engine.inject_panic();
            });
    }
    if let Some(seconds) = seconds("LATENTD_TEST_ENGINE_STALL_S") {
        let engine = Arc::clone(engine);
        let _ = std::thread::Builder::new()
            .name("test-stall".into())
            .spawn(move || {
                std::thread::sleep(Duration::from_secs(1));
                log::warn!("test hook: stalling the engine thread for {seconds} s");
                engine.inject_stall(seconds);
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_failure_exits_2_at_start_and_1_at_stop_with_the_output_s_own_line() {
        let unreachable = || AudioError::ServerUnreachable {
            backend: "jack",
            detail: "could not connect to the JACK server".into(),
        };
        let at_start = ServiceError::Output(unreachable());
        assert_eq!(at_start.exit_code(), EXIT_STARTUP);
        assert_eq!(at_start.to_string(), unreachable().to_string());
        assert!(matches!(
            at_start,
            ServiceError::Output(AudioError::ServerUnreachable { .. })
        ));
        let at_stop = ServiceError::OutputStop(AudioError::Other {
            backend: "null",
            detail: "the clock thread panicked".into(),
        });
        assert_eq!(at_stop.exit_code(), EXIT_RUNTIME);
        assert_eq!(at_stop.to_string(), "null: the clock thread panicked");
    }
}
