//! Native PipeWire output: one playback stream (F32LE, interleaved stereo) whose realtime
//! `process` callback plays the ring through [`ProcessorSlot::process_interleaved`].
//!
//! Threading: PipeWire objects are neither `Send` nor `Sync`, so every one of them lives on
//! one dedicated, ordinary (non-realtime) thread that runs `pw::main_loop`. The thread is
//! spawned by [`PipeWireOutput::open`], connects to the server, makes one roundtrip and
//! reports success or failure over a std channel; `open` waits at most
//! [`STARTUP_TIMEOUT`]. The main thread then talks to the loop thread only through a
//! `pw::channel`: `Command::Start` hands over the [`ProcessorSlot`] and creates the
//! stream, `Command::Quit` quits the loop, after which the thread destroys the stream
//! (which waits until the data thread no longer calls `process`) and exits; the caller
//! joins it. `Command::Quit` travels through the loop's own event, never through the
//! server, so stopping does not depend on a live server.
//!
//! Server loss is noticed on the loop thread, never in `process`: an error on the core
//! itself (libpipewire reports a server that went away as `-EPIPE`, "connection error", on
//! id 0) or the playback stream falling back to `Unconnected` after the server had taken it
//! (its node removed) sets an atomic flag, which [`RunningOutput::server_lost`] reads for
//! the supervisor ([`super::supervisor`]); a lost connection also quits the loop, so the
//! thread tears down and ends by itself. The supervisor then abandons the output (waiting
//! at most 2 s for the thread) and reopens: opening while no server listens fails at once
//! ([`AudioError::ServerUnreachable`], worth retrying). A stream in `Error` is not lost:
//! WirePlumber says "no node available" to a stream it has no sink for yet, and links it
//! once one appears.
//!
//! The stream is connected with `RT_PROCESS`, so `process` runs on PipeWire's own data
//! thread. There it dequeues one buffer, fills exactly `min(requested, capacity)` frames
//! (filling the whole buffer would queue huge buffers: a few callbacks a second and high
//! latency), sets the chunk and queues the buffer back. It allocates nothing, takes no
//! lock and logs nothing.
//!
//! MIDI input (with [`PipeWireOptions::midi_in`]): a second stream, created and connected
//! with the playback stream, an input of format `application/control` (what `pw-midiplay`,
//! `pw-cat --midi` and PipeWire's ALSA MIDI bridge send) with `media.type = Midi`, so
//! PipeWire lists it as a `Stream/Input/Midi` node named `<node name>-midi-in`
//! ([`pipewire_midi_node_name`]). It only links when asked: `autoconnect_inputs` lets the
//! session manager pick a source; otherwise a peer targets it (`pw-midiplay --target`) or a
//! user links it (`pw-link`). Its `process` callback, also on the data thread and under the
//! same rules, walks each buffer's event sequence ([`super::spa_sequence`]) and queues the
//! Control and Program Changes in [`super::midi_in`]'s queue, each stamped with the ring's
//! frame clock at that cycle plus its offset, as the JACK callback does; malformed buffers
//! are skipped and counted ([`MidiInput::note_malformed`]).
//!
//! Live input (with [`PipeWireOptions::inputs`] > 0 and a processor with an input tap): a
//! third stream, `<node name>-input` ([`pipewire_input_node_name`]), a `Stream/Input/Audio`
//! node of that many F32 channels at the output's rate (PipeWire converts), linked like the
//! MIDI stream (autoconnect takes the default source). Its `process` callback queues each
//! buffer, interleaved, into the processor's input tap
//! ([`ProcessorSlot::queue_input_interleaved`]) and stores the stream's delay (what lies
//! upstream, as PipeWire reports it; 0 when it reports none) as the capture latency. Both
//! streams' callbacks run on the one data thread, in the same graph cycle once linked, so
//! an input period's playhead is the ring's within a period. An input stream that nothing
//! feeds is not scheduled: a capture then waits (or `/capture/stop` ends it).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use ::pipewire as pw;
use pw::properties::properties;
use pw::spa;
use pw::stream::{StreamFlags, StreamListener, StreamRc, StreamState};

use latentd_engine::RingHandle;

use super::input::{InputShared, MAX_INPUTS};
use super::midi_in::{MidiInHandle, MidiInput, pipewire_midi_node_name};
use super::realtime::rt_guard;
use super::spa_sequence;
use super::{
    AudioError, AudioOutput, OutputFormat, OutputStats, OutputStatsSnapshot, ProcessorSlot,
    RunningOutput,
};

