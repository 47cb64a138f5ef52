//! [`OutputSupervisor`]: owns the audio output for the daemon's lifetime. When the output's
//! server goes away, the daemon keeps running (the engine and the ring do not notice
//! beyond the playhead standing still); the supervisor reopens the same backend with
//! exponential backoff ([`retry_delay`]: 100 ms doubling to a 0.5 s cap, so a returning
//! server is picked up within about half a second), plays the same [`ProcessorSlot`] through
//! the new output and restores the port links it remembered ([`LinkMemory`]).
//!
//! Loss is noticed two ways: the backend says so ([`RunningOutput::server_lost`]: JACK's
//! shutdown notice; PipeWire's lost connection, or its playback stream dropped by the
//! server), or a backend whose server calls it every period
//! ([`RunningOutput::called_every_period`]: JACK, null) has not been called for
//! [`STALL_LIMIT`]. PipeWire is not called every period (an unlinked or suspended stream
//! legitimately is not), so a PipeWire server is recovered when it goes away (exits,
//! crashes, restarts: its socket closes), not when it freezes with its socket open.
//!
//! A stall without the server's goodbye may be a server that froze (SIGSTOP, a hung
//! machine) and resumes: the stalled output is kept, not abandoned, while reopening is
//! tried. If its callbacks flow again (the slot's callback count moves) before a reopen
//! succeeds, it is adopted back: the state is `running` at once, one reconnect counted. It
//! is abandoned when its server says goodbye after all, or when a reopen succeeds (then the
//! server is a new one).
//!
//! `/status` reads the format (period included) from the live output every [`TICK`]
//! ([`OutputStateHandle::period_frames`]): a server that returns with another period, or
//! changes its buffer size while running, shows at once.
//!
//! A returning server must run at the rate the processor plays at (the ring's, or the one
//! its converter was built for: the record tap's file has that rate too): one at another
//! rate is refused with an error in the log and `/status`, and the supervisor keeps
//! retrying. A different period is followed: the ring's guard grows for it (counted in
//! ring frames, which differ from output frames when the processor converts).
//!
//! Each output the supervisor starts gets the realtime check once ([`super::realtime`]):
//! the supervisor arms the slot's [`CallbackThread`](super::CallbackThread) once the output
//! runs (and any older one is gone), and on a later tick asks how the thread the callback
//! stored is scheduled. The answer is logged (info when `SCHED_FIFO` / `SCHED_RR`, a warning
//! otherwise) and published ([`OutputStateHandle::callback_scheduling`]); losing the output
//! disarms the check, so a thread is only asked about while its output runs.
//!
//! The supervisor owns latentd's one stop fade, whoever stops the output:
//! [`OutputSupervisor::fade_out`] ramps the output to silence and waits for it (the daemon
//! calls it at its step of the stop order, [`crate::service::Daemon::stop`]);
//! [`OutputSupervisor::stop`] and a drop (a start that failed half-way) fade the same way
//! when nobody did, then stop the output.
//!
//! Threading: [`OutputSupervisor::start`] and [`OutputSupervisor::stop`] run on the main
//! thread; one supervising thread (`latentd-audio-supervisor`) owns the running output,
//! watches it every [`TICK`], logs every transition and publishes the status behind a
//! mutex that only it and [`OutputSupervisor::status`] take. The realtime callback never
//! sees any of this: it only plays the slot.

use latentd_engine::lock::MutexExt;
use std::fmt;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::links::{self, LinkMemory, REFUSAL_GRACE};
use super::realtime::{Scheduling, scheduling_of};
use super::select::{
    BackendChoice, OUTPUT_CHANNELS, OutputOptions, open_output, server_sample_rate,
};
use super::{
    AudioError, AudioOutput, OutputFormat, OutputStatsSnapshot, PeerLink, PeriodProcessor,
    ProcessorSlot, Rates, RunningOutput,
};

/// How often the supervising thread looks at the output.
pub const TICK: Duration = Duration::from_millis(50);
/// How long the callback count may stand still before the graph counts as stopped for
/// [`LinkMemory::observe_with`]: longer than any JACK period (8192 frames at 44.1 kHz).
const GRAPH_STILL: Duration = Duration::from_millis(250);
/// First wait after a loss or a failed attempt.
pub const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Longest wait between two attempts.
pub const RETRY_CAP: Duration = Duration::from_millis(500);
/// A backend called every period that has not been called for this long is lost.
pub const STALL_LIMIT: Duration = Duration::from_secs(3);
/// Longest [`OutputSupervisor::stop`] waits for the fade to silence.
pub const FADE_TIMEOUT: Duration = Duration::from_secs(1);

