//! TCP stream framing: OSC 1.0 size prefix (int32 big-endian length, then the packet) and
//! OSC 1.1 SLIP (packets between END bytes 0xC0, with 0xDB escapes). In `Auto` mode the first
//! byte of a connection decides: 0xC0 is SLIP, 0x00 is a size prefix (any packet within the
//! 64 KiB limit starts its prefix with 0x00); anything else is refused. Replies use the same
//! framing as the connection.
//!
//! Threading: a `FrameReader` belongs to one connection thread.

const END: u8 = 0xC0;
const ESC: u8 = 0xDB;
const ESC_END: u8 = 0xDC;
const ESC_ESC: u8 = 0xDD;

/// A framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// OSC 1.0: int32 big-endian size, then the packet.
    SizePrefix,
    /// OSC 1.1: SLIP (RFC 1055) with END before and after each packet.
    Slip,
}

/// How a TCP connection's framing is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingMode {
    /// Detect from the first byte (0xC0: SLIP, 0x00: size prefix).
    Auto,
    /// Always this framing.
    Fixed(Framing),
}

/// A framing error. `fatal` ones close the connection (the stream cannot be resynchronised).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    /// What went wrong, for `/fail #packet <reason>`.
    pub reason: String,
    /// True when the connection must close.
    pub fatal: bool,
}

/// Splits a byte stream into packets.
#[derive(Debug)]
pub struct FrameReader {
    mode: FramingMode,
    framing: Option<Framing>,
    buf: Vec<u8>,
    max_packet: usize,
    /// SLIP: an oversized frame is being skipped up to its END.
    skipping: bool,
}

impl FrameReader {
    /// A reader for one connection; frames above `max_packet` bytes are refused.
    pub fn new(mode: FramingMode, max_packet: usize) -> FrameReader {
        let framing = match mode {
            FramingMode::Auto => None,
            FramingMode::Fixed(f) => Some(f),
        };
        FrameReader {
            mode,
            framing,
            buf: Vec::new(),
            max_packet,
            skipping: false,
        }
    }

    /// The framing in use (None until the first byte arrived in auto mode).
    pub fn framing(&self) -> Option<Framing> {
        self.framing
    }

    /// True while a packet is in progress: bytes of it received, its end not yet (or an
    /// oversized SLIP frame being skipped up to its end).
    pub fn in_packet(&self) -> bool {
        !self.buf.is_empty() || self.skipping
    }

    /// Feed received bytes; returns complete packets and errors in stream order.
    pub fn push(&mut self, data: &[u8]) -> Vec<Result<Vec<u8>, FrameError>> {
        self.buf.extend_from_slice(data);
        if self.framing.is_none() && self.mode == FramingMode::Auto {
            match self.buf.first() {
                None => return Vec::new(),
                Some(&END) => self.framing = Some(Framing::Slip),
                Some(0) => self.framing = Some(Framing::SizePrefix),
                Some(&b) => {
                    return vec![Err(FrameError {
                        reason: format!(
                            "cannot tell the TCP framing: first byte is 0x{b:02x}; send SLIP \
                             (0xC0 first) or a 4-byte big-endian size prefix"
                        ),
                        fatal: true,
                    })];
                }
            }
        }
        match self.framing {
            Some(Framing::SizePrefix) => self.size_prefixed(),
            Some(Framing::Slip) => self.slip(),
            None => Vec::new(),
        }
    }

    fn size_prefixed(&mut self) -> Vec<Result<Vec<u8>, FrameError>> {
        let mut out = Vec::new();
        while self.buf.len() >= 4 {
            let size =
                u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
            if size > self.max_packet {
                out.push(Err(FrameError {
                    reason: format!(
                        "packet of {size} bytes exceeds the limit of {} bytes",
                        self.max_packet
                    ),
                    fatal: true,
                }));
                self.buf.clear();
                break;
            }
            if self.buf.len() < 4 + size {
                break;
            }
            out.push(Ok(self.buf[4..4 + size].to_vec()));
            self.buf.drain(..4 + size);
        }
        out
    }

    fn slip(&mut self) -> Vec<Result<Vec<u8>, FrameError>> {
        let mut out = Vec::new();
        while let Some(end) = self.buf.iter().position(|&b| b == END) {
            let raw: Vec<u8> = self.buf.drain(..=end).take(end).collect();
            if std::mem::take(&mut self.skipping) || raw.is_empty() {
                continue;
            }
            out.push(self.unslip(&raw));
        }
        // An escaped packet is at most twice its size: beyond that no END will make it valid.
        if !self.skipping && self.buf.len() > 2 * self.max_packet {
            out.push(Err(self.oversized(self.buf.len())));
            self.skipping = true;
        }
        if self.skipping {
            self.buf.clear();
        }
        out
    }