// The hand-written pod constants must be SPA's.
const _: () = assert!(spa_sequence::SPA_TYPE_SEQUENCE == spa::sys::SPA_TYPE_Sequence);
const _: () = assert!(spa_sequence::SPA_TYPE_BYTES == spa::sys::SPA_TYPE_Bytes);
const _: () = assert!(spa_sequence::SPA_CONTROL_MIDI == spa::sys::SPA_CONTROL_Midi);

const BACKEND: &str = "pipewire";

/// Channels of the stream (interleaved FL, FR).
pub const CHANNELS: usize = 2;

/// Bytes per interleaved frame (two `f32`).
const FRAME_BYTES: usize = CHANNELS * std::mem::size_of::<f32>();

/// Longest [`PipeWireOutput::open`] waits for the server's first answer.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest [`PipeWireOutput::server_reachable`] waits.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest abandoning a lost output waits for its loop thread to end; a thread still busy
/// after that is left to end alone, so that a teardown stuck on a dead server cannot hold
/// up the supervisor.
const ABANDON_TIMEOUT: Duration = Duration::from_secs(2);

/// How to open the PipeWire output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeWireOptions {
    /// `node.name` of the stream.
    pub node_name: String,
    /// `target.object` (a node name or serial) to link to; `None` lets the session
    /// manager pick the default sink.
    pub target: Option<String>,
    /// Stream rate in frames per second (PipeWire converts to the graph rate).
    pub sample_rate: u32,
    /// Period asked for through `node.latency` (`period/rate`); the graph may run another
    /// quantum, which [`OutputStats::max_period_frames`] reveals.
    pub period_frames: usize,
    /// MIDI input: create the `<node name>-midi-in` stream and queue its Control and
    /// Program Changes here (`None`: no MIDI stream).
    pub midi_in: Option<MidiInHandle>,
    /// Let the session manager link the MIDI and live-input streams to sources of its
    /// choice; off, they wait for a peer or `pw-link`.
    pub autoconnect_inputs: bool,
    /// Channels of the live-input stream (0: none; at most [`MAX_INPUTS`]); it only runs
    /// when the processor has an input tap. Linked like the MIDI stream.
    pub inputs: usize,
}

impl Default for PipeWireOptions {
    fn default() -> Self {
        Self {
            node_name: "latentd".to_owned(),
            target: None,
            sample_rate: 48_000,
            period_frames: 256,
            midi_in: None,
            autoconnect_inputs: false,
            inputs: 0,
        }
    }
}

/// What the main thread asks the loop thread to do.
enum Command {
    /// Create and connect the stream playing this processor; answer on the sender.
    Start(Arc<ProcessorSlot>, mpsc::SyncSender<Result<(), AudioError>>),
    /// Quit the main loop; the thread then tears everything down and exits.
    Quit,
}

/// The loop thread and the way to reach it. Dropping it quits the loop and joins.
struct LoopThread {
    commands: pw::channel::Sender<Command>,
    thread: Option<JoinHandle<()>>,
    /// Disconnected once the thread has torn everything down (its sender is dropped as
    /// the thread's body returns).
    ended: mpsc::Receiver<()>,
    /// Set on the loop thread when the server went away (see [`run_loop`]).
    server_lost: Arc<AtomicBool>,
}

impl LoopThread {
    /// Quit the loop and wait for the thread (and so the stream) to be gone.
    fn quit_and_join(&mut self) -> Result<(), AudioError> {
        // A send error means the loop already ended; joining tells how.
        let _ = self.commands.send(Command::Quit);
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| AudioError::Other {
                backend: BACKEND,
                detail: "the PipeWire loop thread panicked".to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// Quit the loop and wait at most `limit` for the thread to end; past that, leave it
    /// to end alone (its stream is no longer called by a server that is gone).
    fn quit_and_join_within(&mut self, limit: Duration) -> Result<(), AudioError> {
        let _ = self.commands.send(Command::Quit);
        match self.ended.recv_timeout(limit) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => self.quit_and_join(),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.thread = None;
                Err(AudioError::Other {
                    backend: BACKEND,
                    detail: format!(
                        "the PipeWire loop thread did not end within {} ms; left to end alone",
                        limit.as_millis()
                    ),
                })
            }
        }
    }
}

impl Drop for LoopThread {
    fn drop(&mut self) {
        let _ = self.quit_and_join();
    }
}