/// The wait before the next attempt once `failed` attempts have failed since the loss:
/// [`FIRST_RETRY`] doubling, at most [`RETRY_CAP`].
pub fn retry_delay(failed: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(1u32.checked_shl(failed).unwrap_or(u32::MAX))
        .min(RETRY_CAP)
}

/// Where the output stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputState {
    /// Playing.
    Running,
    /// The server went away at `since`; no attempt to reopen has failed yet.
    Lost {
        /// When the loss was noticed.
        since: Instant,
    },
    /// The server went away at `since`; `attempts` attempts to reopen have failed.
    Reconnecting {
        /// When the loss was noticed.
        since: Instant,
        /// Failed attempts so far.
        attempts: u32,
    },
}

impl OutputState {
    /// `running`, `lost` or `reconnecting`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Lost { .. } => "lost",
            Self::Reconnecting { .. } => "reconnecting",
        }
    }
}

impl fmt::Display for OutputState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Running => f.write_str("running"),
            Self::Lost { since } => write!(f, "lost {:.1} s ago", since.elapsed().as_secs_f64()),
            Self::Reconnecting { since, attempts } => write!(
                f,
                "reconnecting: lost {:.1} s ago, {attempts} attempts failed",
                since.elapsed().as_secs_f64()
            ),
        }
    }
}

/// What `/status` shows about the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputStatus {
    /// `jack`, `pipewire` or `null` (what `auto` chose).
    pub backend: &'static str,
    /// Running, lost, reconnecting.
    pub state: OutputState,
    /// Times the output came back after a loss.
    pub reconnects: u64,
    /// The format it runs at (the last one while lost).
    pub format: OutputFormat,
    /// The callback's counters, summed over every output played since the start.
    pub stats: OutputStatsSnapshot,
    /// Why the last attempt to reopen failed, or why the output was lost; `None` once
    /// running again.
    pub last_error: Option<String>,
    /// Per output channel, the ports it feeds or is to feed again once they exist.
    pub links: Vec<Vec<String>>,
    /// How the server schedules the callback's thread, as last checked; `None` until the
    /// first check (or when the thread could not be asked).
    pub callback: Option<Scheduling>,
}

/// What the supervising thread publishes (the rest of [`OutputStatus`] is read live).
#[derive(Debug, Clone)]
struct Published {
    state: OutputState,
    reconnects: u64,
    format: OutputFormat,
    /// [`RunningOutput::latency_frames`] of the live output (the last one while lost).
    latency_frames: usize,
    last_error: Option<String>,
    links: Vec<Vec<String>>,
    callback: Option<Scheduling>,
}

/// The audio output, kept playing across server restarts. See the module doc.
pub struct OutputSupervisor {
    backend: &'static str,
    slot: Arc<ProcessorSlot>,
    published: Arc<Mutex<Published>>,
    stop: mpsc::Sender<()>,
    thread: Option<JoinHandle<Result<(), AudioError>>>,
}

impl OutputSupervisor {
    /// Open the output `choice` names (for `auto`, the first that answers; later reopens
    /// use the backend it chose) and play `processor` through it. Fails, without retrying,
    /// when the output cannot be opened or started, or runs at another rate than the ring.
    pub fn start(
        choice: BackendChoice,
        options: OutputOptions,
        processor: PeriodProcessor,
    ) -> Result<Self, AudioError> {
        let output = open_output(choice, &options)?;
        Self::adopt(output, options, processor)
    }

