//! The JACK output: a client with two ports, `out_1` and `out_2`, whose process callback
//! plays the ring through [`PeriodProcessor::process_planar`](super::PeriodProcessor::process_planar);
//! with [`JackOptions::inputs`] above 0 also input ports `in_1 .. in_N`, queued for a live
//! capture ([`super::input`]) by [`PeriodProcessor::process_duplex`](super::PeriodProcessor::process_duplex).
//!
//! The server dictates the format: its sample rate and buffer size ([`JackOutput::format`]).
//! The client never starts a server ([`ClientOptions::NO_START_SERVER`]); libjack picks the
//! server named by `JACK_DEFAULT_SERVER`, or the default one.
//!
//! Threading:
//! - [`JackOutput::open`], [`AudioOutput::start`] and [`RunningOutput::stop`] run on the
//!   main thread, or on the supervising thread when it reopens a lost output. libjack's own
//!   messages go to the log as `audio::libjack_log` says.
//! - JACK's process thread (realtime) runs [`Process::process`](jack::ProcessHandler::process), which only fetches the two
//!   port buffers and plays the [`ProcessorSlot`]. Its buffer-size callback runs outside
//!   the realtime path (JACK calls it between cycles) and updates the reported period and
//!   the ring's guard; a rate converter in the processor needs nothing there (it is
//!   preallocated for JACK's largest buffer size, see [`super::convert`]).
//! - JACK's notification thread (not realtime) counts xruns, reports a sample-rate change as
//!   an error in the log, and answers latency requests: the output ports' playback latency
//!   is what lies downstream plus one period; the input ports' capture latency and that
//!   playback latency are reported to the live input ([`super::input::InputShared`]). When the server goes away, libjack calls the
//!   shutdown callback there, which only sets the flag [`RunningOutput::server_lost`] reads.
//! - [`RunningOutput::connections`] and [`RunningOutput::connect`] run on the supervising
//!   thread; they talk to the server, never to the callbacks.
//!
//! MIDI input (with [`JackOptions::midi_in`]): a `midi_in` port, whose Control and Program
//! Changes the process callback copies into the shared queue of [`super::midi_in`] each
//! period, before it plays the ring.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use ::jack::{
    AsyncClient, AudioIn, AudioOut, Client, ClientOptions, ClientStatus, Control, Frames, MidiIn,
    NotificationHandler, Port, PortFlags, ProcessHandler, ProcessScope,
};
use latentd_engine::RingHandle;

use super::input::{InputShared, MAX_INPUTS};
use super::midi_in::{MIDI_PORT_NAME, MidiInHandle};
use super::{
    AudioError, AudioOutput, OutputFormat, OutputStats, OutputStatsSnapshot, PeerLink,
    ProcessorSlot, RunningOutput,
};

const BACKEND: &str = "jack";

/// Output ports, in channel order.
pub const PORT_NAMES: [&str; 2] = ["out_1", "out_2"];

/// How to open the JACK output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JackOptions {
    /// The JACK client name; the ports are `<client_name>:out_1` and `:out_2`.
    pub client_name: String,
    /// Connect `out_1`, `out_2` to the first physical playback ports once started.
    pub autoconnect: bool,
    /// MIDI input: register [`MIDI_PORT_NAME`] and queue its messages here.
    pub midi_in: Option<MidiInHandle>,
    /// Input ports to open, `in_1 .. in_N` (0: none; at most [`MAX_INPUTS`]).
    pub inputs: usize,
}

impl Default for JackOptions {
    fn default() -> Self {
        Self {
            client_name: "latentd".to_owned(),
            autoconnect: false,
            midi_in: None,
            inputs: 0,
        }
    }
}

/// The name of input port `k` (from 0): `in_1`, `in_2`, ...
pub fn input_port_name(k: usize) -> String {
    format!("in_{}", k + 1)
}

/// The format as the server last reported it; shared by the callbacks and the main thread.
#[derive(Debug)]
struct LiveFormat {
    sample_rate: AtomicU32,
    period_frames: AtomicU32,
    /// Our ports' playback latency (max), frames; 0 until the first latency callback.
    playback_latency: AtomicU32,
}

impl LiveFormat {
    fn get(&self) -> OutputFormat {
        OutputFormat {
            sample_rate: self.sample_rate.load(Ordering::Relaxed),
            period_frames: self.period_frames.load(Ordering::Relaxed) as usize,
            channels: PORT_NAMES.len(),
        }
    }