/// An opened PipeWire output: connected to the server, no stream yet.
pub struct PipeWireOutput {
    options: PipeWireOptions,
    loop_thread: LoopThread,
}

impl PipeWireOutput {
    /// Connect to the PipeWire server (found as libpipewire finds it: `PIPEWIRE_REMOTE`,
    /// `PIPEWIRE_RUNTIME_DIR`, `XDG_RUNTIME_DIR`) on a new loop thread.
    ///
    /// Fails with [`AudioError::ServerUnreachable`] when no server answers within
    /// [`STARTUP_TIMEOUT`], and with [`AudioError::Unsupported`] for a zero rate or period
    /// or a node name PipeWire cannot take.
    pub fn open(options: &PipeWireOptions) -> Result<Self, AudioError> {
        Self::open_within(options, STARTUP_TIMEOUT)
    }

    /// True when a PipeWire server answers a connection and one roundtrip within
    /// [`PROBE_TIMEOUT`]; for `auto` output selection. Disconnects before returning.
    pub fn server_reachable() -> bool {
        Self::open_within(&PipeWireOptions::default(), PROBE_TIMEOUT).is_ok()
    }

    fn open_within(options: &PipeWireOptions, timeout: Duration) -> Result<Self, AudioError> {
        validate(options)?;
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), String>>(1);
        let (commands, command_rx) = pw::channel::channel::<Command>();
        let (ended_tx, ended) = mpsc::sync_channel::<()>(0);
        let server_lost = Arc::new(AtomicBool::new(false));
        let thread_options = options.clone();
        let thread_server_lost = Arc::clone(&server_lost);
        let thread = std::thread::Builder::new()
            .name("pipewire-loop".to_owned())
            .spawn(move || {
                run_loop(&thread_options, &ready_tx, command_rx, &thread_server_lost);
                drop(ended_tx);
            })
            .map_err(|e| AudioError::Other {
                backend: BACKEND,
                detail: format!("cannot spawn the loop thread: {e}"),
            })?;
        let mut loop_thread = LoopThread {
            commands,
            thread: Some(thread),
            ended,
            server_lost,
        };
        match ready_rx.recv_timeout(timeout) {
            Ok(Ok(())) => Ok(Self {
                options: options.clone(),
                loop_thread,
            }),
            Ok(Err(detail)) => Err(AudioError::ServerUnreachable {
                backend: BACKEND,
                detail,
            }),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // The server accepted nothing in time; do not wait on a stuck loop.
                let _ = loop_thread.commands.send(Command::Quit);
                loop_thread.thread = None;
                Err(AudioError::ServerUnreachable {
                    backend: BACKEND,
                    detail: format!("no answer within {} ms", timeout.as_millis()),
                })
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let joined = loop_thread.quit_and_join();
                Err(AudioError::ServerUnreachable {
                    backend: BACKEND,
                    detail: match joined {
                        Ok(()) => "the loop thread ended before connecting".to_owned(),
                        Err(e) => e.to_string(),
                    },
                })
            }
        }
    }
}

fn validate(options: &PipeWireOptions) -> Result<(), AudioError> {
    let bad = |what: String| {
        Err(AudioError::Unsupported {
            backend: BACKEND,
            what,
        })
    };
    if options.sample_rate == 0 {
        return bad("sample rate 0".to_owned());
    }
    if options.period_frames == 0 {
        return bad("period of 0 frames".to_owned());
    }
    if options.node_name.is_empty() || options.node_name.contains('\0') {
        return bad(format!("node name {:?}", options.node_name));
    }
    if let Some(target) = &options.target
        && (target.is_empty() || target.contains('\0'))
    {
        return bad(format!("target {target:?}"));
    }
    Ok(())
}

impl AudioOutput for PipeWireOutput {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn format(&self) -> OutputFormat {
        format_of(&self.options)
    }

    fn start_shared(
        self: Box<Self>,
        processor: Arc<ProcessorSlot>,
    ) -> Result<Box<dyn RunningOutput>, AudioError> {
        let this = *self;
        let stats = processor.stats();
        let inputs = this.options.inputs.min(MAX_INPUTS);
        match processor.input() {
            Some(report) => report.ports.store(inputs, Ordering::Relaxed),
            None if inputs > 0 => {
                log::warn!("pipewire: an input stream asked for without a live input to feed");
            }
            None => {}
        }
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        if this
            .loop_thread
            .commands
            .send(Command::Start(processor, reply_tx))
            .is_err()
        {
            return Err(AudioError::Other {
                backend: BACKEND,
                detail: "the PipeWire loop is gone".to_owned(),
            });
        }
        match reply_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Ok(())) => Ok(Box::new(RunningPipeWire {
                format: format_of(&this.options),
                stats,
                loop_thread: this.loop_thread,
            })),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(AudioError::Other {
                backend: BACKEND,
                detail: "the PipeWire loop did not answer the start request".to_owned(),
            }),
        }
    }
}

