//! The built-in model's prompt vocabulary: words that move musical parameters, and the
//! per-frame target latent ("what the prompt sounds like") built from them.
//!
//! A prompt is a list of words (case-insensitive, split on anything that is not a letter);
//! every known word nudges the [`PromptTarget`]; unknown words are ignored and reported. The
//! word list and each word's effect are documented in `docs/engine.md` (section
//! "Prompt vocabulary"); [`VOCABULARY`] is the table both come from.
//!
//! Threading: pure functions on plain data.

use super::layout::*;

/// Musical parameters a prompt describes.
#[derive(Clone, Debug, PartialEq)]
pub struct PromptTarget {
    /// Beats per minute.
    pub tempo_bpm: f32,
    /// Spectral tilt: -1 dark .. +1 bright.
    pub brightness: f32,
    /// Note and hit density: 0 sparse .. 1 dense.
    pub density: f32,
    /// Tension: 0 calm (major pentatonic) .. 1 tense (phrygian, minor seconds).
    pub tension: f32,
    /// Pad level (sustained noise-like envelope and long melody notes).
    pub pad: f32,
    /// Pluck level (melody notes with fast decay).
    pub pluck: f32,
    /// Drum level (kick, snare, hats).
    pub drums: f32,
    /// Bass level.
    pub bass: f32,
    /// Bell character (strong upper partials).
    pub bells: f32,
    /// Stereo width 0..1.
    pub width: f32,
    /// Melody register in semitones relative to A4.
    pub register: f32,
    /// Melody pattern seed (a hash of the known words, so each prompt has its own tune).
    pub pattern: u64,
}

impl Default for PromptTarget {
    fn default() -> Self {
        Self {
            tempo_bpm: 100.0,
            brightness: 0.0,
            density: 0.5,
            tension: 0.2,
            pad: 0.5,
            pluck: 0.5,
            drums: 0.4,
            bass: 0.5,
            bells: 0.0,
            width: 0.5,
            register: 0.0,
            pattern: 0x5eed,
        }
    }
}

/// What a word does to the target.
#[derive(Clone, Copy, Debug)]
pub enum Effect {
    /// Sets the tempo (bpm).
    Tempo(f32),
    /// Adds to brightness.
    Bright(f32),
    /// Sets density.
    Density(f32),
    /// Sets tension.
    Tension(f32),
    /// Raises a texture: 0 pad, 1 pluck, 2 drums, 3 bass, 4 bells.
    Texture(u8, f32),
    /// Sets stereo width.
    Width(f32),
    /// Moves the register by semitones.
    Register(f32),
}

/// The vocabulary: word, effect, and a line for the docs.
pub static VOCABULARY: &[(&str, Effect, &str)] = &[
    ("slow", Effect::Tempo(72.0), "tempo 72 bpm"),
    ("relaxed", Effect::Tempo(86.0), "tempo 86 bpm"),
    ("medium", Effect::Tempo(104.0), "tempo 104 bpm"),
    ("fast", Effect::Tempo(136.0), "tempo 136 bpm"),
    ("frantic", Effect::Tempo(170.0), "tempo 170 bpm"),
    (
        "dark",
        Effect::Bright(-0.8),
        "darker spectral tilt, softer upper partials",
    ),
    ("warm", Effect::Bright(-0.4), "slightly darker tilt"),
    (
        "bright",
        Effect::Bright(0.8),
        "brighter tilt, stronger upper partials",
    ),
    ("airy", Effect::Bright(0.5), "more high-band air"),
    ("sparse", Effect::Density(0.15), "few notes and hits"),
    ("minimal", Effect::Density(0.25), "few notes and hits"),
    ("busy", Effect::Density(0.8), "more notes and hits"),
    (
        "dense",
        Effect::Density(0.95),
        "notes and hits on most eighths",
    ),
    (
        "calm",
        Effect::Tension(0.0),
        "major pentatonic, consonant bass",
    ),
    ("happy", Effect::Tension(0.1), "major pentatonic"),
    ("sad", Effect::Tension(0.55), "natural minor"),
    ("tense", Effect::Tension(0.85), "phrygian, half-step rubs"),
    ("dark-ambient", Effect::Tension(0.7), "minor, slow movement"),
    ("pad", Effect::Texture(0, 0.9), "sustained pad layer"),
    ("ambient", Effect::Texture(0, 0.8), "sustained pad layer"),
    ("pluck", Effect::Texture(1, 0.9), "plucked melody notes"),
    ("melody", Effect::Texture(1, 0.7), "plucked melody notes"),
    ("drums", Effect::Texture(2, 0.9), "kick, snare and hats"),
    ("beat", Effect::Texture(2, 0.7), "kick, snare and hats"),
    (
        "percussive",
        Effect::Texture(2, 0.6),
        "kick, snare and hats",
    ),
    (
        "bass",
        Effect::Texture(3, 0.9),
        "bass line on the chord roots",
    ),
    (
        "bells",
        Effect::Texture(4, 0.9),
        "bell-like upper partials on the melody",
    ),
    (
        "glassy",
        Effect::Texture(4, 0.6),
        "bell-like upper partials on the melody",
    ),
    ("wide", Effect::Width(0.95), "wide stereo image"),
    ("spacious", Effect::Width(0.85), "wide stereo image"),
    ("mono", Effect::Width(0.0), "centred image"),
    ("narrow", Effect::Width(0.15), "narrow image"),
    ("low", Effect::Register(-12.0), "melody an octave down"),
    ("high", Effect::Register(12.0), "melody an octave up"),
];

