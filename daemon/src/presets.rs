//! Presets: named snapshots of the knobs and prompts, one JSON file each in the `presets`
//! folder beside the state file (`<state dir>/presets/<name>.json`; the format is in
//! docs/operations.md, Presets).
//!
//! The [`PresetLibrary`] reads every preset at start and keeps them in memory, so a recall
//! or a morph (an XY pad sends many a second) touches no file; a save writes the file
//! atomically ([`crate::atomic_file::write_atomically`], like the state file) and only then
//! replaces the copy in memory, and a delete removes the file, then the copy: a failed
//! write changes nothing. Names are checked by the OSC contract's
//! [`check_preset_name`], also for files found on disk (others are skipped with a warning,
//! as are files that do not parse or hold values OSC would refuse).
//!
//! Threading: [`PresetLibrary::get`] and [`PresetLibrary::names`] take a short mutex and
//! may be called from the control threads; [`PresetLibrary::save`] and
//! [`PresetLibrary::delete`] do blocking file I/O and run on the job worker (one at a time,
//! which the temp file's name relies on). Never from the audio thread.

use latentd_engine::lock::MutexExt;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use latentd_engine::conditioning::check_prompt;
use latentd_engine::input_file::{InputFileError, read_bounded};
use latentd_engine::knobs::KnobId;
use latentd_osc_schema::presets::{MAX_PRESETS, check_preset_name};
use serde::{Deserialize, Serialize};

use crate::atomic_file::{remove_stray_temps, write_atomically};

/// The preset file format version this build writes and reads.
pub const PRESET_VERSION: u32 = 1;

/// Largest preset file read, in bytes (a preset is about a kilobyte).
pub const MAX_PRESET_BYTES: u64 = 64 * 1024;

/// The folder presets live in, for a state file at `state_path`.
pub fn presets_dir(state_path: &Path) -> PathBuf {
    match state_path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("presets"),
        _ => PathBuf::from("presets"),
    }
}

/// One preset, as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    /// File format version; [`PRESET_VERSION`].
    pub version: u32,
    /// Knob values by knob name (every knob when saved by this build).
    pub knobs: BTreeMap<String, f64>,
    /// Prompt A (none: a recall leaves the prompts as they are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Prompt B, blended in by `prompt_blend`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_b: Option<String>,
}

impl Preset {
    /// Checks what serde cannot, the way OSC would: the version, every knob this build
    /// knows within its range, the prompts. A knob this build does not know is kept (a
    /// newer build may have saved it) and skipped on recall.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != PRESET_VERSION {
            return Err(format!(
                "version {} (this build reads {PRESET_VERSION})",
                self.version
            ));
        }
        for (name, &value) in &self.knobs {
            if KnobId::from_name(name).is_some() {
                crate::knobs::check_knob(name, value).map_err(|e| format!("knob {name}: {e}"))?;
            }
        }
        for (field, prompt) in [("prompt", &self.prompt), ("prompt_b", &self.prompt_b)] {
            if let Some(text) = prompt {
                check_prompt(field, text).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// The knobs this build knows, with their values.
    pub fn known_knobs(&self) -> impl Iterator<Item = (KnobId, f64)> + '_ {
        self.knobs
            .iter()
            .filter_map(|(name, &v)| KnobId::from_name(name).map(|id| (id, v)))
    }
}

/// The presets on disk and in memory (see the module doc).
#[derive(Debug)]
pub struct PresetLibrary {
    dir: PathBuf,
    presets: Mutex<BTreeMap<String, Arc<Preset>>>,
}