fn format_of(options: &PipeWireOptions) -> OutputFormat {
    OutputFormat {
        sample_rate: options.sample_rate,
        period_frames: options.period_frames,
        channels: CHANNELS,
    }
}

/// A playing PipeWire stream.
struct RunningPipeWire {
    format: OutputFormat,
    stats: Arc<OutputStats>,
    loop_thread: LoopThread,
}

impl RunningOutput for RunningPipeWire {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn format(&self) -> OutputFormat {
        self.format
    }

    fn stats(&self) -> OutputStatsSnapshot {
        self.stats.snapshot()
    }

    fn stop(mut self: Box<Self>) -> Result<(), AudioError> {
        self.loop_thread.quit_and_join()
    }

    /// Quits the loop like [`stop`](RunningOutput::stop), but waits at most
    /// [`ABANDON_TIMEOUT`] for the thread: the supervisor must not hang on a dead server.
    fn abandon(mut self: Box<Self>) {
        if let Err(e) = self.loop_thread.quit_and_join_within(ABANDON_TIMEOUT) {
            log::warn!("audio: closing a lost output: {e}");
        }
    }

    /// Set on the loop thread when the connection to the server is lost (a core error on
    /// the core itself) or the playback stream fell back to `Unconnected` after the server
    /// had taken it.
    fn server_lost(&self) -> bool {
        self.loop_thread.server_lost.load(Ordering::Acquire)
    }
}