/// The prompt the daemon plays when given no source and no prompt.
pub const DEFAULT_PROMPT: &str = "calm warm pad pluck bass medium wide";

fn fnv(hash: u64, word: &str) -> u64 {
    word.bytes().fold(hash, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Parses a prompt: the target and the unknown words (in prompt order).
pub fn parse(text: &str) -> (PromptTarget, Vec<String>) {
    let mut target = PromptTarget::default();
    let mut unknown = Vec::new();
    let mut textures_named = false;
    let mut pattern = 0xcbf2_9ce4_8422_2325u64;
    for word in text
        .split(|c: char| !(c.is_alphabetic() || c == '-'))
        .filter(|w| !w.is_empty())
    {
        let lower = word.to_lowercase();
        let Some((_, effect, _)) = VOCABULARY.iter().find(|(w, _, _)| *w == lower) else {
            unknown.push(word.to_owned());
            continue;
        };
        pattern = fnv(pattern, &lower);
        match *effect {
            Effect::Tempo(bpm) => target.tempo_bpm = bpm,
            Effect::Bright(d) => target.brightness = (target.brightness + d).clamp(-1.0, 1.0),
            Effect::Density(d) => target.density = d,
            Effect::Tension(t) => target.tension = t,
            Effect::Texture(which, level) => {
                if !textures_named {
                    // Naming any texture means "these textures": the others drop to a trace.
                    textures_named = true;
                    for t in [&mut target.pad, &mut target.pluck, &mut target.drums] {
                        *t = 0.05;
                    }
                    target.bass = 0.05;
                }
                let slot = match which {
                    0 => &mut target.pad,
                    1 => &mut target.pluck,
                    2 => &mut target.drums,
                    3 => &mut target.bass,
                    _ => &mut target.bells,
                };
                *slot = slot.max(level);
            }
            Effect::Width(w) => target.width = w,
            Effect::Register(r) => target.register = (target.register + r).clamp(-24.0, 24.0),
        }
    }
    target.pattern = pattern;
    (target, unknown)
}

const PENTATONIC: [f32; 5] = [0.0, 2.0, 4.0, 7.0, 9.0];
const MINOR: [f32; 5] = [0.0, 3.0, 5.0, 7.0, 10.0];
const PHRYGIAN: [f32; 5] = [0.0, 1.0, 3.0, 7.0, 8.0];
/// Chord roots per bar (semitones above the key): I vi IV V in major, i VI iv v in minor.
const ROOTS_MAJOR: [f32; 4] = [0.0, -3.0, 5.0, 7.0];
const ROOTS_MINOR: [f32; 4] = [0.0, 8.0, 5.0, 7.0];

fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Writes the target latent for `frames` frames at `frame_rate` into `out` (frame-major).
/// `seed` picks the variation: 0 plays the prompt's own pattern, any other seed a different
/// melody (notes, which eighths play) and hat pattern in the same key, tempo and textures.
pub fn render_target(
    target: &PromptTarget,
    seed: u32,
    frames: usize,
    frame_rate: u32,
    out: &mut [f32],
) {
    let pattern = if seed == 0 {
        target.pattern
    } else {
        mix(target.pattern, u64::from(seed) | 1 << 40)
    };
    let scale: &[f32; 5] = match target.tension {
        t if t < 0.4 => &PENTATONIC,
        t if t < 0.75 => &MINOR,
        _ => &PHRYGIAN,
    };
    let roots = if target.tension < 0.4 {
        &ROOTS_MAJOR
    } else {
        &ROOTS_MINOR
    };
    let beats_per_frame = target.tempo_bpm / 60.0 / frame_rate as f32;
    for (f, frame) in out
        .chunks_exact_mut(LATENT_CHANNELS)
        .take(frames)
        .enumerate()
    {
        let beat = f as f32 * beats_per_frame;
        let eighth = (beat * 2.0).floor() as u64;
        let in_eighth = beat * 2.0 - eighth as f32; // 0..1 through the eighth note
        let bar = (beat / 4.0).floor() as usize;
        let root = roots[bar % 4];
        let h = mix(pattern, eighth);
        let note_on = (h % 1000) as f32 / 1000.0 < 0.25 + 0.7 * target.density;
        let degree = (mix(pattern, eighth / 2) % 8) as usize;
        let octave = if degree >= 5 { 12.0 } else { 0.0 };
        let melody_midi =
            69.0 + target.register + root.rem_euclid(12.0) + scale[degree % 5] + octave;
        // Envelope: a tilted floor, lifted by the pad, with air from brightness.
        for b in 0..BANDS {
            let pos = b as f32 / (BANDS - 1) as f32;
            let tilt_db = (-30.0 + 24.0 * target.brightness) * pos;
            let level_db = -62.0 + 22.0 * target.pad + tilt_db;
            frame[ENVELOPE + b] = db_to_latent(level_db);
        }
        // Melody voice: plucks decay within the note, pads sustain.
        let decay = (-in_eighth * 4.0 * target.pluck).exp();
        let body = target.pluck * decay + target.pad * 0.4;
        let melody_db = if note_on {
            -26.0 + 16.0 * body.min(1.0).ln_1p()
        } else {
            -90.0
        };
        frame[MELODY] = (melody_midi - MELODY_REF_MIDI) / 12.0;
        frame[MELODY + 1] = db_to_latent(melody_db);
        for k in 2..=PARTIALS {
            let rel = -(k as f32 - 1.0) * (8.0 - 6.0 * target.brightness);
            let bell = if k % 2 == 1 { 10.0 * target.bells } else { 0.0 };
            frame[MELODY + k] = (rel + bell) / PARTIAL_DB_SCALE;
        }
        // Bass: chord root on each beat, held.
        let in_beat = beat.fract();
        let bass_db = -24.0 + 10.0 * target.bass - 14.0 * in_beat - 40.0 * (1.0 - target.bass);
        frame[BASS] = (33.0 + root - BASS_REF_MIDI) / 12.0;
        frame[BASS + 1] = db_to_latent(bass_db);
        for k in 2..=PARTIALS {
            frame[BASS + k] =
                (-(k as f32 - 1.0) * (9.0 - 3.0 * target.brightness)) / PARTIAL_DB_SCALE;
        }
        // Rhythm: onsets at the start of hits only.
        let first_frame_of_eighth = in_eighth < 2.0 * beats_per_frame;
        let beat_in_bar = (beat.floor() as usize) % 4;
        let on_beat = ((beat * 2.0).floor() as u64).is_multiple_of(2);
        for g in 0..GROUPS {
            frame[ONSETS + g] = 0.0;
        }
        if first_frame_of_eighth {
            let d = target.drums;
            if on_beat && (beat_in_bar == 0 || beat_in_bar == 2 || target.density > 0.7) {
                frame[ONSETS] = d; // kick
            }
            if on_beat && (beat_in_bar == 1 || beat_in_bar == 3) {
                frame[ONSETS + 3] = 0.8 * d; // snare
            }
            if note_on || target.density > 0.6 {
                frame[ONSETS + 6] = 0.5 * d; // hat
            }
        }
        for g in 0..GROUPS {
            frame[WIDTH + g] = target.width * (0.4 + 0.6 * g as f32 / (GROUPS - 1) as f32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_words_move_the_target_and_unknown_ones_are_reported() {
        let (t, unknown) = parse("Fast, BRIGHT drums blorp zzz");
        assert_eq!(t.tempo_bpm, 136.0);
        assert!(t.brightness > 0.5);
        assert!(t.drums > 0.8 && t.pad < 0.1);
        assert_eq!(unknown, vec!["blorp".to_string(), "zzz".to_string()]);
        let (_, unknown) = parse(DEFAULT_PROMPT);
        assert!(unknown.is_empty());
        assert_ne!(parse("calm pad").0.pattern, parse("calm pluck").0.pattern);
    }

    #[test]
    fn every_word_and_knob_is_documented() {
        let doc = include_str!("../../../../docs/engine.md");
        for (word, _, _) in VOCABULARY {
            assert!(
                doc.contains(&format!("| `{word}` |")),
                "docs/engine.md lacks `{word}`"
            );
        }
        for spec in crate::knobs::KNOBS {
            let name = spec.name;
            let grouped = name.starts_with("ch_g");
            assert!(
                grouped || doc.contains(&format!("| `{name}` |")),
                "docs lack knob `{name}`"
            );
        }
    }
}