    /// Play `processor` through `output`, already opened (the caller read its format to
    /// build the ring), and supervise it; reopens use `options` and `output`'s backend.
    pub fn adopt(
        output: Box<dyn AudioOutput>,
        options: OutputOptions,
        processor: PeriodProcessor,
    ) -> Result<Self, AudioError> {
        let backend = output.name();
        let choice = backend
            .parse::<BackendChoice>()
            .map_err(|e| AudioError::Other {
                backend,
                detail: format!("cannot supervise this output: {e}"),
            })?;
        let slot = ProcessorSlot::new(processor);
        let running = start_on(output, &slot)?;
        let published = Arc::new(Mutex::new(Published {
            state: OutputState::Running,
            reconnects: 0,
            format: running.format(),
            latency_frames: running.latency_frames(),
            last_error: None,
            links: vec![Vec::new(); OUTPUT_CHANNELS],
            callback: None,
        }));
        // The only output there is runs: its next callback stores its thread.
        slot.callback_thread().arm();
        let (stop, stop_rx) = mpsc::channel();
        let watch = Watch {
            choice,
            options,
            slot: Arc::clone(&slot),
            published: Arc::clone(&published),
            running: Some(running),
            stalled: None,
            links: LinkMemory::new(OUTPUT_CHANNELS),
            callbacks_seen: 0,
            progress_at: Instant::now(),
            still_at: None,
            ticked_at: Instant::now(),
            lost_at: Instant::now(),
            failed: 0,
            next_try: Instant::now(),
            last_error: None,
            reconnects: 0,
            callback: None,
        };
        let thread = std::thread::Builder::new()
            .name("latentd-audio-supervisor".into())
            .spawn(move || watch.run(&stop_rx))
            .map_err(|e| AudioError::Other {
                backend,
                detail: format!("cannot start the supervising thread: {e}"),
            })?;
        log::info!("audio: supervising the {backend} output");
        Ok(Self {
            backend,
            slot,
            published,
            stop,
            thread: Some(thread),
        })
    }

    /// Where the output stands now.
    pub fn status(&self) -> OutputStatus {
        let published = self.published.lock_unpoisoned().clone();
        OutputStatus {
            backend: self.backend,
            state: published.state,
            reconnects: published.reconnects,
            format: published.format,
            stats: self.slot.stats().snapshot(),
            last_error: published.last_error,
            links: published.links,
            callback: published.callback,
        }
    }

    /// A cheap handle on the output's state and reconnect count, for `/status` (control
    /// threads; it takes the supervisor's status lock for a copy).
    pub fn state_handle(&self) -> OutputStateHandle {
        OutputStateHandle {
            published: Arc::clone(&self.published),
        }
    }

    /// The stop fade: ramp the output to silence and wait until it is silent (at most
    /// [`FADE_TIMEOUT`]; a lost output is not waited for, nothing calls its callback). Once
    /// asked, the fade holds: an output that plays the slot later (a server back during the
    /// stop) plays the rest of the ramp, then silence. The daemon calls it at the step of
    /// its stop order where the sound must end ([`crate::service`]); [`stop`](Self::stop)
    /// (and a drop) call it too, and it returns at once on an output already silent.
    pub fn fade_out(&self) {
        let playing = self.published.lock_unpoisoned().state == OutputState::Running;
        fade_to_silence(&self.slot, self.backend, playing);
    }

    /// Fade to silence ([`fade_out`](Self::fade_out)) if playing, stop the output and the
    /// supervising thread.
    pub fn stop(mut self) -> Result<(), AudioError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), AudioError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let _ = self.stop.send(());
        thread.join().map_err(|_| AudioError::Other {
            backend: self.backend,
            detail: "the supervising thread panicked".into(),
        })?
    }
}

impl Drop for OutputSupervisor {
    fn drop(&mut self) {
        if let Err(e) = self.stop_and_join() {
            log::error!("audio: stopping the output: {e}");
        }
    }
}

/// The output's state and reconnect count, read by `/status` (see
/// [`OutputSupervisor::state_handle`]).
#[derive(Clone)]
pub struct OutputStateHandle {
    published: Arc<Mutex<Published>>,
}

impl OutputStateHandle {
    /// Where the output stands now and how many times it came back after a loss.
    pub fn get(&self) -> (OutputState, u64) {
        let published = self.published.lock_unpoisoned();
        (published.state, published.reconnects)
    }

    /// The output's period in frames, as the live output reports it (the last one while
    /// lost); refreshed every [`TICK`].
    pub fn period_frames(&self) -> usize {
        self.published.lock_unpoisoned().format.period_frames
    }

    /// The output's latency to the listener in ms, as its server reports it
    /// ([`RunningOutput::latency_frames`]; the last one while lost); refreshed every
    /// [`TICK`].
    pub fn latency_ms(&self) -> f64 {
        let published = self.published.lock_unpoisoned();
        published.latency_frames as f64 * 1e3 / f64::from(published.format.sample_rate.max(1))
    }

