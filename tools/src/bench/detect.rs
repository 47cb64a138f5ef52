//! Finding the first output frame that carries a knob change, in a stream of captured
//! stereo frames labelled with their JACK frame time.
//!
//! The bench alternates two edges of all channel gains (`/knob/ch_g*`):
//!
//! - [`Edge::ToSilence`] (gains 1 → 0): the decoder then emits exact digital silence. The
//!   ring still holds older audio ahead of the playhead, so "changed" means "the new audio
//!   has started": the change is heard at the **first frame of the first run of at least
//!   `min_run` exactly-zero frames (both channels) that starts at or after the send**. The
//!   ring crossfades a new window against what is there, so the silent run begins after the
//!   window's leading fade (at most `CROSSFADE_FRAMES_48K` = 1200 frames at 48 kHz, less for
//!   short windows): this edge measures "fully changed" and is an upper bound of "first
//!   changed sample" by at most that fade.
//! - [`Edge::ToSound`] (gains 0 → 1): the output was exact silence, so the change is heard
//!   at the **first frame at or after the send with a non-zero sample** (the fade-in's first
//!   frame): exact to the frame.
//!
//! A measurement is *clean* when the output stayed in the state the previous edge produced
//! from that edge's detection until this edge's send (no sound while silenced, no
//! `min_run` silence while sounding); otherwise something other than the bench changed the
//! output, and the figure is suspect. The first edge after [`Detector::new`] is clean when
//! the output is sounding for `min_run` frames before its send.
//!
//! Threading: plain data, owned by the bench's main thread.

/// Which way the gains go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Edge {
    /// All channel gains to 0: exact silence follows.
    ToSilence,
    /// All channel gains back to 1: sound follows.
    ToSound,
}

impl Edge {
    /// The gain value the edge sends.
    pub fn gain(self) -> f32 {
        match self {
            Edge::ToSilence => 0.0,
            Edge::ToSound => 1.0,
        }
    }

    /// The other edge.
    pub fn next(self) -> Edge {
        match self {
            Edge::ToSilence => Edge::ToSound,
            Edge::ToSound => Edge::ToSilence,
        }
    }
}

/// A detected change: the frame at which it was heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heard {
    /// JACK frame time of the first changed frame.
    pub frame: u64,
    /// Whether the output held the previous state until the send (see the module doc).
    pub clean: bool,
}

/// The change being waited for.
#[derive(Debug, Clone, Copy)]
struct Armed {
    edge: Edge,
    sent: u64,
    clean: bool,
}

/// The state machine over captured frames.
#[derive(Debug)]
pub struct Detector {
    min_run: u64,
    /// First frame of the current exactly-silent run, if the newest frame is silent.
    silent_since: Option<u64>,
    /// Newest frame fed.
    newest: Option<u64>,
    /// The state the output should be in (set by the last detection; `ToSound` at start).
    expected: Edge,
    /// Whether the output left `expected` since the last detection.
    broken: bool,
    /// Sounding frames seen since the last detection (for the very first edge).
    sounding_seen: u64,
    /// First frame since the last detection at which the output left `expected`.
    broke_at: Option<u64>,
    armed: Option<Armed>,
}

impl Detector {
    /// A detector needing `min_run` exactly-silent frames to call a run silence.
    pub fn new(min_run: u64) -> Detector {
        Detector {
            min_run: min_run.max(1),
            silent_since: None,
            newest: None,
            expected: Edge::ToSound,
            broken: false,
            sounding_seen: 0,
            broke_at: None,
            armed: None,
        }
    }

    /// The first frame, since the last detection, at which the output left the state that
    /// detection saw (sound came back after silence, or silence after sound); cleared.
    pub fn take_reversion(&mut self) -> Option<u64> {
        self.broke_at.take()
    }

    /// Whether the output has been sounding (no silent run of `min_run` frames) for the last
    /// `frames` frames or more: the bench waits for this before its first edge.
    pub fn sounding_for(&self, frames: u64) -> bool {
        self.expected == Edge::ToSound && self.sounding_seen >= frames
    }

    /// Take the output's present state (sounding) as the baseline for the first edge,
    /// forgetting silences seen while the daemon was starting.
    pub fn accept_sounding(&mut self) {
        self.expected = Edge::ToSound;
        self.broken = false;
    }

    /// Start waiting for `edge`, sent at frame `sent`.
    pub fn arm(&mut self, edge: Edge, sent: u64) {
        let settled = self.expected != edge && !self.broken;
        let sounding = self.expected == Edge::ToSilence || self.sounding_seen >= self.min_run;
        self.armed = Some(Armed {
            edge,
            sent,
            clean: settled && sounding,
        });
    }

    /// Stop waiting (after a timeout); the output state is then unknown.
    pub fn disarm(&mut self) {
        self.armed = None;
        self.broken = true;
    }