/// The loop thread's body: connect, report, serve commands until told to quit or the
/// connection to the server is lost (then `server_lost` is set).
fn run_loop(
    options: &PipeWireOptions,
    ready: &mpsc::SyncSender<Result<(), String>>,
    commands: pw::channel::Receiver<Command>,
    server_lost: &Arc<AtomicBool>,
) {
    pw::init();
    let setup = || -> Result<_, String> {
        let main_loop =
            pw::main_loop::MainLoopRc::new(None).map_err(|e| format!("main loop: {e}"))?;
        let context =
            pw::context::ContextRc::new(&main_loop, None).map_err(|e| format!("context: {e}"))?;
        // pw_context_connect returns NULL (CreationFailed) when no socket accepts.
        let core = context
            .connect_rc(None)
            .map_err(|_| "cannot connect to the PipeWire socket".to_owned())?;
        Ok((main_loop, context, core))
    };
    let (main_loop, _context, core) = match setup() {
        Ok(parts) => parts,
        Err(reason) => {
            let _ = ready.send(Err(reason));
            return;
        }
    };

    // Connected is not answering: wait for one roundtrip before reporting ready.
    let ready_once = Rc::new(RefCell::new(Some(ready.clone())));
    let sync_seq = match core.sync(0) {
        Ok(seq) => seq,
        Err(e) => {
            let _ = ready.send(Err(format!("core sync: {e}")));
            return;
        }
    };
    let _core_listener = core
        .add_listener_local()
        .done({
            let ready_once = Rc::clone(&ready_once);
            move |id, seq| {
                if id == pw::core::PW_ID_CORE
                    && seq == sync_seq
                    && let Some(tx) = ready_once.borrow_mut().take()
                {
                    let _ = tx.send(Ok(()));
                }
            }
        })
        .error({
            let ready_once = Rc::clone(&ready_once);
            let main_loop = main_loop.clone();
            let server_lost = Arc::clone(server_lost);
            move |id, _seq, res, message| match ready_once.borrow_mut().take() {
                Some(tx) => {
                    let _ = tx.send(Err(format!("core error {res}: {message}")));
                    main_loop.quit();
                }
                // An error on the core itself is the connection's (libpipewire reports a
                // server that went away as -EPIPE, "connection error"): nothing on this
                // connection works again, so the loop ends and the supervisor reopens.
                None if id == pw::core::PW_ID_CORE => {
                    log::warn!("pipewire: the connection to the server is lost ({res}: {message})");
                    server_lost.store(true, Ordering::Release);
                    main_loop.quit();
                }
                None => log::warn!("pipewire: object {id}: error {res}: {message}"),
            }
        })
        .register();

    let active: Rc<RefCell<Option<ActiveStream>>> = Rc::new(RefCell::new(None));
    let _attached = commands.attach(main_loop.loop_(), {
        let main_loop = main_loop.clone();
        let core = core.clone();
        let active = Rc::clone(&active);
        let options = options.clone();
        let server_lost = Arc::clone(server_lost);
        move |command| match command {
            Command::Start(processor, reply) => {
                let result = start_stream(&core, &options, processor, &server_lost);
                let reply_value = match result {
                    Ok(stream) => {
                        *active.borrow_mut() = Some(stream);
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(reply_value);
            }
            Command::Quit => main_loop.quit(),
        }
    });

    main_loop.run();

    // Destroying a stream removes it from the data loop, so `process` has stopped
    // running once this returns.
    if let Some(stream) = active.borrow_mut().take() {
        let _ = stream.stream.disconnect();
        for extra in stream.midi.iter().chain(&stream.input) {
            let _ = extra.stream.disconnect();
        }
        drop(stream);
    }
}

/// The stream and its listener, kept alive on the loop thread while playing.
struct ActiveStream {
    // Field order is drop order: the listener goes before the stream.
    _listener: StreamListener<()>,
    stream: StreamRc,
    /// The MIDI input stream, when MIDI input is on.
    midi: Option<InputStream>,
    /// The live-input stream, when inputs are asked for.
    input: Option<InputStream>,
}

/// An input stream (MIDI or live audio) and its listener (field order is drop order).
struct InputStream {
    _listener: StreamListener<()>,
    stream: StreamRc,
}

/// Create the playback stream, hand it the processor and connect it; `server_lost` is set
/// when the stream falls back to `Unconnected` after the server had taken it.
fn start_stream(
    core: &pw::core::CoreRc,
    options: &PipeWireOptions,
    processor: Arc<ProcessorSlot>,
    server_lost: &Arc<AtomicBool>,
) -> Result<ActiveStream, AudioError> {
    let backend_err = |what: &str, e: pw::Error| AudioError::Other {
        backend: BACKEND,
        detail: format!("{what}: {e}"),
    };
    let mut props = properties! {
        *pw::keys::MEDIA_TYPE => "Audio",
        *pw::keys::MEDIA_CATEGORY => "Playback",
        *pw::keys::MEDIA_ROLE => "Music",
        *pw::keys::APP_NAME => "latentd",
        *pw::keys::NODE_NAME => options.node_name.as_str(),
        *pw::keys::AUDIO_CHANNELS => "2",
        *pw::keys::NODE_LATENCY => format!("{}/{}", options.period_frames, options.sample_rate),
    };
    if let Some(target) = &options.target {
        props.insert(*pw::keys::TARGET_OBJECT, target.as_str());
    }
    let stream = StreamRc::new(core.clone(), &options.node_name, props)
        .map_err(|e| backend_err("stream", e))?;

    let ring = processor.ring_handle();
    let input = match (options.inputs.min(MAX_INPUTS), processor.input()) {
        (0, _) | (_, None) => None,
        (channels, Some(shared)) => Some(start_input_stream(
            core,
            options,
            channels,
            Arc::clone(&processor),
            shared,
        )?),
    };
    let fallback_frames = options.period_frames;
    // Whether the server took the stream (it reached `Paused` or `Streaming`); only a
    // stream it had taken is lost when it falls back, not one refused while connecting.
    // `Error` is not a loss: the session manager sets it on a stream it has no sink for
    // yet ("no node available", as when the stream returns before the sink does), and
    // links the stream once a sink appears; reopening would only churn.
    let taken = Cell::new(false);
    let server_lost = Arc::clone(server_lost);
    let listener = stream
        .add_local_listener_with_user_data(())
        .state_changed(move |_, _, old, new| {
            match &new {
                StreamState::Paused | StreamState::Streaming => taken.set(true),
                StreamState::Unconnected if taken.get() => {
                    server_lost.store(true, Ordering::Release);
                }
                _ => {}
            }
            match new {
                StreamState::Error(message) => log::error!("pipewire stream: error: {message}"),
                new => log::info!("pipewire stream: {old:?} -> {new:?}"),
            }
        })
        .process(move |stream, _| fill_buffer(stream, &processor, fallback_frames))
        .register()
        .map_err(|e| backend_err("stream listener", e))?;

    let format = format_pod(
        options.sample_rate,
        &[
            spa::sys::SPA_AUDIO_CHANNEL_FL,
            spa::sys::SPA_AUDIO_CHANNEL_FR,
        ],
    )?;
    let mut params = [
        spa::pod::Pod::from_bytes(&format).ok_or_else(|| AudioError::Other {
            backend: BACKEND,
            detail: "format pod did not parse".to_owned(),
        })?,
    ];
    stream
        .connect(
            spa::utils::Direction::Output,
            None,
            StreamFlags::AUTOCONNECT | StreamFlags::MAP_BUFFERS | StreamFlags::RT_PROCESS,
            &mut params,
        )
        .map_err(|e| AudioError::Activation {
            backend: BACKEND,
            detail: format!("stream connect: {e}"),
        })?;
    let midi = match &options.midi_in {
        Some(queue) => Some(start_midi_stream(core, options, queue.clone(), ring)?),
        None => None,
    };
    Ok(ActiveStream {
        _listener: listener,
        stream,
        midi,
        input,
    })
}

/// `node.name` of the PipeWire output's live-input stream, for an output named `node`.
pub fn pipewire_input_node_name(node: &str) -> String {
    format!("{node}-input")
}

/// Create and connect the live-input stream of `channels` channels feeding `processor`'s
/// input tap, reporting its delay into `shared`.
fn start_input_stream(
    core: &pw::core::CoreRc,
    options: &PipeWireOptions,
    channels: usize,
    processor: Arc<ProcessorSlot>,
    shared: Arc<InputShared>,
) -> Result<InputStream, AudioError> {
    let name = pipewire_input_node_name(&options.node_name);
    let props = properties! {
        *pw::keys::MEDIA_TYPE => "Audio",
        *pw::keys::MEDIA_CATEGORY => "Capture",
        *pw::keys::MEDIA_ROLE => "Music",
        *pw::keys::APP_NAME => "latentd",
        *pw::keys::NODE_NAME => name.as_str(),
        *pw::keys::NODE_DESCRIPTION => format!("{} input", options.node_name),
        *pw::keys::AUDIO_CHANNELS => channels.to_string(),
        *pw::keys::NODE_LATENCY => format!("{}/{}", options.period_frames, options.sample_rate),
    };
    let rate = options.sample_rate;
    let format = format_pod(options.sample_rate, &input_positions(channels))?;
    let stream = connect_input_stream(core, options, "input", &name, props, format, move |s| {
        read_input(s, &processor, channels, &shared, rate)
    })?;
    log::info!("audio: live input on: PipeWire node {name} ({channels} channels)");
    Ok(stream)
}

/// Create, listen to and connect one of the input streams (live input, MIDI): `kind`
/// names it in logs and errors, `process` is its realtime body (the data thread's rules:
/// no allocation, lock, log or syscall). Linked by the session manager only with
/// `autoconnect_inputs`.
fn connect_input_stream(
    core: &pw::core::CoreRc,
    options: &PipeWireOptions,
    kind: &'static str,
    name: &str,
    props: pw::properties::PropertiesBox,
    format: Vec<u8>,
    mut process: impl FnMut(&pw::stream::Stream) + 'static,
) -> Result<InputStream, AudioError> {
    let backend_err = |what: &str, e: pw::Error| AudioError::Other {
        backend: BACKEND,
        detail: format!("{kind} {what}: {e}"),
    };
    let stream = StreamRc::new(core.clone(), name, props).map_err(|e| backend_err("stream", e))?;
    let listener = stream
        .add_local_listener_with_user_data(())
        .state_changed(move |_, _, old, new| match new {
            StreamState::Error(message) => log::error!("pipewire {kind} stream: error: {message}"),
            new => log::info!("pipewire {kind} stream: {old:?} -> {new:?}"),
        })
        .process(move |stream, _| process(stream))
        .register()
        .map_err(|e| backend_err("stream listener", e))?;
    let mut params = [
        spa::pod::Pod::from_bytes(&format).ok_or_else(|| AudioError::Other {
            backend: BACKEND,
            detail: format!("{kind} format pod did not parse"),
        })?,
    ];
    let mut flags = StreamFlags::MAP_BUFFERS | StreamFlags::RT_PROCESS;
    if options.autoconnect_inputs {
        flags |= StreamFlags::AUTOCONNECT;
    }
    stream
        .connect(spa::utils::Direction::Input, None, flags, &mut params)
        .map_err(|e| AudioError::Activation {
            backend: BACKEND,
            detail: format!("{kind} stream connect: {e}"),
        })?;
    Ok(InputStream {
        _listener: listener,
        stream,
    })
}

/// Channel positions of an input stream: MONO, FL FR, else AUX0 .. (as `pw-record` and
/// the session manager expect for one, two and more channels).
fn input_positions(channels: usize) -> Vec<u32> {
    match channels {
        1 => vec![spa::sys::SPA_AUDIO_CHANNEL_MONO],
        2 => vec![
            spa::sys::SPA_AUDIO_CHANNEL_FL,
            spa::sys::SPA_AUDIO_CHANNEL_FR,
        ],
        n => (0..n as u32)
            .map(|k| spa::sys::SPA_AUDIO_CHANNEL_AUX0 + k)
            .collect(),
    }
}

/// The input stream's realtime `process` body: one buffer, interleaved, into the input
/// tap; the stream's delay into the capture latency, in frames at `rate`.
#[inline]
fn read_input(
    stream: &pw::stream::Stream,
    processor: &ProcessorSlot,
    channels: usize,
    shared: &InputShared,
    rate: u32,
) {
    rt_guard(|| {
        if let Ok(time) = stream.time() {
            let tick = time.rate();
            // delay ticks of num/denom seconds, in frames at `rate` (saturating: a wild
            // value must not overflow-panic in a debug build).
            let frames = u64::try_from(time.delay())
                .unwrap_or(0)
                .saturating_mul(u64::from(tick.num))
                .saturating_mul(u64::from(rate))
                / u64::from(tick.denom.max(1));
            shared
                .capture_latency
                .store(u32::try_from(frames).unwrap_or(u32::MAX), Ordering::Relaxed);
        }
        let Some(mut buffer) = stream.dequeue_buffer() else {
            return;
        };
        let Some(Ok(valid)) = chunk_bytes(&mut buffer) else {
            return;
        };
        // SAFETY: every bit pattern is a valid f32; align_to only reinterprets the aligned
        // middle part, and a misaligned buffer is skipped.
        let (head, samples, _) = unsafe { valid.align_to::<f32>() };
        if head.is_empty() {
            let frames = samples.len() / channels;
            processor.queue_input_interleaved(&samples[..frames * channels], channels);
        }
        // Dropping `buffer` gives it back to the stream.
    });
}

/// Create and connect the MIDI input stream feeding `queue`.
fn start_midi_stream(
    core: &pw::core::CoreRc,
    options: &PipeWireOptions,
    queue: MidiInHandle,
    ring: RingHandle,
) -> Result<InputStream, AudioError> {
    let name = pipewire_midi_node_name(&options.node_name);
    let props = properties! {
        *pw::keys::MEDIA_TYPE => "Midi",
        *pw::keys::MEDIA_CATEGORY => "Capture",
        *pw::keys::MEDIA_ROLE => "Music",
        *pw::keys::APP_NAME => "latentd",
        *pw::keys::NODE_NAME => name.as_str(),
        *pw::keys::NODE_DESCRIPTION => format!("{} MIDI in", options.node_name),
    };
    connect_input_stream(
        core,
        options,
        "MIDI",
        &name,
        props,
        midi_format_pod()?,
        move |s| read_midi(s, &queue.0, &ring),
    )
}

/// The MIDI stream's realtime `process` body: one buffer's events into the queue, stamped
/// with the ring's frame clock now plus each event's offset.
#[inline]
fn read_midi(stream: &pw::stream::Stream, queue: &MidiInput, ring: &RingHandle) {
    rt_guard(|| {
        let Some(mut buffer) = stream.dequeue_buffer() else {
            return;
        };
        let valid = match chunk_bytes(&mut buffer) {
            Some(Ok(valid)) => valid,
            Some(Err(ChunkOutOfBounds)) => return queue.note_malformed(1),
            None => return,
        };
        let frame = ring.playhead_and_clock().1;
        let mut events = spa_sequence::midi_events(valid);
        queue.push_period(frame, &mut events);
        queue.note_malformed(events.malformed());
        // Dropping `buffer` gives it back to the stream.
    });
}

/// A buffer whose chunk points outside its data.
struct ChunkOutOfBounds;

/// The bytes a dequeued buffer carries this cycle (its first data, cut to the chunk's
/// offset and size): `None` when it carries nothing (no data, no chunk, an empty chunk),
/// an error when the chunk points outside the data. Realtime-safe.
fn chunk_bytes<'b>(
    buffer: &'b mut pw::buffer::Buffer<'_>,
) -> Option<Result<&'b [u8], ChunkOutOfBounds>> {
    let data = buffer.datas_mut().first_mut()?;
    // `Data::chunk` asserts; a buffer without one carries nothing to read.
    if data.as_raw().chunk.is_null() {
        return None;
    }
    let (offset, size) = {
        let chunk = data.chunk();
        (chunk.offset() as usize, chunk.size() as usize)
    };
    if size == 0 {
        return None;
    }
    let bytes = data.data()?;
    Some(
        offset
            .checked_add(size)
            .and_then(|end| bytes.get(offset..end))
            .ok_or(ChunkOutOfBounds),
    )
}