    fn unslip(&self, raw: &[u8]) -> Result<Vec<u8>, FrameError> {
        let mut packet = Vec::with_capacity(raw.len());
        let mut bytes = raw.iter();
        while let Some(&b) = bytes.next() {
            packet.push(match b {
                ESC => match bytes.next() {
                    Some(&ESC_END) => END,
                    Some(&ESC_ESC) => ESC,
                    other => {
                        return Err(FrameError {
                            reason: format!(
                                "bad SLIP escape: 0xDB followed by {}",
                                other.map_or("the end of the frame".to_string(), |b| format!(
                                    "0x{b:02x}"
                                ))
                            ),
                            fatal: false,
                        });
                    }
                },
                b => b,
            });
        }
        if packet.len() > self.max_packet {
            return Err(self.oversized(packet.len()));
        }
        Ok(packet)
    }

    fn oversized(&self, len: usize) -> FrameError {
        FrameError {
            reason: format!(
                "packet of {len} bytes exceeds the limit of {} bytes",
                self.max_packet
            ),
            fatal: false,
        }
    }
}

/// Frame one packet for sending.
pub fn encode_frame(framing: Framing, packet: &[u8]) -> Vec<u8> {
    match framing {
        Framing::SizePrefix => {
            let mut out = Vec::with_capacity(packet.len() + 4);
            out.extend_from_slice(&(packet.len() as u32).to_be_bytes());
            out.extend_from_slice(packet);
            out
        }
        Framing::Slip => {
            let mut out = Vec::with_capacity(packet.len() + 8);
            out.push(END);
            for &b in packet {
                match b {
                    END => out.extend_from_slice(&[ESC, ESC_END]),
                    ESC => out.extend_from_slice(&[ESC, ESC_ESC]),
                    b => out.push(b),
                }
            }
            out.push(END);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slip_round_trips_escapes_split_across_reads() {
        let packet = vec![1, END, 2, ESC, 3];
        let framed = encode_frame(Framing::Slip, &packet);
        let mut reader = FrameReader::new(FramingMode::Auto, 64);
        let mut got = Vec::new();
        for b in framed.iter().chain(framed.iter()) {
            got.extend(reader.push(&[*b]));
        }
        assert_eq!(reader.framing(), Some(Framing::Slip));
        assert_eq!(got, vec![Ok(packet.clone()), Ok(packet)]);
    }

    #[test]
    fn size_prefix_waits_for_whole_packets_and_refuses_oversize() {
        let mut reader = FrameReader::new(FramingMode::Auto, 8);
        let framed = encode_frame(Framing::SizePrefix, &[9; 8]);
        assert!(reader.push(&framed[..6]).is_empty());
        assert_eq!(reader.push(&framed[6..]), vec![Ok(vec![9; 8])]);
        let errors = reader.push(&encode_frame(Framing::SizePrefix, &[9; 12]));
        assert_eq!(errors.len(), 1);
        let e = errors[0].clone().unwrap_err();
        assert!(e.fatal && e.reason.contains("12 bytes exceeds the limit of 8"));
    }

    #[test]
    fn slip_oversize_and_bad_escape_are_not_fatal() {
        let mut reader = FrameReader::new(FramingMode::Fixed(Framing::Slip), 4);
        let mut got = reader.push(&encode_frame(Framing::Slip, &[1; 6]));
        got.extend(reader.push(&[END, 1, ESC, 7, END]));
        got.extend(reader.push(&encode_frame(Framing::Slip, &[5; 4])));
        assert!(
            got[0]
                .as_ref()
                .unwrap_err()
                .reason
                .contains("6 bytes exceeds the limit of 4")
        );
        assert!(
            got[1]
                .as_ref()
                .unwrap_err()
                .reason
                .contains("bad SLIP escape: 0xDB followed by 0x07")
        );
        assert_eq!(got[2], Ok(vec![5; 4]));
        assert!(
            got.iter()
                .all(|r| r.as_ref().map_or_else(|e| !e.fatal, |_| true))
        );
    }

    #[test]
    fn unknown_first_byte_is_fatal() {
        let mut reader = FrameReader::new(FramingMode::Auto, 64);
        let got = reader.push(b"/knob");
        assert!(got[0].as_ref().unwrap_err().fatal);
        assert!(
            got[0]
                .as_ref()
                .unwrap_err()
                .reason
                .contains("first byte is 0x2f")
        );
    }
}
