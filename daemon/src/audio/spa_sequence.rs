//! Reading the MIDI events out of a PipeWire control buffer: a `spa_pod_sequence`, parsed
//! by hand from its bytes so that the PipeWire MIDI input's realtime callback can walk it
//! with bounds checks, no allocation and no panic ([`midi_events`]).
//!
//! The layout (SPA's `spa/pod/pod.h`, all fields native-endian `u32`, every pod padded to
//! 8 bytes):
//!
//! ```text
//! pod header      size (of the body), type = SPA_TYPE_Sequence (16)
//! sequence body   unit, pad
//! control *       offset (frames into the cycle), type (SPA_CONTROL_Midi = 2 carries MIDI),
//!                 value pod: size, type (SPA_TYPE_Bytes = 9 for MIDI), size bytes of body,
//!                 then padding up to the next multiple of 8
//! ```
//!
//! A buffer that is not a sequence, or whose header claims more bytes than it holds, yields
//! nothing and counts as malformed. Inside a good sequence, a control that does not fit in
//! what is left ends the walk (the rest is counted malformed); a MIDI control whose value is
//! not a byte string is skipped and counted; other control types (properties, OSC, UMP)
//! are skipped silently.
//!
//! Threading: pure functions over borrowed bytes, callable from any thread, realtime-safe.

/// `SPA_TYPE_Bytes`: the pod type of a MIDI control's value.
pub const SPA_TYPE_BYTES: u32 = 9;
/// `SPA_TYPE_Sequence`: the pod type of a control buffer.
pub const SPA_TYPE_SEQUENCE: u32 = 16;
/// `SPA_CONTROL_Midi`: a control carrying one raw MIDI message.
pub const SPA_CONTROL_MIDI: u32 = 2;

/// Bytes of a pod header (size, type).
const POD_HEADER: usize = 8;
/// Bytes of a sequence body's own header (unit, pad).
const SEQUENCE_HEADER: usize = 8;
/// Bytes of a control before its value's body (offset, type, value header).
const CONTROL_HEADER: usize = 16;

/// The native-endian `u32` at `at`, if four bytes are there.
#[inline]
fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    let field: [u8; 4] = bytes.get(at..end)?.try_into().ok()?;
    Some(u32::from_ne_bytes(field))
}

/// The MIDI events of the sequence pod at the start of `buffer` (the chunk's valid bytes):
/// each as (offset in frames into the cycle, message bytes). See the module doc for what is
/// skipped; [`MidiEvents::malformed`] counts it once the walk is done. Never allocates.
pub fn midi_events(buffer: &[u8]) -> MidiEvents<'_> {
    let empty = MidiEvents {
        body: &[],
        at: 0,
        malformed: 1,
    };
    let (Some(size), Some(kind)) = (u32_at(buffer, 0), u32_at(buffer, 4)) else {
        return empty;
    };
    let Some(end) = (size as usize).checked_add(POD_HEADER) else {
        return empty;
    };
    if kind != SPA_TYPE_SEQUENCE || (size as usize) < SEQUENCE_HEADER || end > buffer.len() {
        return empty;
    }
    MidiEvents {
        body: &buffer[POD_HEADER..end],
        at: SEQUENCE_HEADER,
        malformed: 0,
    }
}

/// The walk over one sequence's MIDI controls ([`midi_events`]).
#[derive(Debug)]
pub struct MidiEvents<'a> {
    /// The sequence's body (its unit/pad header included), bounded by the pod's size.
    body: &'a [u8],
    /// Where the next control starts in `body`; `body.len()` once the walk is over.
    at: usize,
    /// Malformed items met so far (a bad buffer, a truncated control, a MIDI control whose
    /// value is not bytes).
    malformed: u32,
}

impl MidiEvents<'_> {
    /// Malformed items met so far; complete once the iterator has returned `None`.
    pub fn malformed(&self) -> u32 {
        self.malformed
    }
}