    /// The playback latency JACK reported, else the period (before the first report).
    fn latency_frames(&self) -> usize {
        match self.playback_latency.load(Ordering::Relaxed) {
            0 => self.period_frames.load(Ordering::Relaxed) as usize,
            frames => frames as usize,
        }
    }
}

/// What the latency callback reads: our ports and the live period. Boxed so its address
/// stays put while libjack holds it; it outlives the client (see field order below).
struct LatencyTarget {
    ports: [*mut ::jack::jack_sys::jack_port_t; 2],
    format: Arc<LiveFormat>,
    /// Our input ports, whose capture latency the live input compensates.
    inputs: Vec<*mut ::jack::jack_sys::jack_port_t>,
    /// Where the capture latency is reported (set once, before the client activates).
    report: OnceLock<Arc<InputShared>>,
}

// SAFETY: the port pointers are only handed to libjack, whose port calls are thread-safe;
// the rest is atomics.
unsafe impl Send for LatencyTarget {}
unsafe impl Sync for LatencyTarget {}

/// libjack's latency callback (notification thread). In playback mode JACK has just set
/// each output port's range to what lies downstream; add the one period we hold, and keep
/// the maximum as the output's latency ([`RunningOutput::latency_frames`]). In capture mode
/// it has set each input port's range to what lies upstream; the maximum goes to the live
/// input's report, when there is one.
unsafe extern "C" fn on_latency(
    mode: ::jack::jack_sys::jack_latency_callback_mode_t,
    arg: *mut c_void,
) {
    use ::jack::jack_sys as j;
    if arg.is_null() {
        return;
    }
    // SAFETY: `arg` is the `LatencyTarget` registered in `open`, alive until after the
    // client is closed.
    let target = unsafe { &*(arg as *const LatencyTarget) };
    if mode == j::JackCaptureLatency {
        let mut most = 0;
        for &port in &target.inputs {
            let mut range = j::jack_latency_range_t { min: 0, max: 0 };
            // SAFETY: `port` is one of our registered ports, valid while the client is open.
            unsafe { j::jack_port_get_latency_range(port, j::JackCaptureLatency, &mut range) };
            most = most.max(range.max);
        }
        if let Some(report) = target.report.get() {
            report.capture_latency.store(most, Ordering::Relaxed);
        }
        return;
    }
    if mode != j::JackPlaybackLatency {
        return;
    }
    let period = target.format.period_frames.load(Ordering::Relaxed);
    let mut most = 0;
    for &port in &target.ports {
        let mut range = j::jack_latency_range_t { min: 0, max: 0 };
        // SAFETY: `port` is one of our registered ports, valid while the client is open.
        unsafe {
            j::jack_port_get_latency_range(port, j::JackPlaybackLatency, &mut range);
            range.min = range.min.saturating_add(period);
            range.max = range.max.saturating_add(period);
            j::jack_port_set_latency_range(port, j::JackPlaybackLatency, &mut range);
        }
        most = most.max(range.max);
    }
    target
        .format
        .playback_latency
        .store(most, Ordering::Relaxed);
}

/// An opened JACK client with its two ports registered, not yet processing.
pub struct JackOutput {
    // Field order is drop order: the client closes before the latency target goes.
    client: Client,
    ports: [Port<AudioOut>; 2],
    format: Arc<LiveFormat>,
    latency: Box<LatencyTarget>,
    options: JackOptions,
    midi: Option<(Port<MidiIn>, MidiInHandle)>,
    /// Input ports `in_1 ..`, in channel order (empty without [`JackOptions::inputs`]).
    inputs: Vec<Port<AudioIn>>,
}

fn open_error(name: &str, e: ::jack::Error) -> AudioError {
    match e {
        ::jack::Error::ClientError(status) if status.contains(ClientStatus::SERVER_FAILED) => {
            AudioError::ServerUnreachable {
                backend: BACKEND,
                detail: format!("could not connect to the JACK server ({status:?})"),
            }
        }
        // libjack2 reports a taken exact name as a bare server error; ask the server.
        ::jack::Error::ClientError(status) if client_name_taken(name) => {
            AudioError::ClientNameTaken {
                backend: BACKEND,
                name: name.to_owned(),
                detail: format!("{status:?}"),
            }
        }
        ::jack::Error::ClientError(status) => AudioError::ClientRefused {
            backend: BACKEND,
            name: name.to_owned(),
            detail: format!("{status:?}"),
        },
        ::jack::Error::LibraryError(reason) => AudioError::ServerUnreachable {
            backend: BACKEND,
            detail: format!("libjack could not be loaded: {reason}"),
        },
        other => other_error("opening the client", other),
    }
}

