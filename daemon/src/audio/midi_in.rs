//! MIDI input's realtime end: the audio callback (JACK's process callback, or the PipeWire
//! MIDI stream's, which reads its buffer with [`super::spa_sequence`]) copies the Control
//! Change and Program Change messages of its period into a preallocated queue
//! ([`MidiInput::push_period`]);
//! the control side drains it ([`MidiInReader`]) and applies them (`control::midi`).
//!
//! Each message is stamped with its frame on the ring's clock (the clock at the period's
//! start plus the message's offset in it), so the control side applies them in frame order;
//! by the time it sees them the frame has passed, so they apply at once, as a timed bundle
//! whose time has passed does.
//!
//! The queue lives as long as the daemon, in an `Arc` every incarnation of the output can
//! reach (a JACK server that restarts gets a new client, playing into the same queue), like
//! the [`ProcessorSlot`](super::ProcessorSlot). A full queue drops the message and counts it.
//!
//! Threading: [`MidiInput::push_period`] runs on the audio callback's thread: no allocation
//! (checked by `assert_no_alloc` in debug builds, as the rest of the period), no lock (a
//! try-lock that never waits: when a dying output's callback overlaps the next one's, the
//! second drops its messages and counts them), no syscall. [`MidiInReader`] is owned by one
//! control thread.

use std::cell::UnsafeCell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::realtime::rt_guard;

/// The JACK output's MIDI input port, registered when MIDI input is on; the PipeWire
/// output's MIDI input node is named `<node name>-midi-in` ([`pipewire_midi_node_name`]).
pub const MIDI_PORT_NAME: &str = "midi_in";

/// `node.name` of the PipeWire output's MIDI input stream, for an output named `node`.
pub fn pipewire_midi_node_name(node: &str) -> String {
    format!("{node}-midi-in")
}

/// Messages the queue holds: far more than a controller sends between two drains.
pub const MIDI_QUEUE_CAPACITY: usize = 1024;

/// One channel message as it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawMidi {
    /// Its frame on the ring's clock.
    pub frame: u64,
    /// The status byte (`0xBn`: Control Change, `0xCn`: Program Change).
    pub status: u8,
    /// The first data byte.
    pub data1: u8,
    /// The second data byte (0 for a Program Change).
    pub data2: u8,
}

/// The callback's end of the queue (see the module doc).
pub struct MidiInput {
    /// True while one callback holds the producer.
    busy: AtomicBool,
    /// Only reached while `busy` is held.
    producer: UnsafeCell<rtrb::Producer<RawMidi>>,
    /// Messages queued.
    received: AtomicU64,
    /// Messages dropped: the queue was full, or another callback held it.
    dropped: AtomicU64,
    /// Malformed input the callback skipped (PipeWire: a bad or truncated event buffer).
    malformed: AtomicU64,
}

// SAFETY: the producer is `Send` and only reached by the one thread that set `busy` from
// false to true, until it sets it back; the rest is atomics.
unsafe impl Sync for MidiInput {}

/// Releases the producer when the period's work ends.
struct Release<'a>(&'a AtomicBool);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl MidiInput {
    /// A queue of `capacity` messages: the callback's end and the control side's.
    pub fn queue(capacity: usize) -> (MidiInHandle, MidiInReader) {
        let (producer, consumer) = rtrb::RingBuffer::new(capacity);
        let input = Arc::new(MidiInput {
            busy: AtomicBool::new(false),
            producer: UnsafeCell::new(producer),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
        });
        (
            MidiInHandle(Arc::clone(&input)),
            MidiInReader { consumer, input },
        )
    }

    /// Queue one period's messages: `events` yields each one's offset in the period and its
    /// bytes; anything but a Control Change or a Program Change is skipped. `period_frame`
    /// is the ring's clock at the period's start. Realtime-safe.
    #[inline]
    pub fn push_period<'a>(
        &self,
        period_frame: u64,
        events: impl Iterator<Item = (u32, &'a [u8])>,
    ) {
        rt_guard(|| {
            if self
                .busy
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                let n = events.filter(|(_, b)| wanted(b)).count();
                self.dropped.fetch_add(n as u64, Ordering::Relaxed);
                return;
            }
            let _release = Release(&self.busy);
            // SAFETY: `busy` is ours until `_release` drops.
            let producer = unsafe { &mut *self.producer.get() };
            for (offset, bytes) in events.filter(|(_, b)| wanted(b)) {
                let raw = RawMidi {
                    frame: period_frame + u64::from(offset),
                    status: bytes[0],
                    data1: bytes[1],
                    data2: bytes.get(2).copied().unwrap_or(0),
                };
                match producer.push(raw) {
                    Ok(()) => self.received.fetch_add(1, Ordering::Relaxed),
                    Err(_) => self.dropped.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }

    /// Messages queued so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Messages dropped so far (a full queue, or overlapping callbacks).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Count `n` malformed items the callback skipped. Realtime-safe (one atomic add).
    #[inline]
    pub fn note_malformed(&self, n: u32) {
        if n > 0 {
            self.malformed.fetch_add(u64::from(n), Ordering::Relaxed);
        }
    }

    /// Malformed items skipped so far.
    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }
}

/// A Control Change (3 bytes) or a Program Change (2 bytes)?
#[inline]
fn wanted(bytes: &[u8]) -> bool {
    match bytes.first().map(|s| s & 0xF0) {
        Some(0xB0) => bytes.len() >= 3,
        Some(0xC0) => bytes.len() >= 2,
        _ => false,
    }
}

/// The shared callback end, as output options carry it: equal when it is the same queue.
#[derive(Clone)]
pub struct MidiInHandle(pub Arc<MidiInput>);

impl PartialEq for MidiInHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for MidiInHandle {}

impl fmt::Debug for MidiInHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MidiInHandle(received {}, dropped {})",
            self.0.received(),
            self.0.dropped()
        )
    }
}

/// The control side's end: drains the queue in arrival (frame) order.
pub struct MidiInReader {
    consumer: rtrb::Consumer<RawMidi>,
    input: Arc<MidiInput>,
}

impl MidiInReader {
    /// The next message, if one is queued.
    pub fn pop(&mut self) -> Option<RawMidi> {
        self.consumer.pop().ok()
    }

    /// The callback's end, for its counters.
    pub fn input(&self) -> &Arc<MidiInput> {
        &self.input
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_program_changes_are_queued_without_allocating() {
        let (handle, mut reader) = MidiInput::queue(4);
        let events: [(u32, &[u8]); 4] = [
            (3, &[0xB1, 7, 100]),
            (5, &[0x90, 60, 100]), // a note: skipped
            (9, &[0xC0, 2]),
            (9, &[0xF8]), // clock: skipped
        ];
        assert_no_alloc::assert_no_alloc(|| handle.0.push_period(1000, events.into_iter()));
        assert_eq!(
            reader.pop(),
            Some(RawMidi {
                frame: 1003,
                status: 0xB1,
                data1: 7,
                data2: 100
            })
        );
        assert_eq!(
            reader.pop().map(|r| (r.frame, r.status)),
            Some((1009, 0xC0))
        );
        assert_eq!(reader.pop(), None);
        // Overflow: counted, never blocking.
        let many = (0..6).map(|i| (i, &[0xB0u8, 1, 2][..]));
        assert_no_alloc::assert_no_alloc(|| handle.0.push_period(0, many));
        assert_eq!((handle.0.received(), handle.0.dropped()), (6, 2));
    }
}