    /// Feed one frame; `Some` when it completes the armed change. Frames must come in order
    /// (a gap is allowed: a silent run does not span it).
    pub fn feed(&mut self, frame: u64, left: f32, right: f32) -> Option<Heard> {
        let contiguous = self.newest.is_some_and(|n| frame == n + 1);
        self.newest = Some(frame);
        let silent = left == 0.0 && right == 0.0;
        if silent {
            if !contiguous || self.silent_since.is_none() {
                self.silent_since = Some(frame);
            }
        } else {
            self.silent_since = None;
        }
        let run_start = self.silent_since.filter(|&s| frame + 1 - s >= self.min_run);
        match self.armed {
            Some(armed) if frame >= armed.sent => {
                let heard = match armed.edge {
                    Edge::ToSound => (!silent).then_some(frame),
                    Edge::ToSilence => run_start.filter(|&s| s >= armed.sent),
                };
                if let Some(heard) = heard {
                    self.armed = None;
                    self.expected = armed.edge;
                    self.broken = false;
                    self.sounding_seen = 0;
                    self.broke_at = None;
                    return Some(Heard {
                        frame: heard,
                        clean: armed.clean,
                    });
                }
                None
            }
            _ => {
                // Before the send (or nothing armed): does the output keep its state?
                let breaks = match self.expected {
                    Edge::ToSilence => !silent,
                    Edge::ToSound => run_start.is_some(),
                };
                if breaks {
                    if !self.broken {
                        // For a silent run, the run's first frame is where it left.
                        self.broke_at = Some(run_start.unwrap_or(frame));
                    }
                    self.broken = true;
                    self.sounding_seen = 0;
                    if let Some(armed) = &mut self.armed {
                        armed.clean = false;
                    }
                } else if self.expected == Edge::ToSound {
                    self.sounding_seen += 1;
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `n` frames from `start`, sounding or silent; the detections.
    fn feed(d: &mut Detector, start: u64, n: u64, sound: bool) -> Vec<Heard> {
        let v = if sound { 0.25 } else { 0.0 };
        (start..start + n)
            .filter_map(|f| d.feed(f, v, -v))
            .collect()
    }

    #[test]
    fn silence_is_heard_at_the_start_of_the_first_long_run_after_the_send() {
        let mut d = Detector::new(64);
        assert!(feed(&mut d, 0, 1000, true).is_empty());
        assert!(d.sounding_for(1000));
        assert!(!d.sounding_for(1001));
        d.arm(Edge::ToSilence, 1000);
        // Older audio still plays, then a short silent run (too short), then the fade.
        assert!(feed(&mut d, 1000, 500, true).is_empty());
        assert!(feed(&mut d, 1500, 20, false).is_empty());
        assert!(feed(&mut d, 1520, 100, true).is_empty());
        let heard = feed(&mut d, 1620, 200, false);
        assert_eq!(
            heard,
            [Heard {
                frame: 1620,
                clean: true
            }]
        );
    }

    #[test]
    fn a_silent_run_begun_before_the_send_does_not_count() {
        let mut d = Detector::new(8);
        feed(&mut d, 0, 100, true);
        feed(&mut d, 100, 4, false);
        d.arm(Edge::ToSilence, 104);
        assert!(feed(&mut d, 104, 100, false).is_empty());
        assert_eq!(feed(&mut d, 204, 1, true), []);
        assert_eq!(feed(&mut d, 205, 8, false)[0].frame, 205);
    }

    #[test]
    fn sound_is_heard_at_the_first_non_zero_frame_after_the_send() {
        let mut d = Detector::new(16);
        feed(&mut d, 0, 100, true);
        d.arm(Edge::ToSilence, 100);
        assert_eq!(feed(&mut d, 100, 50, false)[0].frame, 100);
        feed(&mut d, 150, 50, false);
        d.arm(Edge::ToSound, 200);
        assert!(feed(&mut d, 200, 30, false).is_empty());
        let heard = feed(&mut d, 230, 5, true);
        assert_eq!(
            heard,
            [Heard {
                frame: 230,
                clean: true
            }]
        );
        // A single sounding frame right after the detection is in the new state.
        assert!(d.feed(235, 0.1, 0.0).is_none());
    }

    #[test]
    fn a_state_broken_before_the_send_makes_the_measurement_unclean() {
        let mut d = Detector::new(16);
        feed(&mut d, 0, 100, true);
        d.arm(Edge::ToSilence, 100);
        feed(&mut d, 100, 50, false);
        // Sound while the gains are 0: something else is playing.
        feed(&mut d, 150, 1, true);
        feed(&mut d, 151, 49, false);
        assert_eq!(d.take_reversion(), Some(150));
        assert_eq!(d.take_reversion(), None);
        d.arm(Edge::ToSound, 200);
        assert!(!feed(&mut d, 200, 1, true)[0].clean);
    }

    #[test]
    fn start_up_silence_is_forgotten_once_the_output_sounds() {
        let mut d = Detector::new(8);
        feed(&mut d, 0, 100, false);
        feed(&mut d, 100, 50, true);
        assert!(d.sounding_for(50));
        d.accept_sounding();
        d.arm(Edge::ToSilence, 150);
        assert!(feed(&mut d, 150, 8, false)[0].clean);
    }

    #[test]
    fn a_gap_in_the_capture_splits_a_silent_run() {
        let mut d = Detector::new(10);
        feed(&mut d, 0, 100, true);
        d.arm(Edge::ToSilence, 100);
        assert!(feed(&mut d, 100, 6, false).is_empty());
        assert_eq!(feed(&mut d, 200, 10, false)[0].frame, 200);
    }

    #[test]
    fn a_timeout_leaves_the_next_measurement_unclean() {
        let mut d = Detector::new(4);
        feed(&mut d, 0, 10, true);
        d.arm(Edge::ToSilence, 10);
        feed(&mut d, 10, 10, true);
        d.disarm();
        d.arm(Edge::ToSound, 20);
        feed(&mut d, 20, 10, false);
        assert!(!feed(&mut d, 30, 1, true)[0].clean);
    }
}
