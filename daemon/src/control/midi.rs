//! MIDI input on the control side: the `/midi/*` commands, and the `midi-in` thread that
//! drains the audio callback's MIDI queue ([`crate::audio::midi_in`]) and applies each
//! message through the maps ([`crate::midi`]).
//!
//! Every effect goes the way its OSC command goes: a knob through
//! `Dispatcher::set_knobs` (one publish, noted for the engine, echoed to the `/notify`
//! subscribers, saved with the session), a transport action or a preset recall through
//! [`Dispatcher::apply`] as `/transport/*` or `/preset/recall` (their replies, a `/fail`
//! included, go to the log as `midi`). Map changes are saved with the session.
//!
//! Threading: the `/midi/*` commands run on the control threads, the messages on the
//! `midi-in` thread; both take [`MidiControl`]'s mutex for the maps (never while applying).
//! The audio callback never sees any of this.

use latentd_engine::lock::MutexExt;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latentd_engine::knobs::KnobId;
use latentd_osc_schema::Command;
use latentd_osc_schema::midi::{MAX_MIDI_MAPS, MidiAction, MidiMap};
use latentd_osc_schema::presets::FadeCurve;
use latentd_osc_schema::rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType};

use super::{Dispatcher, fail};
use crate::audio::midi_in::{MidiInReader, MidiInput, RawMidi};
use crate::midi::{Effect, MapError, MidiMapEntry, MidiMaps, MidiMessage};
use crate::osc::ReplyTo;
use crate::stoppable::StoppableThread;

/// How often the `midi-in` thread looks at the queue (a controller's latency budget).
pub const DRAIN_EVERY: Duration = Duration::from_millis(2);

/// Where the replies of MIDI's own commands go (the log).
const ORIGIN: &str = "midi";

/// The maps, the learn waiting and what MIDI recalled last.
pub struct MidiControl {
    /// The callback's end of the queue, for its counters; `None`: MIDI input is off.
    input: Option<Arc<MidiInput>>,
    state: Mutex<MidiState>,
}

struct MidiState {
    maps: MidiMaps,
    /// Who asked for the learn waiting, if one is.
    learner: Option<ReplyTo>,
    /// The preset `preset/next` recalled last.
    last_preset: Option<String>,
}

