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
//! joins it.
//!
//! The stream is connected with `RT_PROCESS`, so `process` runs on PipeWire's own data
//! thread. There it dequeues one buffer, fills exactly `min(requested, capacity)` frames
//! (filling the whole buffer would queue huge buffers: a few callbacks a second and high
//! latency), sets the chunk and queues the buffer back. It allocates nothing, takes no
//! lock and logs nothing.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use ::pipewire as pw;
use pw::properties::properties;
use pw::spa;
use pw::stream::{StreamFlags, StreamListener, StreamRc, StreamState};

use super::{
    AudioError, AudioOutput, OutputFormat, OutputStats, OutputStatsSnapshot, ProcessorSlot,
    RunningOutput,
};

const BACKEND: &str = "pipewire";

/// Channels of the stream (interleaved FL, FR).
pub const CHANNELS: usize = 2;

/// Bytes per interleaved frame (two `f32`).
const FRAME_BYTES: usize = CHANNELS * std::mem::size_of::<f32>();

/// Longest [`PipeWireOutput::open`] waits for the server's first answer.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest [`PipeWireOutput::server_reachable`] waits.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

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
}

impl Default for PipeWireOptions {
    fn default() -> Self {
        Self {
            node_name: "latentd".to_owned(),
            target: None,
            sample_rate: 48_000,
            period_frames: 256,
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
        let thread_options = options.clone();
        let thread = std::thread::Builder::new()
            .name("pipewire-loop".to_owned())
            .spawn(move || run_loop(&thread_options, &ready_tx, command_rx))
            .map_err(|e| AudioError::Other {
                backend: BACKEND,
                detail: format!("cannot spawn the loop thread: {e}"),
            })?;
        let mut loop_thread = LoopThread {
            commands,
            thread: Some(thread),
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
}

/// The loop thread's body: connect, report, serve commands until told to quit.
fn run_loop(
    options: &PipeWireOptions,
    ready: &mpsc::SyncSender<Result<(), String>>,
    commands: pw::channel::Receiver<Command>,
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
            move |id, _seq, res, message| match ready_once.borrow_mut().take() {
                Some(tx) => {
                    let _ = tx.send(Err(format!("core error {res}: {message}")));
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
        move |command| match command {
            Command::Start(processor, reply) => {
                let result = start_stream(&core, &options, processor);
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

    // Destroying the stream removes it from the data loop, so `process` has stopped
    // running once this returns.
    if let Some(stream) = active.borrow_mut().take() {
        let _ = stream.stream.disconnect();
        drop(stream);
    }
}

/// The stream and its listener, kept alive on the loop thread while playing.
struct ActiveStream {
    // Field order is drop order: the listener goes before the stream.
    _listener: StreamListener<()>,
    stream: StreamRc,
}

/// Create the playback stream, hand it the processor and connect it.
fn start_stream(
    core: &pw::core::CoreRc,
    options: &PipeWireOptions,
    processor: Arc<ProcessorSlot>,
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

    let fallback_frames = options.period_frames;
    let listener = stream
        .add_local_listener_with_user_data(())
        .state_changed(|_, _, old, new| match new {
            StreamState::Error(message) => log::error!("pipewire stream: error: {message}"),
            new => log::info!("pipewire stream: {old:?} -> {new:?}"),
        })
        .process(move |stream, _| fill_buffer(stream, &processor, fallback_frames))
        .register()
        .map_err(|e| backend_err("stream listener", e))?;

    let format = format_pod(options.sample_rate)?;
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
    Ok(ActiveStream {
        _listener: listener,
        stream,
    })
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

/// The EnumFormat pod: F32LE, stereo FL FR, at `rate`.
fn format_pod(rate: u32) -> Result<Vec<u8>, AudioError> {
    let mut info = spa::param::audio::AudioInfoRaw::new();
    info.set_format(spa::param::audio::AudioFormat::F32LE);
    info.set_rate(rate);
    info.set_channels(CHANNELS as u32);
    let mut position = [0; spa::param::audio::MAX_CHANNELS];
    position[0] = spa::sys::SPA_AUDIO_CHANNEL_FL;
    position[1] = spa::sys::SPA_AUDIO_CHANNEL_FR;
    info.set_position(position);
    let object = spa::pod::Object {
        type_: spa::utils::SpaTypes::ObjectParamFormat.as_raw(),
        id: spa::param::ParamType::EnumFormat.as_raw(),
        properties: info.into(),
    };
    spa::pod::serialize::PodSerializer::serialize(
        std::io::Cursor::new(Vec::new()),
        &spa::pod::Value::Object(object),
    )
    .map(|(cursor, _)| cursor.into_inner())
    .map_err(|e| AudioError::Other {
        backend: BACKEND,
        detail: format!("format pod: {e:?}"),
    })
}
