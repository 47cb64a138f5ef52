//! A named background thread that runs until it is told to stop: the shape of the daemon's
//! housekeeping threads (watchdog supervisor, health, realtime-log drain).
//!
//! Threading: the body gets the receiving end of a stop channel and returns when it sees a
//! message or the disconnect (`recv_timeout` gives both as one poll); [`StoppableThread::stop`]
//! and `Drop` drop the sender and join, so a stopped thread has finished its last iteration.
//! A body that panicked is logged once by name; its result is then `None`.

use std::sync::mpsc;
use std::thread::{self, JoinHandle};

/// A running thread with a stop channel; stopping joins it.
pub struct StoppableThread<T: Send + 'static> {
    name: &'static str,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> StoppableThread<T> {
    /// Starts `body` on a thread named `name`, handing it the stop receiver.
    pub fn spawn(
        name: &'static str,
        body: impl FnOnce(mpsc::Receiver<()>) -> T + Send + 'static,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel();
        let thread = thread::Builder::new()
            .name(name.into())
            .spawn(move || body(stopped))?;
        Ok(Self {
            name,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Tells the thread to stop and waits for it; its result, or `None` if it panicked.
    pub fn stop(mut self) -> Option<T> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Option<T> {
        drop(self.stop.take());
        match self.thread.take()?.join() {
            Ok(result) => Some(result),
            Err(_) => {
                log::error!("{} thread panicked", self.name);
                None
            }
        }
    }
}

impl<T: Send + 'static> Drop for StoppableThread<T> {
    fn drop(&mut self) {
        self.shutdown();
    }
}