impl PresetLibrary {
    /// Reads every `<name>.json` in `dir` (a missing folder is an empty library; it is
    /// created by the first save). Never fails: a file that cannot be used is skipped with
    /// a warning naming it and why.
    pub fn open(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let mut presets = BTreeMap::new();
        match fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let Some(name) = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.strip_suffix(".json"))
                    else {
                        continue;
                    };
                    if name.starts_with('.') {
                        continue; // a temp file of an interrupted save, removed below
                    }
                    match load(name, &path) {
                        Ok(preset) if presets.len() < MAX_PRESETS => {
                            presets.insert(name.to_string(), Arc::new(preset));
                        }
                        Ok(_) => log::warn!(
                            "preset {}: skipped, {MAX_PRESETS} presets are already loaded",
                            path.display()
                        ),
                        Err(why) => log::warn!("preset {}: skipped: {why}", path.display()),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("presets folder {}: {e}; no presets", dir.display()),
        }
        for name in presets.keys() {
            remove_stray_temps(&preset_path(&dir, name));
        }
        log::info!("{} preset(s) in {}", presets.len(), dir.display());
        Self {
            dir,
            presets: Mutex::new(presets),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The preset of that name.
    pub fn get(&self, name: &str) -> Option<Arc<Preset>> {
        self.lock().get(name).cloned()
    }

    /// Every name, in order.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Writes `preset` as `name` (atomically; replacing one of that name), then keeps it.
    /// On an error nothing changed: the file is as it was, no temp file is left.
    pub fn save(&self, name: &str, preset: Preset) -> Result<(), String> {
        check_preset_name(name)?;
        preset.validate()?;
        {
            let presets = self.lock();
            if !presets.contains_key(name) && presets.len() >= MAX_PRESETS {
                return Err(format!(
                    "{MAX_PRESETS} presets are saved already (the limit); delete one first"
                ));
            }
        }
        let mut bytes = serde_json::to_vec_pretty(&preset).expect("presets serialise");
        bytes.push(b'\n');
        let path = preset_path(&self.dir, name);
        write_atomically(&path, &bytes).map_err(|e| format!("preset {}: {e}", path.display()))?;
        self.lock().insert(name.to_string(), Arc::new(preset));
        Ok(())
    }

    /// Removes preset `name`: its file, then the copy in memory.
    pub fn delete(&self, name: &str) -> Result<(), String> {
        if self.get(name).is_none() {
            return Err(format!("no preset named {name:?}"));
        }
        let path = preset_path(&self.dir, name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("preset {}: remove: {e}", path.display())),
        }
        self.lock().remove(name);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Preset>>> {
        self.presets.lock_unpoisoned()
    }
}

fn preset_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.json"))
}

fn load(name: &str, path: &Path) -> Result<Preset, String> {
    check_preset_name(name)?;
    let bytes = read_bounded(path, MAX_PRESET_BYTES).map_err(|e: InputFileError| e.to_string())?;
    let preset: Preset =
        serde_json::from_slice(&bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    preset.validate().map_err(|e| format!("invalid: {e}"))?;
    Ok(preset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preset(denoise: f64) -> Preset {
        Preset {
            version: PRESET_VERSION,
            knobs: BTreeMap::from([("denoise".to_string(), denoise)]),
            prompt: Some("dub techno".into()),
            prompt_b: None,
        }
    }

    #[test]
    fn saved_presets_are_read_back_and_bad_files_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let lib = PresetLibrary::open(dir.path().join("presets"));
        lib.save("verse", preset(0.25)).unwrap();
        lib.save("chorus", preset(0.75)).unwrap();
        std::fs::write(dir.path().join("presets/broken.json"), b"{").unwrap();
        std::fs::write(
            dir.path().join("presets/loud.json"),
            br#"{"version":1,"knobs":{"denoise":7}}"#,
        )
        .unwrap();
        let again = PresetLibrary::open(dir.path().join("presets"));
        assert_eq!(again.names(), ["chorus", "verse"]);
        assert_eq!(*again.get("verse").unwrap(), preset(0.25));
        again.delete("verse").unwrap();
        assert!(!dir.path().join("presets/verse.json").exists());
        assert!(again.delete("verse").unwrap_err().contains("no preset"));
        assert!(lib.save("../up", preset(0.5)).is_err());
        assert!(lib.save("bad", preset(3.0)).is_err());
        assert!(!dir.path().join("presets/bad.json").exists());
    }
}
