//! The performer's session as it is saved: every change the control side applies is
//! recorded here and handed (debounced) to the state file's saver.
//!
//! Threading: control threads and the encoder thread; a short mutex hold per change, no
//! I/O (the [`DebouncedSaver`] thread writes).

use latentd_engine::lock::MutexExt;
use std::path::PathBuf;
use std::sync::Mutex;

use latentd_engine::knobs::{KNOBS, KnobId, KnobSnapshot};

use crate::state::{DebouncedSaver, LoopBandSeconds, PersistentState};

/// The saved session (see the module doc).
pub struct Session {
    state: Mutex<PersistentState>,
    saver: Option<DebouncedSaver>,
}

impl Session {
    /// A session starting from `state`, saved through `saver` (`None`: not saved, for tests).
    pub fn new(state: PersistentState, saver: Option<DebouncedSaver>) -> Self {
        Self {
            state: Mutex::new(state),
            saver,
        }
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> PersistentState {
        self.state.lock_unpoisoned().clone()
    }

    fn change(&self, edit: impl FnOnce(&mut PersistentState)) {
        let copy = {
            let mut state = self.state.lock_unpoisoned();
            edit(&mut state);
            state.clone()
        };
        if let Some(saver) = &self.saver
            && let Err(e) = saver.request_save(copy)
        {
            log::warn!("state: {e}");
        }
    }

    /// Knob values changed (all knobs are recorded, so the file is complete).
    pub fn knobs_changed(&self, now: &KnobSnapshot) {
        self.change(|s| {
            for spec in KNOBS.iter() {
                if let Some(id) = KnobId::from_name(spec.name) {
                    s.knobs.insert(spec.name.to_string(), now.get(id));
                }
            }
            if let Some(id) = KnobId::from_name("prompt_blend") {
                s.prompt_blend = now.get(id);
            }
        });
    }

    /// A prompt was committed.
    pub fn prompt_changed(&self, tags: &str, tags_b: Option<&str>) {
        self.change(|s| {
            s.prompt = Some(tags.to_string());
            s.prompt_b = tags_b.map(str::to_string);
        });
    }

    /// The timbre reference changed (`None`: cleared).
    pub fn timbre_changed(&self, path: Option<PathBuf>) {
        self.change(|s| s.timbre = path);
    }

    /// The structure reference changed (`None`: cleared).
    pub fn structure_changed(&self, path: Option<PathBuf>) {
        self.change(|s| s.structure = path);
    }

    /// The loop band changed (`None`: cleared), in seconds.
    pub fn loop_changed(&self, band: Option<(f64, f64)>) {
        self.change(|s| s.loop_band = band.map(|(start, end)| LoopBandSeconds { start, end }));
    }

    /// The MIDI maps changed (all of them, in channel and controller order).
    pub fn midi_maps_changed(&self, maps: Vec<crate::midi::MidiMapEntry>) {
        self.change(|s| s.midi_maps = Some(maps));
    }

    /// The source changed.
    pub fn source_changed(&self, path: Option<PathBuf>) {
        self.change(|s| s.source = path);
    }

    /// Save the session as it is now and wait for the write (a session manager's save):
    /// the state file's saver writes it atomically. The error says why it was not saved.
    pub fn save_now(&self) -> Result<(), String> {
        let Some(saver) = &self.saver else {
            return Err("this session is not saved to a file".into());
        };
        saver
            .request_save(self.snapshot())
            .and_then(|()| saver.flush())
            .map_err(|e| e.to_string())
    }

    /// Write what is pending now (at exit); errors are logged.
    pub fn flush(&self) {
        if let Some(saver) = &self.saver
            && let Err(e) = saver.flush()
        {
            log::error!("state: saving at exit failed: {e}");
        }
    }
}