impl MidiControl {
    /// MIDI input fed through `input` (`None`: off), with `maps` in place.
    pub fn new(input: Option<Arc<MidiInput>>, maps: Vec<MidiMap>) -> MidiControl {
        let mut table = MidiMaps::default();
        for map in maps {
            if let Err(e) = table.insert(map) {
                log::warn!(
                    "MIDI map channel {} CC {} not restored: {e}",
                    map.channel,
                    map.cc
                );
            }
        }
        MidiControl {
            input,
            state: Mutex::new(MidiState {
                maps: table,
                learner: None,
                last_preset: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MidiState> {
        self.state.lock_unpoisoned()
    }
}

/// `/midi/learned i channel, i cc, s target`.
fn learned(map: &MidiMap) -> OscPacket {
    OscPacket::Message(OscMessage {
        addr: "/midi/learned".into(),
        args: vec![
            OscType::Int(i32::from(map.channel)),
            OscType::Int(i32::from(map.cc)),
            OscType::String(map.binding.target.name().into()),
        ],
    })
}

/// `/midi/map i channel, i cc, s target, f min, f max, s curve, s mode`.
fn map_message(map: &MidiMap) -> OscPacket {
    let b = &map.binding;
    OscPacket::Message(OscMessage {
        addr: "/midi/map".into(),
        args: vec![
            OscType::Int(i32::from(map.channel)),
            OscType::Int(i32::from(map.cc)),
            OscType::String(b.target.name().into()),
            OscType::Float(b.min as f32),
            OscType::Float(b.max as f32),
            OscType::String(b.curve.name().into()),
            OscType::String(b.mode.name().into()),
        ],
    })
}

impl Dispatcher {
    /// Use `midi` for the `/midi/*` commands and the MIDI messages (without it: MIDI input
    /// off, no maps).
    pub fn with_midi(mut self, midi: MidiControl) -> Self {
        self.midi = midi;
        self
    }

    /// Why a `/midi/*` command is refused as things stand (nothing of its packet applies).
    pub(super) fn midi_refusal(&self, command: &Command) -> Option<String> {
        match *command {
            Command::MidiLearn(_) if self.midi.input.is_none() => Some(
                "MIDI input is off: start latentd with --midi or [midi] enabled = true (JACK \
                 output)"
                    .into(),
            ),
            Command::MidiMap(map) => {
                // Decode checked the map; only a full table can refuse it.
                let maps = self.midi.lock().maps.list();
                let new = !maps
                    .iter()
                    .any(|m| (m.channel, m.cc) == (map.channel, map.cc));
                (new && maps.len() >= MAX_MIDI_MAPS).then(|| MapError::Full.to_string())
            }
            Command::MidiUnmap { channel, cc } => {
                let listed = self
                    .midi
                    .lock()
                    .maps
                    .list()
                    .iter()
                    .any(|m| (m.channel, m.cc) == (channel, cc));
                (!listed).then(|| MapError::Unmapped { channel, cc }.to_string())
            }
            _ => None,
        }
    }

    /// Apply a `/midi/*` command (checked by [`Self::midi_refusal`]).
    pub(super) fn midi_command(
        &self,
        reply_to: &ReplyTo,
        command: Command,
        replies: &mut Vec<OscPacket>,
    ) {
        let address = command.address();
        match command {
            Command::MidiLearn(binding) => {
                let mut state = self.midi.lock();
                state.maps.learn(binding);
                if let Some(old) = state.learner.replace(reply_to.clone()) {
                    let _ = old.send(&fail(
                        &address,
                        &format!("replaced by a newer /midi/learn {}", binding.target.name()),
                    ));
                }
                log::info!(
                    "MIDI learn: the next controller moved drives {}",
                    binding.target.name()
                );
            }
            Command::MidiMap(map) => {
                let saved = {
                    let mut state = self.midi.lock();
                    match state.maps.insert(map) {
                        Ok(()) => Some(state.maps.list()),
                        Err(e) => {
                            replies.push(fail(&address, &e.to_string()));
                            None
                        }
                    }
                };
                if let Some(maps) = saved {
                    self.save_midi_maps(&maps);
                }
            }
            Command::MidiUnmap { channel, cc } => {
                let saved = {
                    let mut state = self.midi.lock();
                    match state.maps.remove(channel, cc) {
                        Ok(_) => Some(state.maps.list()),
                        Err(e) => {
                            replies.push(fail(&address, &e.to_string()));
                            None
                        }
                    }
                };
                if let Some(maps) = saved {
                    self.save_midi_maps(&maps);
                }
            }
            Command::MidiMaps => {
                let maps = self.midi.lock().maps.list();
                replies.push(OscPacket::Bundle(OscBundle {
                    timetag: OscTime {
                        seconds: 0,
                        fractional: 1,
                    },
                    content: maps.iter().map(map_message).collect(),
                }));
            }
            other => replies.push(fail(&other.address(), "not a MIDI command")),
        }
    }

    /// MIDI messages the callback queued and dropped so far; `None` while MIDI input is off.
    pub fn midi_counters(&self) -> Option<MidiCounters> {
        let input = self.midi.input.as_ref()?;
        Some(MidiCounters {
            received: input.received(),
            dropped: input.dropped(),
            malformed: input.malformed(),
        })
    }

    fn save_midi_maps(&self, maps: &[MidiMap]) {
        self.session
            .midi_maps_changed(maps.iter().map(MidiMapEntry::from_map).collect());
    }

    /// Apply one message from the MIDI queue (the `midi-in` thread).
    pub fn midi_message(&self, raw: RawMidi) {
        let Some(message) = MidiMessage::parse(raw.status, raw.data1, raw.data2) else {
            return;
        };
        let knobs = self.schema.knobs();
        let now = self.knobs.current();
        let (effect, learner) = {
            let mut state = self.midi.lock();
            let effect = state.maps.handle(message, knobs, |i| {
                KnobId::from_name(knobs[i].name).map_or(knobs[i].default, |id| now.get(id))
            });
            let learner = match effect {
                Some(Effect::Learned(_)) => state.learner.take(),
                _ => None,
            };
            (effect, learner)
        };
        let mut replies = Vec::new();
        match effect {
            None => {}
            Some(Effect::SetKnob { index, value }) => {
                let name = knobs[index].name;
                if let Some(id) = KnobId::from_name(name) {
                    self.set_knobs(&[(id, name, value)], &mut replies);
                }
            }
            Some(Effect::Learned(map)) => {
                log::info!(
                    "MIDI learn: channel {} CC {} drives {}",
                    map.channel,
                    map.cc,
                    map.binding.target.name()
                );
                let packet = learned(&map);
                if let Some(learner) = learner {
                    let _ = learner.send(&packet);
                }
                self.subscribers.broadcast(&packet);
                let maps = self.midi.lock().maps.list();
                self.save_midi_maps(&maps);
            }
            Some(Effect::Action(action)) => self.midi_action(action, &mut replies),
            Some(Effect::Program(program)) => {
                let names = self.presets.names();
                match names.get(usize::from(program)) {
                    Some(name) => {
                        self.midi.lock().last_preset = Some(name.clone());
                        replies.extend(self.apply(&ReplyTo::log(ORIGIN), vec![recall(name)]));
                    }
                    None => log::info!(
                        "MIDI program change {program}: there are {} presets; ignored",
                        names.len()
                    ),
                }
            }
        }
        for reply in &replies {
            log::warn!("MIDI: {}", crate::osc::describe_reply(reply));
        }
    }

    fn midi_action(&self, action: MidiAction, replies: &mut Vec<OscPacket>) {
        let log_to = ReplyTo::log(ORIGIN);
        match action {
            MidiAction::TransportPlay => replies.extend(self.apply(&log_to, vec![Command::Play])),
            MidiAction::TransportPause => replies.extend(self.apply(&log_to, vec![Command::Pause])),
            MidiAction::TransportToggle => {
                let command = if self.ring.is_paused() {
                    Command::Play
                } else {
                    Command::Pause
                };
                replies.extend(self.apply(&log_to, vec![command]));
            }
            MidiAction::SeedNext => {
                let id = KnobId::seed;
                let spec = id.spec();
                let next = self.knobs.current().get(id) + 1.0;
                let value = if next > spec.max { spec.min } else { next };
                self.set_knobs(&[(id, spec.name, value)], replies);
            }
            MidiAction::PresetNext => {
                let names = self.presets.names();
                if names.is_empty() {
                    log::info!("MIDI preset/next: there are no presets");
                    return;
                }
                let mut state = self.midi.lock();
                let next = match &state.last_preset {
                    Some(last) => names
                        .iter()
                        .find(|n| *n > last)
                        .unwrap_or(&names[0])
                        .clone(),
                    None => names[0].clone(),
                };
                state.last_preset = Some(next.clone());
                drop(state);
                replies.extend(self.apply(&log_to, vec![recall(&next)]));
            }
        }
    }
}

/// What the MIDI input's callback counted since start (`/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MidiCounters {
    /// Control and Program Changes queued.
    pub received: u64,
    /// Messages dropped: the queue was full.
    pub dropped: u64,
    /// Malformed events or buffers skipped (PipeWire event sequences; JACK never has any).
    pub malformed: u64,
}

fn recall(name: &str) -> Command {
    Command::PresetRecall {
        name: name.to_string(),
        fade_s: 0.0,
        curve: FadeCurve::default(),
    }
}

/// Start the `midi-in` thread: every [`DRAIN_EVERY`] it applies what the queue holds,
/// through `dispatcher`, and logs messages the callback had to drop and malformed input
/// it skipped (at most once a second). Stop it before the dispatcher's last holders go.
pub fn spawn_drain(
    mut reader: MidiInReader,
    dispatcher: Arc<Dispatcher>,
) -> std::io::Result<StoppableThread<()>> {
    StoppableThread::spawn("midi-in", move |stop| {
        let mut dropped_seen = 0;
        let mut malformed_seen = 0;
        let mut logged_at: Option<Instant> = None;
        loop {
            while let Some(raw) = reader.pop() {
                dispatcher.midi_message(raw);
            }
            let dropped = reader.input().dropped();
            if dropped > dropped_seen && logged_at.is_none_or(|t| t.elapsed().as_secs() >= 1) {
                log::warn!(
                    "MIDI: {} message(s) dropped by the audio callback ({dropped} since start): \
                     its queue was full",
                    dropped - dropped_seen
                );
                dropped_seen = dropped;
                logged_at = Some(Instant::now());
            }
            let malformed = reader.input().malformed();
            if malformed > malformed_seen && logged_at.is_none_or(|t| t.elapsed().as_secs() >= 1) {
                log::warn!(
                    "MIDI: {} malformed event buffer item(s) skipped by the audio callback \
                     ({malformed} since start)",
                    malformed - malformed_seen
                );
                malformed_seen = malformed;
                logged_at = Some(Instant::now());
            }
            match stop.recv_timeout(DRAIN_EVERY) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        }
    })
}

impl Default for MidiControl {
    fn default() -> Self {
        MidiControl::new(None, Vec::new())
    }
}
