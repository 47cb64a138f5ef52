//! The preset part of the contract: what a preset name may be, how long a fade or a glide
//! may last, and the fade curves by name. Decode checks these; the daemon's preset store
//! checks names read back from disk with the same [`check_preset_name`]; `docs/osc.md` is
//! generated from them.
//!
//! Threading: constants and pure functions; usable from any thread.

use crate::named;

/// Longest preset name, in bytes.
pub const MAX_PRESET_NAME_BYTES: usize = 64;

/// Longest fade (`/preset/recall`) or glide (`/knob/<name> value glide_s`), in seconds.
pub const MAX_FADE_S: f64 = 600.0;

/// Most presets the daemon keeps; saving a new name beyond it is refused.
pub const MAX_PRESETS: usize = 256;

/// A preset name is valid: 1 to [`MAX_PRESET_NAME_BYTES`] bytes of ASCII letters, digits,
/// `_`, `-` and `.`, not starting with `.` (so no path separator, no `..`, no hidden file).
/// The error says what is accepted.
pub fn check_preset_name(name: &str) -> Result<(), String> {
    let accepted = format!(
        "a preset name is 1 to {MAX_PRESET_NAME_BYTES} bytes of A-Z, a-z, 0-9, '_', '-', '.' \
         and does not start with '.'"
    );
    if name.is_empty() || name.len() > MAX_PRESET_NAME_BYTES {
        return Err(format!("preset name of {} bytes: {accepted}", name.len()));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        let what = if matches!(bad, '/' | '\\') {
            "a path separator"
        } else {
            "a character"
        };
        return Err(format!(
            "preset name {name:?} holds {what} {bad:?}: {accepted}"
        ));
    }
    if name.starts_with('.') {
        return Err(format!("preset name {name:?} starts with '.': {accepted}"));
    }
    Ok(())
}

/// The shape of a fade or glide over its length (time `t` from 0 to 1 maps to progress
/// from 0 to 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FadeCurve {
    /// Progress = t.
    #[default]
    Linear,
    /// Smoothstep, 3t² − 2t³: starts and ends gently.
    Smooth,
    /// t²: starts slowly, ends fast.
    EaseIn,
    /// 1 − (1 − t)²: starts fast, ends slowly.
    EaseOut,
}

impl FadeCurve {
    /// Every curve with its name on the wire, the default first.
    pub const ALL: [(FadeCurve, &'static str, &'static str); 4] = [
        (FadeCurve::Linear, "linear", "progress = t (the default)"),
        (
            FadeCurve::Smooth,
            "smooth",
            "smoothstep 3t² − 2t³: starts and ends gently",
        ),
        (FadeCurve::EaseIn, "ease_in", "t²: starts slowly, ends fast"),
        (
            FadeCurve::EaseOut,
            "ease_out",
            "1 − (1 − t)²: starts fast, ends slowly",
        ),
    ];

    /// The curve of that name; the error lists the names.
    pub fn from_name(name: &str) -> Result<FadeCurve, String> {
        named::find(&Self::ALL, name).ok_or_else(|| {
            format!(
                "unknown curve {name:?}; curves are: {}",
                named::listed(&Self::ALL)
            )
        })
    }

    /// The curve's name on the wire.
    pub fn name(self) -> &'static str {
        named::name_of(&Self::ALL, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_paths_or_dots_are_refused() {
        for ok in [
            "a",
            "verse_1",
            "Intro-2.b",
            &"x".repeat(MAX_PRESET_NAME_BYTES),
        ] {
            assert_eq!(check_preset_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "../x", "a/b", "a\\b", ".hidden", "..", "sp ace", "é"] {
            assert!(check_preset_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(
            check_preset_name(&"x".repeat(MAX_PRESET_NAME_BYTES + 1))
                .unwrap_err()
                .contains("65 bytes")
        );
        assert!(
            check_preset_name("a/b")
                .unwrap_err()
                .contains("path separator")
        );
    }

    #[test]
    fn curves_round_trip_by_name() {
        for (curve, name, _) in FadeCurve::ALL {
            assert_eq!(FadeCurve::from_name(name), Ok(curve));
            assert_eq!(curve.name(), name);
        }
        assert!(
            FadeCurve::from_name("cubic")
                .unwrap_err()
                .contains("ease_out")
        );
    }
}