    /// [`latency_ms`](Self::latency_ms) in frames at the output's rate.
    pub fn latency_frames(&self) -> usize {
        self.published.lock_unpoisoned().latency_frames
    }

    /// How the server schedules the callback's thread, as last checked (once per output
    /// started); `None` before the first check.
    pub fn callback_scheduling(&self) -> Option<Scheduling> {
        self.published.lock_unpoisoned().callback
    }
}

/// Open the output `choice` names for the slot's ring: a server known to run at another
/// rate is refused before any port is registered (no ports flapping once a retry).
fn reopen(
    choice: BackendChoice,
    options: &OutputOptions,
    slot: &Arc<ProcessorSlot>,
) -> Result<Box<dyn RunningOutput>, AudioError> {
    if let Some(rate) = server_sample_rate(choice)
        && rate != slot.rates().output
    {
        return Err(rate_mismatch(choice.as_str(), rate, slot.rates()));
    }
    start_on(open_output(choice, options)?, slot)
}

fn rate_mismatch(backend: &'static str, server: u32, rates: Rates) -> AudioError {
    AudioError::RateMismatch {
        backend,
        server,
        wanted: rates.output,
        ring: rates.ring,
    }
}

/// Check that `output` can play the slot (the rate it plays at; the ring's guard grown for
/// the output's period), then start it.
fn start_on(
    output: Box<dyn AudioOutput>,
    slot: &Arc<ProcessorSlot>,
) -> Result<Box<dyn RunningOutput>, AudioError> {
    let backend = output.name();
    let format = output.format();
    let ring = slot.ring_handle();
    if format.sample_rate != slot.rates().output {
        return Err(rate_mismatch(backend, format.sample_rate, slot.rates()));
    }
    let guard = slot.guard_for_output_period(format.period_frames);
    if guard > ring.guard_frames() {
        ring.set_guard_frames(guard)
            .map_err(|e| AudioError::Unsupported {
                backend,
                what: format!("a period of {} frames: {e}", format.period_frames),
            })?;
    }
    output.start_shared(Arc::clone(slot))
}

/// The supervising thread's state.
struct Watch {
    choice: BackendChoice,
    options: OutputOptions,
    slot: Arc<ProcessorSlot>,
    published: Arc<Mutex<Published>>,
    /// The output playing now; `None` while lost.
    running: Option<Box<dyn RunningOutput>>,
    /// The output lost to a stall, kept while lost in case its server resumes calling it.
    stalled: Option<Box<dyn RunningOutput>>,
    links: LinkMemory,
    /// Callbacks counted at the last progress.
    callbacks_seen: u64,
    /// When the callback count last moved (or the watch resumed after a gap).
    progress_at: Instant,
    /// When a tick last found the graph standing still for [`GRAPH_STILL`] (a driver
    /// waiting or restarting); links that vanish around then were not removed by hand.
    still_at: Option<Instant>,
    /// When the last tick ran.
    ticked_at: Instant,
    /// When the current loss was noticed.
    lost_at: Instant,
    /// Failed attempts since the loss.
    failed: u32,
    /// When to try reopening next.
    next_try: Instant,
    last_error: Option<String>,
    reconnects: u64,
    /// The running output's callback scheduling, once checked.
    callback: Option<Scheduling>,
}