/// The MIDI stream's EnumFormat pod: `application/control`.
fn midi_format_pod() -> Result<Vec<u8>, AudioError> {
    let id = |raw: u32| spa::pod::Value::Id(spa::utils::Id(raw));
    let object = spa::pod::Object {
        type_: spa::utils::SpaTypes::ObjectParamFormat.as_raw(),
        id: spa::param::ParamType::EnumFormat.as_raw(),
        properties: vec![
            spa::pod::Property::new(
                spa::sys::SPA_FORMAT_mediaType,
                id(spa::sys::SPA_MEDIA_TYPE_application),
            ),
            spa::pod::Property::new(
                spa::sys::SPA_FORMAT_mediaSubtype,
                id(spa::sys::SPA_MEDIA_SUBTYPE_control),
            ),
        ],
    };
    serialize_pod(object, "MIDI format pod")
}

/// The realtime `process` body: one buffer, `min(requested, capacity)` frames.
/// `requested` is 0 when the server does not say; then one configured period is played.
#[inline]
fn fill_buffer(stream: &pw::stream::Stream, processor: &ProcessorSlot, fallback: usize) {
    let Some(mut buffer) = stream.dequeue_buffer() else {
        return;
    };
    let requested = match buffer.requested() {
        0 => fallback,
        n => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let Some(data) = buffer.datas_mut().first_mut() else {
        return;
    };
    let mut frames = 0;
    if let Some(bytes) = data.data() {
        // SAFETY: every bit pattern is a valid f32; align_to_mut only reinterprets the
        // aligned middle part, and a misaligned buffer is left empty below.
        let (head, samples, _) = unsafe { bytes.align_to_mut::<f32>() };
        if head.is_empty() {
            frames = requested.min(samples.len() / CHANNELS);
            processor.process_interleaved(&mut samples[..frames * CHANNELS], CHANNELS);
        }
    }
    let chunk = data.chunk_mut();
    *chunk.offset_mut() = 0;
    *chunk.stride_mut() = FRAME_BYTES as i32;
    *chunk.size_mut() = (frames * FRAME_BYTES) as u32;
    // Dropping `buffer` queues it back to the stream.
}

/// The EnumFormat pod: F32LE, interleaved, at `rate`, one channel per position.
fn format_pod(rate: u32, positions: &[u32]) -> Result<Vec<u8>, AudioError> {
    let mut info = spa::param::audio::AudioInfoRaw::new();
    info.set_format(spa::param::audio::AudioFormat::F32LE);
    info.set_rate(rate);
    info.set_channels(positions.len() as u32);
    let mut position = [0; spa::param::audio::MAX_CHANNELS];
    for (slot, &p) in position.iter_mut().zip(positions) {
        *slot = p;
    }
    info.set_position(position);
    let object = spa::pod::Object {
        type_: spa::utils::SpaTypes::ObjectParamFormat.as_raw(),
        id: spa::param::ParamType::EnumFormat.as_raw(),
        properties: info.into(),
    };
    serialize_pod(object, "format pod")
}

/// `object` as the bytes of a pod (`what` names it in the error).
fn serialize_pod(object: spa::pod::Object, what: &str) -> Result<Vec<u8>, AudioError> {
    spa::pod::serialize::PodSerializer::serialize(
        std::io::Cursor::new(Vec::new()),
        &spa::pod::Value::Object(object),
    )
    .map(|(cursor, _)| cursor.into_inner())
    .map_err(|e| AudioError::Other {
        backend: BACKEND,
        detail: format!("{what}: {e:?}"),
    })
}
