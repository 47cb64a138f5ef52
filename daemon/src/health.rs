//! The health thread: reads the output's [`Meters`] and sends `/meter` to the clients that
//! asked for it (`/notify/meter <hz>`), each at its own rate.
//!
//! Threading: one thread of its own ("health"), started after the output and the OSC
//! server, stopped (and joined) at shutdown. It only reads the meters' atomics and sends
//! through the [`Subscribers`] handle, which never waits on a client; the audio callback is
//! never touched.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use latentd_osc_schema::reply;

use crate::audio::Meters;
use crate::osc::Subscribers;

/// Longest sleep of the health thread: how late a new meter subscriber may get its first
/// `/meter`.
pub const HEALTH_TICK: Duration = Duration::from_millis(50);

/// What the health thread reads and sends through.
pub struct HealthParts {
    /// The output's meters.
    pub meters: Arc<Meters>,
    /// Meter subscribers (and, for alarms, the `/notify` ones).
    pub subscribers: Subscribers,
}

/// The running health thread; [`HealthThread::stop`] (or drop) ends it.
pub struct HealthThread {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HealthThread {
    /// Start the thread.
    pub fn spawn(parts: HealthParts) -> std::io::Result<HealthThread> {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("health".into())
            .spawn(move || run(parts, stopped))?;
        Ok(HealthThread {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stop the thread and wait for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            log::error!("health thread panicked");
        }
    }
}

impl Drop for HealthThread {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(parts: HealthParts, stopped: mpsc::Receiver<()>) {
    loop {
        let now = Instant::now();
        let next_meter = parts
            .subscribers
            .push_meters(now, || reply::meter(&parts.meters.levels()));
        let wake = next_meter.map_or(now + HEALTH_TICK, |due| due.min(now + HEALTH_TICK));
        match stopped.recv_timeout(wake.saturating_duration_since(Instant::now())) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