impl Watch {
    fn run(mut self, stop: &mpsc::Receiver<()>) -> Result<(), AudioError> {
        loop {
            match stop.recv_timeout(TICK) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return self.shut_down(),
            }
            let now = Instant::now();
            if self.running.is_some() {
                self.watch_running(now);
                self.check_realtime();
            } else if !self.revive_stalled(now) && now >= self.next_try {
                self.try_reopen(now);
            }
            self.publish();
        }
    }

    fn backend(&self) -> &'static str {
        self.choice.as_str()
    }

    fn watch_running(&mut self, now: Instant) {
        let Some(running) = self.running.as_ref() else {
            return;
        };
        let callbacks = self.slot.stats().snapshot().callbacks;
        // After a gap in our own ticks (the machine was suspended, or this thread starved),
        // the callback gets a fresh chance before it counts as stalled.
        let gap = now - std::mem::replace(&mut self.ticked_at, now) > STALL_LIMIT / 4;
        if callbacks != self.callbacks_seen || gap {
            self.callbacks_seen = callbacks;
            self.progress_at = now;
        }
        let lost = if running.server_lost() {
            Some((
                "the server is gone or shut the client down".to_owned(),
                false,
            ))
        } else if running.called_every_period() && now - self.progress_at >= STALL_LIMIT {
            let reason = format!("no callback for {:.1} s", STALL_LIMIT.as_secs_f64());
            Some((reason, true))
        } else {
            None
        };
        match lost {
            Some((reason, stalled)) => self.lose(now, reason, stalled),
            None => {
                if now - self.progress_at >= GRAPH_STILL {
                    self.still_at = Some(now);
                }
                // A link that goes with its peer port, or while the graph stood still
                // (netjack2's driver drops its ports' links when its master returns),
                // was not removed by hand: it is restored once its peer is back.
                let graph_stopped = self
                    .still_at
                    .is_some_and(|t| now - t <= links::DISCONNECT_GRACE);
                self.links
                    .observe_with(&running.connections(), now, |peer| {
                        graph_stopped || !running.has_port(peer)
                    });
                self.restore_links(now);
            }
        }
    }

    /// The output is lost at `now`; one that only `stalled` is kept (see the module doc).
    fn lose(&mut self, now: Instant, reason: String, stalled: bool) {
        let backend = self.backend();
        log::warn!(
            "audio: {backend} output lost ({reason}); the engine keeps running, reconnecting"
        );
        // The lost output's thread may end: never ask about it.
        self.slot.callback_thread().disarm();
        if let Some(running) = self.running.take() {
            if stalled {
                self.stalled = Some(running);
            } else {
                running.abandon();
            }
        }
        self.links.output_lost();
        self.lost_at = now;
        self.failed = 0;
        self.next_try = now + retry_delay(0);
        self.last_error = Some(reason);
    }

    /// While lost to a stall: adopt the stalled output back if its callbacks flow again
    /// (returns `true`), or abandon it if its server said goodbye after all.
    fn revive_stalled(&mut self, now: Instant) -> bool {
        let Some(stalled) = self.stalled.as_ref() else {
            return false;
        };
        if stalled.server_lost() {
            log::debug!(
                "audio: the stalled {} output's server shut it down",
                self.backend()
            );
            if let Some(stalled) = self.stalled.take() {
                stalled.abandon();
            }
            return false;
        }
        let callbacks = self.slot.stats().snapshot().callbacks;
        if callbacks == self.callbacks_seen {
            return false;
        }
        self.running = self.stalled.take();
        self.callbacks_seen = callbacks;
        self.reconnects += 1;
        self.last_error = None;
        self.progress_at = now;
        self.ticked_at = now;
        self.restore_links(now);
        log::info!(
            "audio: {} output back after {:.2} s: the server calls it again",
            self.backend(),
            (now - self.lost_at).as_secs_f64()
        );
        true
    }

    fn try_reopen(&mut self, now: Instant) {
        let backend = self.backend();
        match reopen(self.choice, &self.options, &self.slot) {
            Ok(running) => {
                if let Some(stalled) = self.stalled.take() {
                    // A new server answered: the stalled output's is gone for good.
                    stalled.abandon();
                }
                self.running = Some(running);
                // The stalled output is gone: the next callback is the new output's.
                self.slot.callback_thread().arm();
                self.reconnects += 1;
                self.last_error = None;
                self.progress_at = now;
                self.ticked_at = now;
                let wanted = self.links.pending().len();
                self.restore_links(now);
                let waiting = self.links.pending();
                log::info!(
                    "audio: {backend} output back after {:.2} s ({} attempts): ports registered, {} of {wanted} links restored{}",
                    (now - self.lost_at).as_secs_f64(),
                    self.failed + 1,
                    wanted - waiting.len(),
                    if waiting.is_empty() {
                        String::new()
                    } else {
                        format!("; waiting for {}", peers_list(&waiting))
                    }
                );
            }
            Err(e) => {
                self.failed += 1;
                let message = e.to_string();
                if self.last_error.as_deref() != Some(message.as_str()) {
                    match e.retry_may_help() {
                        false => log::error!(
                            "audio: cannot reopen the {backend} output: {message}; retrying"
                        ),
                        true => log::warn!(
                            "audio: cannot reopen the {backend} output yet: {message}; retrying every {:.1} s at most",
                            RETRY_CAP.as_secs_f64()
                        ),
                    }
                } else {
                    log::debug!(
                        "audio: reopening the {backend} output, attempt {}: {message}",
                        self.failed
                    );
                }
                self.last_error = Some(message);
                self.next_try = now + retry_delay(self.failed);
            }
        }
    }

    /// Link every pending peer that exists now; one the server refuses is retried on the
    /// next ticks (see [`LinkMemory::refused`]).
    fn restore_links(&mut self, now: Instant) {
        let Some(running) = self.running.as_ref() else {
            return;
        };
        for (channel, peer) in self.links.pending() {
            match running.connect(channel, &peer) {
                Ok(PeerLink::Linked) if channel < OUTPUT_CHANNELS => {
                    log::info!(
                        "audio: {} channel {} feeds {peer} again",
                        self.choice,
                        channel + 1
                    );
                    self.links.restored(channel, &peer);
                }
                Ok(PeerLink::Linked) => {
                    log::info!(
                        "audio: {} input port {} is fed by {peer} again",
                        self.choice,
                        channel + 1 - OUTPUT_CHANNELS
                    );
                    self.links.restored(channel, &peer);
                }
                Ok(PeerLink::AlreadyLinked) => self.links.restored(channel, &peer),
                Ok(PeerLink::Absent) => {}
                Err(e) => {
                    if self.links.refused(channel, &peer, now) {
                        log::warn!(
                            "audio: not restoring a link, refused for {:.0} s: {e}",
                            REFUSAL_GRACE.as_secs_f64()
                        );
                    } else {
                        log::debug!("audio: link refused, retrying: {e}");
                    }
                }
            }
        }
    }

    fn publish(&self) {
        let state = match (&self.running, self.failed) {
            (Some(_), _) => OutputState::Running,
            (None, 0) => OutputState::Lost {
                since: self.lost_at,
            },
            (None, attempts) => OutputState::Reconnecting {
                since: self.lost_at,
                attempts,
            },
        };
        let mut published = self.published.lock_unpoisoned();
        published.state = state;
        published.reconnects = self.reconnects;
        if let Some(running) = &self.running {
            published.format = running.format();
            published.latency_frames = running.latency_frames();
        }
        published.last_error.clone_from(&self.last_error);
        published.links = self.links.remembered();
        published.callback = self.callback;
    }

    /// Once per output: ask how the thread its callback stored is scheduled, log and
    /// publish it. Only called while `running` is the one output playing the slot since
    /// the check was armed (see the module doc).
    fn check_realtime(&mut self) {
        if self.running.is_none() {
            return;
        }
        let Some(thread) = self.slot.callback_thread().take() else {
            return;
        };
        let backend = self.backend();
        match scheduling_of(thread) {
            Ok(scheduling) => {
                if scheduling.is_realtime() {
                    log::info!("audio: the {backend} callback runs {scheduling}");
                } else {
                    log::warn!(
                        "audio: the {backend} callback runs {scheduling}, not realtime: other \
                         load can make it miss periods (xruns); see docs/operations.md, \
                         \"Realtime\""
                    );
                }
                self.callback = Some(scheduling);
            }
            Err(e) => {
                log::warn!("audio: cannot read the {backend} callback's scheduling: {e}");
                self.callback = None;
            }
        }
    }

    fn shut_down(mut self) -> Result<(), AudioError> {
        if let Some(stalled) = self.stalled.take() {
            // Its server may be frozen: closing the client could block the stop.
            stalled.abandon();
        }
        let Some(running) = self.running.take() else {
            log::info!("audio: stopping; the {} output was lost", self.backend());
            return Ok(());
        };
        fade_to_silence(&self.slot, self.backend(), true);
        running.stop()
    }
}