/// Does the server already have a client called `name`? (Asked through a probe client.)
fn client_name_taken(name: &str) -> bool {
    super::libjack_log::opening(|| Client::new("latentd-probe", ClientOptions::NO_START_SERVER))
        .is_ok_and(|(probe, _)| probe.uuid_of_client_by_name(name).is_some())
}

/// The catch-all for a server call that failed in a way no caller acts on.
fn other_error(what: &str, e: ::jack::Error) -> AudioError {
    AudioError::Other {
        backend: BACKEND,
        detail: format!("{what}: {e}"),
    }
}

fn port_error(port: &str, e: ::jack::Error) -> AudioError {
    AudioError::PortRegistration {
        backend: BACKEND,
        port: port.to_owned(),
        detail: e.to_string(),
    }
}

impl JackOutput {
    /// Open a client on the running server (never starting one) and register its ports.
    pub fn open(options: &JackOptions) -> Result<Self, AudioError> {
        let (client, _status) = super::libjack_log::opening(|| {
            Client::new(
                &options.client_name,
                ClientOptions::NO_START_SERVER | ClientOptions::USE_EXACT_NAME,
            )
        })
        .map_err(|e| open_error(&options.client_name, e))?;
        let register = |name: &str| {
            client
                .register_port(name, AudioOut::default())
                .map_err(|e| port_error(name, e))
        };
        let ports = [register(PORT_NAMES[0])?, register(PORT_NAMES[1])?];
        if options.inputs > MAX_INPUTS {
            return Err(AudioError::Unsupported {
                backend: BACKEND,
                what: format!("{} input ports; at most {MAX_INPUTS}", options.inputs),
            });
        }
        let inputs = (0..options.inputs)
            .map(|k| {
                let name = input_port_name(k);
                client
                    .register_port(&name, AudioIn::default())
                    .map_err(|e| port_error(&name, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let format = Arc::new(LiveFormat {
            sample_rate: AtomicU32::new(client.sample_rate()),
            period_frames: AtomicU32::new(client.buffer_size()),
            playback_latency: AtomicU32::new(0),
        });
        let latency = Box::new(LatencyTarget {
            ports: [ports[0].raw(), ports[1].raw()],
            format: Arc::clone(&format),
            inputs: inputs.iter().map(Port::raw).collect(),
            report: OnceLock::new(),
        });
        // SAFETY: the client is open and not active; `latency` is boxed and dropped only
        // after the client is closed (field order of `JackOutput` and `RunningJack`).
        let rc = unsafe {
            ::jack::jack_sys::jack_set_latency_callback(
                client.raw(),
                Some(on_latency),
                &*latency as *const LatencyTarget as *mut c_void,
            )
        };
        if rc != 0 {
            return Err(AudioError::Other {
                backend: BACKEND,
                detail: format!("setting the latency callback failed (code {rc})"),
            });
        }
        let midi = match &options.midi_in {
            Some(queue) => Some((
                client
                    .register_port(MIDI_PORT_NAME, MidiIn::default())
                    .map_err(|e| port_error(MIDI_PORT_NAME, e))?,
                queue.clone(),
            )),
            None => None,
        };
        Ok(Self {
            client,
            ports,
            format,
            latency,
            options: options.clone(),
            midi,
            inputs,
        })
    }

    /// Is a JACK server answering (the one `JACK_DEFAULT_SERVER` names, or the default)?
    /// Opens a probe client without starting a server, and closes it.
    pub fn server_reachable() -> bool {
        super::libjack_log::opening(|| Client::new("latentd-probe", ClientOptions::NO_START_SERVER))
            .is_ok()
    }

    /// The sample rate of the server `JACK_DEFAULT_SERVER` names (or the default one), if
    /// one answers; asked through a probe client without ports, which is closed again.
    pub fn server_sample_rate() -> Option<u32> {
        super::libjack_log::opening(|| Client::new("latentd-probe", ClientOptions::NO_START_SERVER))
            .ok()
            .map(|(probe, _)| probe.sample_rate())
    }

    /// Connect our ports to the first physical playback ports; a missing one is a warning.
    fn autoconnect(client: &Client) {
        let own = client.name().to_owned();
        let physical = client.ports(
            None,
            Some(::jack::jack_sys::FLOAT_MONO_AUDIO),
            PortFlags::IS_INPUT | PortFlags::IS_PHYSICAL,
        );
        if physical.is_empty() {
            log::warn!("jack: autoconnect: the server has no physical playback ports");
            return;
        }
        for (k, port) in PORT_NAMES.iter().enumerate() {
            // A mono device gets both channels on its one port.
            let dest = &physical[k.min(physical.len() - 1)];
            let src = format!("{own}:{port}");
            if let Err(e) = client.connect_ports_by_name(&src, dest) {
                log::warn!("jack: autoconnect {src} -> {dest} failed: {e}");
            }
        }
    }
}

impl AudioOutput for JackOutput {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn format(&self) -> OutputFormat {
        self.format.get()
    }

    fn start_shared(
        self: Box<Self>,
        processor: Arc<ProcessorSlot>,
    ) -> Result<Box<dyn RunningOutput>, AudioError> {
        let JackOutput {
            client,
            ports,
            format,
            latency,
            options,
            midi,
            inputs,
        } = *self;
        if let Some(report) = processor.input() {
            report.ports.store(inputs.len(), Ordering::Relaxed);
            // Set once per output; a reopened output reports into the same state.
            let _ = latency.report.set(report);
        } else if !inputs.is_empty() {
            log::warn!("jack: input ports opened without a live input to feed; they are ignored");
        }
        let ring = processor.ring_handle();
        let stats = processor.stats();
        let lost = Arc::new(AtomicBool::new(false));
        let notifications = Notifications {
            stats: Arc::clone(&stats),
            lost: Arc::clone(&lost),
            format: Arc::clone(&format),
            rate_played: processor.rates().output,
            rate_seen: 0,
        };
        let own_ports = PORT_NAMES
            .iter()
            .map(|name| (name.to_string(), false))
            .chain(midi.as_ref().map(|_| (MIDI_PORT_NAME.to_string(), true)))
            .chain((0..inputs.len()).map(|k| (input_port_name(k), true)))
            .collect();
        let [out_1, out_2] = ports;
        let process = Process {
            processor,
            out_1,
            out_2,
            format: Arc::clone(&format),
            ring,
            midi,
            inputs,
        };
        let active =
            client
                .activate_async(notifications, process)
                .map_err(|e| AudioError::Activation {
                    backend: BACKEND,
                    detail: e.to_string(),
                })?;
        if options.autoconnect {
            JackOutput::autoconnect(active.as_client());
        }
        Ok(Box::new(RunningJack {
            active,
            own_ports,
            format,
            stats,
            lost,
            _latency: latency,
        }))
    }
}

/// The realtime side: two ports and the processor.
struct Process {
    processor: Arc<ProcessorSlot>,
    out_1: Port<AudioOut>,
    out_2: Port<AudioOut>,
    format: Arc<LiveFormat>,
    ring: RingHandle,
    midi: Option<(Port<MidiIn>, MidiInHandle)>,
    /// Input ports, in channel order (at most [`MAX_INPUTS`]).
    inputs: Vec<Port<AudioIn>>,
}

impl ProcessHandler for Process {
    fn process(&mut self, _: &Client, scope: &ProcessScope) -> Control {
        if let Some((port, queue)) = &self.midi {
            let frame = self.ring.playhead_and_clock().1;
            queue
                .0
                .push_period(frame, port.iter(scope).map(|m| (m.time, m.bytes)));
        }
        let out_1 = self.out_1.as_mut_slice(scope);
        let out_2 = self.out_2.as_mut_slice(scope);
        if self.inputs.is_empty() {
            self.processor.process_planar(&mut [out_1, out_2]);
        } else {
            // The port buffers on the stack: no allocation in the callback.
            let mut buffers: [&[f32]; MAX_INPUTS] = [&[]; MAX_INPUTS];
            let n = self.inputs.len().min(MAX_INPUTS);
            for (slot, port) in buffers.iter_mut().zip(&self.inputs) {
                *slot = port.as_slice(scope);
            }
            self.processor
                .process_duplex(&buffers[..n], &mut [out_1, out_2]);
        }
        Control::Continue
    }

    /// Between cycles, not realtime: record the new period and grow the ring's guard.
    fn buffer_size(&mut self, _: &Client, frames: Frames) -> Control {
        self.format.period_frames.store(frames, Ordering::Relaxed);
        let guard = self.processor.guard_for_output_period(frames as usize);
        if guard > self.ring.guard_frames()
            && let Err(e) = self.ring.set_guard_frames(guard)
        {
            log::error!("jack: buffer size {frames}: cannot grow the ring's guard: {e}");
        }
        Control::Continue
    }
}

/// The notification side: xruns, sample-rate changes, the server's shutdown.
struct Notifications {
    stats: Arc<OutputStats>,
    /// Set when the server shut the client down.
    lost: Arc<AtomicBool>,
    format: Arc<LiveFormat>,
    /// The rate the processor plays at (the ring's, or its converter's output rate).
    rate_played: u32,
    /// Last server rate reported, to log each change once.
    rate_seen: u32,
}

impl NotificationHandler for Notifications {
    /// Async-signal-safe: one atomic store.
    unsafe fn shutdown(&mut self, _status: ClientStatus, _reason: &str) {
        self.lost.store(true, Ordering::Release);
    }

    fn xrun(&mut self, _: &Client) -> Control {
        self.stats.xruns.fetch_add(1, Ordering::Relaxed);
        Control::Continue
    }

    fn sample_rate(&mut self, _: &Client, rate: Frames) -> Control {
        self.format.sample_rate.store(rate, Ordering::Relaxed);
        let previous = std::mem::replace(&mut self.rate_seen, rate);
        if rate != self.rate_played && previous != rate {
            log::error!(
                "jack: sample rate changed from {} to {rate} at run time; unsupported, restart latentd",
                self.rate_played
            );
        }
        Control::Continue
    }
}

/// A started JACK output.
struct RunningJack {
    // Field order is drop order: the client closes before the latency target goes.
    active: AsyncClient<Notifications, Process>,
    /// Our ports in link-memory order (see [`RunningOutput::connections`]): the outputs,
    /// then `midi_in` and the inputs `in_1 ..` where opened; each with whether it is an
    /// input (its links come from the peer).
    own_ports: Vec<(String, bool)>,
    format: Arc<LiveFormat>,
    stats: Arc<OutputStats>,
    lost: Arc<AtomicBool>,
    _latency: Box<LatencyTarget>,
}

impl RunningJack {
    fn own_port(&self, k: usize) -> String {
        format!("{}:{}", self.active.as_client().name(), self.own_ports[k].0)
    }
}

impl RunningOutput for RunningJack {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn format(&self) -> OutputFormat {
        self.format.get()
    }

    fn latency_frames(&self) -> usize {
        self.format.latency_frames()
    }

    fn stats(&self) -> OutputStatsSnapshot {
        self.stats.snapshot()
    }

    fn server_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    fn called_every_period(&self) -> bool {
        true
    }

    fn connections(&self) -> Vec<Vec<String>> {
        let client = self.active.as_client();
        (0..self.own_ports.len())
            .map(|k| {
                client
                    .port_by_name(&self.own_port(k))
                    .map(|port| port.get_connections())
                    .unwrap_or_default()
            })
            .collect()
    }

    fn has_port(&self, name: &str) -> bool {
        self.active.as_client().port_by_name(name).is_some()
    }

    fn connect(&self, channel: usize, peer: &str) -> Result<PeerLink, AudioError> {
        let Some(&(_, is_input)) = self.own_ports.get(channel) else {
            return Err(AudioError::Unsupported {
                backend: BACKEND,
                what: format!("port {channel}; there are {}", self.own_ports.len()),
            });
        };
        let client = self.active.as_client();
        if client.port_by_name(peer).is_none() {
            return Ok(PeerLink::Absent);
        }
        let own = self.own_port(channel);
        let (from, to) = if is_input {
            (peer, own.as_str())
        } else {
            (own.as_str(), peer)
        };
        match client.connect_ports_by_name(from, to) {
            Ok(()) => Ok(PeerLink::Linked),
            Err(::jack::Error::PortAlreadyConnected(..)) => Ok(PeerLink::AlreadyLinked),
            Err(e) => Err(AudioError::Link {
                backend: BACKEND,
                port: own,
                peer: peer.to_owned(),
                detail: e.to_string(),
            }),
        }
    }

    /// The server is gone: closing the client would make libjack cancel its threads, and a
    /// cancellation unwinding through the jack crate's Rust callback frames aborts the
    /// process. The dead client (a few kilobytes and two parked threads) is leaked instead.
    fn abandon(self: Box<Self>) {
        std::mem::forget(self);
    }

    fn stop(self: Box<Self>) -> Result<(), AudioError> {
        let RunningJack {
            active, _latency, ..
        } = *self;
        let (client, _notifications, _process) = active
            .deactivate()
            .map_err(|e| other_error("deactivating the client", e))?;
        drop(client);
        drop(_latency);
        Ok(())
    }
}