impl<'a> Iterator for MidiEvents<'a> {
    type Item = (u32, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        while self.at < self.body.len() {
            let at = self.at;
            let header = (
                u32_at(self.body, at),
                u32_at(self.body, at + 4),
                u32_at(self.body, at + 8),
                u32_at(self.body, at + 12),
            );
            let (Some(offset), Some(kind), Some(size), Some(value_type)) = header else {
                // Fewer bytes left than a control header: trailing junk.
                self.malformed += 1;
                self.at = self.body.len();
                return None;
            };
            let value_start = at + CONTROL_HEADER;
            let value = value_start
                .checked_add(size as usize)
                .and_then(|end| self.body.get(value_start..end).map(|v| (v, end)));
            let Some((value, value_end)) = value else {
                // The value runs past the sequence's end: nothing after it can be trusted.
                self.malformed += 1;
                self.at = self.body.len();
                return None;
            };
            // The next control starts at the next multiple of 8 (relative to the body,
            // which itself starts 8-aligned in the pod).
            self.at = value_end
                .checked_next_multiple_of(8)
                .unwrap_or(self.body.len())
                .min(self.body.len());
            if kind != SPA_CONTROL_MIDI {
                continue;
            }
            if value_type != SPA_TYPE_BYTES || value.is_empty() {
                self.malformed += 1;
                continue;
            }
            return Some((offset, value));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds sequences byte by byte, as SPA's pod builder lays them out.
    struct Builder {
        bytes: Vec<u8>,
    }

    impl Builder {
        fn sequence() -> Self {
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&0u32.to_ne_bytes()); // size, patched by finish()
            bytes.extend_from_slice(&SPA_TYPE_SEQUENCE.to_ne_bytes());
            bytes.extend_from_slice(&0u32.to_ne_bytes()); // unit
            bytes.extend_from_slice(&0u32.to_ne_bytes()); // pad
            Self { bytes }
        }

        fn control(mut self, offset: u32, kind: u32, value_type: u32, value: &[u8]) -> Self {
            for field in [offset, kind, value.len() as u32, value_type] {
                self.bytes.extend_from_slice(&field.to_ne_bytes());
            }
            self.bytes.extend_from_slice(value);
            while !self.bytes.len().is_multiple_of(8) {
                self.bytes.push(0);
            }
            self
        }

        fn midi(self, offset: u32, message: &[u8]) -> Self {
            self.control(offset, SPA_CONTROL_MIDI, SPA_TYPE_BYTES, message)
        }

        fn finish(mut self) -> Vec<u8> {
            let size = (self.bytes.len() - POD_HEADER) as u32;
            self.bytes[..4].copy_from_slice(&size.to_ne_bytes());
            self.bytes
        }
    }

    fn walk(buffer: &[u8]) -> (Vec<(u32, Vec<u8>)>, u32) {
        let mut events = midi_events(buffer);
        let mut out = Vec::new();
        for (offset, bytes) in events.by_ref() {
            out.push((offset, bytes.to_vec()));
        }
        (out, events.malformed())
    }

    fn valid() -> Vec<u8> {
        Builder::sequence()
            .midi(0, &[0xB0, 20, 127])
            .control(5, 1, 15, &[0; 24]) // a properties control: skipped, not malformed
            .midi(17, &[0xC3, 4])
            .midi(40, &[0x90, 60, 100])
            .finish()
    }

    #[test]
    fn a_sequence_yields_its_midi_events_in_order() {
        let (events, malformed) = walk(&valid());
        assert_eq!(
            events,
            [
                (0, vec![0xB0, 20, 127]),
                (17, vec![0xC3, 4]),
                (40, vec![0x90, 60, 100]),
            ]
        );
        assert_eq!(malformed, 0);
        assert_eq!(walk(&Builder::sequence().finish()), (vec![], 0));
    }

    #[test]
    fn walking_and_queueing_allocate_nothing() {
        let buffer = valid();
        let (handle, mut reader) = super::super::midi_in::MidiInput::queue(8);
        assert_no_alloc::assert_no_alloc(|| {
            let mut events = midi_events(&buffer);
            handle.0.push_period(1000, &mut events);
            assert_eq!(events.malformed(), 0);
        });
        // The note is not queued; CC and PC are, at the period's frame plus their offset.
        let popped: Vec<_> = std::iter::from_fn(|| reader.pop())
            .map(|m| (m.frame, m.status, m.data1, m.data2))
            .collect();
        assert_eq!(popped, [(1000, 0xB0, 20, 127), (1017, 0xC3, 4, 0)]);
    }

    #[test]
    fn truncated_buffers_yield_what_fits_and_count_the_rest() {
        let full = valid();
        // Every cut: never a panic, never an event that was not whole.
        for cut in 0..full.len() {
            let (events, malformed) = walk(&full[..cut]);
            assert!(events.is_empty(), "cut at {cut}: {events:?}");
            assert_eq!(malformed, 1, "cut at {cut}");
        }
        // The pod's size says less than the buffer holds: only what it covers is read.
        let mut short = full.clone();
        let covers = (CONTROL_HEADER + 8 + SEQUENCE_HEADER) as u32; // the first control
        short[..4].copy_from_slice(&covers.to_ne_bytes());
        assert_eq!(walk(&short), (vec![(0, vec![0xB0, 20, 127])], 0));
        // A control's size runs past the sequence: the walk stops there.
        let mut oversize = full.clone();
        let first_value_size = POD_HEADER + SEQUENCE_HEADER + 8;
        oversize[first_value_size..first_value_size + 4]
            .copy_from_slice(&0xFFFF_FFF0u32.to_ne_bytes());
        assert_eq!(walk(&oversize), (vec![], 1));
        // The pod's own size claims more than the buffer holds.
        let mut claims = full;
        claims[..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(walk(&claims), (vec![], 1));
    }

    #[test]
    fn odd_values_and_padding_are_skipped_safely() {
        // Not a sequence at all.
        let mut not_sequence = valid();
        not_sequence[4..8].copy_from_slice(&SPA_TYPE_BYTES.to_ne_bytes());
        assert_eq!(walk(&not_sequence), (vec![], 1));
        // A MIDI control whose value is an Int, and an empty one: skipped and counted.
        let odd = Builder::sequence()
            .control(1, SPA_CONTROL_MIDI, 4, &7u32.to_ne_bytes())
            .midi(2, &[])
            .midi(3, &[0xB1, 1, 2])
            .finish();
        assert_eq!(walk(&odd), (vec![(3, vec![0xB1, 1, 2])], 2));
        // A one-byte message leaves 7 bytes of padding; a 9-byte one 7 again (two words).
        let padded = Builder::sequence()
            .midi(0, &[0xF8])
            .midi(1, &[0xF0, 1, 2, 3, 4, 5, 6, 7, 0xF7])
            .midi(2, &[0xB2, 3, 4])
            .finish();
        let (events, malformed) = walk(&padded);
        assert_eq!(malformed, 0);
        assert_eq!(events.len(), 3);
        assert_eq!(events[2], (2, vec![0xB2, 3, 4]));
        // Trailing bytes after the last padded control, fewer than a control header.
        let mut trailing = Builder::sequence().midi(0, &[0xB0, 1, 1]);
        trailing.bytes.extend_from_slice(&[0; 8]);
        assert_eq!(walk(&trailing.finish()), (vec![(0, vec![0xB0, 1, 1])], 1));
        // The last control's padding missing (the pod ends right after its value).
        let mut unpadded = Builder::sequence()
            .midi(0, &[0xB0, 1, 1])
            .midi(9, &[0xC0, 5]);
        unpadded.bytes.truncate(unpadded.bytes.len() - 6);
        let (events, malformed) = walk(&unpadded.finish());
        assert_eq!(events, [(0, vec![0xB0, 1, 1]), (9, vec![0xC0, 5])]);
        assert_eq!(malformed, 0);
    }
}