/// The one stop fade of latentd's output, whoever stops it ([`OutputSupervisor::fade_out`]
/// on the daemon's stop, the supervising thread's shutdown otherwise): ask `slot`'s
/// processor to fade ([`super::FadeOut`]) and, while `playing`, wait until it is silent,
/// at most [`FADE_TIMEOUT`]. Returns at once when it is silent already.
fn fade_to_silence(slot: &ProcessorSlot, backend: &str, playing: bool) {
    let fade = slot.fade();
    if fade.is_silent() {
        return;
    }
    if !playing {
        fade.request();
        return;
    }
    if !fade.fade_and_wait(FADE_TIMEOUT) {
        log::warn!(
            "audio: the {backend} output did not fade to silence within {:.1} s",
            FADE_TIMEOUT.as_secs_f64()
        );
    }
}

fn peers_list(links: &[(usize, String)]) -> String {
    links
        .iter()
        .map(|(k, peer)| format!("{peer} (channel {})", k + 1))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use latentd_engine::PlayheadRing;

    #[test]
    fn retries_start_at_100_ms_double_and_stop_growing_at_half_a_second() {
        let ms = |failed| retry_delay(failed).as_millis();
        assert_eq!(
            (0..6).map(ms).collect::<Vec<_>>(),
            [100, 200, 400, 500, 500, 500]
        );
        assert_eq!(ms(31), 500);
        assert_eq!(ms(32), 500);
        assert_eq!(ms(u32::MAX), 500);
        // A server back at any moment is tried again within the cap plus one tick, leaving
        // most of the 2 s the ports have to come back in for the reopen itself.
        assert!(RETRY_CAP + TICK <= Duration::from_millis(600));
    }

    fn options(rate: u32) -> OutputOptions {
        OutputOptions {
            client_name: "latentd-supervisor-test".into(),
            autoconnect: false,
            sample_rate: rate,
            period_frames: 64,
            midi_in: None,
            inputs: 0,
        }
    }

    fn processor(rate: u32) -> (PeriodProcessor, latentd_engine::RingHandle) {
        let ring = PlayheadRing::silence(rate as usize, 2, rate, 64).unwrap();
        let handle = ring.handle();
        let (_writer, reader) = ring.split();
        (PeriodProcessor::new(reader, None), handle)
    }

    #[test]
    fn a_null_output_is_supervised_running_and_stops_faded() {
        let (p, ring) = processor(48_000);
        let sup = OutputSupervisor::start(BackendChoice::Null, options(48_000), p).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while sup.status().stats.callbacks < 10 {
            assert!(Instant::now() < deadline, "the null output never played");
            std::thread::sleep(Duration::from_millis(5));
        }
        let status = sup.status();
        assert_eq!(
            (status.backend, status.state),
            ("null", OutputState::Running)
        );
        assert_eq!(status.reconnects, 0);
        assert_eq!(status.links, [Vec::<String>::new(), Vec::new()]);
        sup.stop().unwrap();
        let played = ring.counters().frames_played;
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(ring.counters().frames_played, played, "still playing");
    }

    #[test]
    fn the_null_clock_s_scheduling_is_checked_once_and_published() {
        let (p, _ring) = processor(48_000);
        let sup = OutputSupervisor::start(BackendChoice::Null, options(48_000), p).unwrap();
        let handle = sup.state_handle();
        let deadline = Instant::now() + Duration::from_secs(5);
        let seen = loop {
            if let Some(seen) = handle.callback_scheduling() {
                break seen;
            }
            assert!(
                Instant::now() < deadline,
                "the callback's thread was never checked"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        // The null clock asks for SCHED_FIFO 10 and keeps it where the system allows it;
        // a scratch thread tells whether it does here.
        let allowed = std::thread::spawn(|| {
            let param = libc::sched_param { sched_priority: 1 };
            // SAFETY: plain FFI call on the current (scratch) thread with a valid parameter.
            unsafe {
                libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) == 0
            }
        })
        .join()
        .unwrap();
        let expected = if allowed {
            "SCHED_FIFO prio 10"
        } else {
            "SCHED_OTHER"
        };
        assert_eq!(seen.to_string(), expected);
        assert_eq!(sup.status().callback, Some(seen));
        // Checked once: the probe is not armed again while the output runs.
        std::thread::sleep(TICK * 3);
        assert_eq!(sup.slot.callback_thread().take(), None);
        sup.stop().unwrap();
    }

    #[test]
    fn an_output_at_another_rate_than_the_ring_is_refused() {
        let (p, _ring) = processor(48_000);
        match OutputSupervisor::start(BackendChoice::Null, options(44_100), p) {
            Err(
                e @ AudioError::RateMismatch {
                    backend: "null",
                    server: 44_100,
                    wanted: 48_000,
                    ring: 48_000,
                },
            ) => {
                assert!(
                    e.to_string()
                        .contains("44100 Hz but the loop is at 48000 Hz"),
                    "{e}"
                )
            }
            Err(e) => panic!("expected RateMismatch, got {e}"),
            Ok(_) => panic!("started at 44100 Hz on a 48000 Hz ring"),
        }
    }
}
