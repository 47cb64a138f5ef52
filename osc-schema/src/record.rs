//! The recording part of the contract: what a `/record/start` file name may be, and the
//! name a recording gets without one. Decode checks names with [`check_record_name`] before
//! the media folder resolves them ([`crate::MediaRoot::resolve_new`]); `docs/osc.md` is
//! generated from the same constants.
//!
//! Threading: constants and pure functions; usable from any thread.

use std::path::{Component, Path};

/// Longest record file name (with its folders inside the media folder), in bytes.
pub const MAX_RECORD_NAME_BYTES: usize = 255;

/// The extension every recording has.
pub const RECORD_EXTENSION: &str = "wav";

/// A record file name is valid: 1 to [`MAX_RECORD_NAME_BYTES`] bytes, relative (no leading
/// `/`), no `.` or `..` component, no empty component, no NUL, no component starting with
/// `.`, and ending in `.wav`. The error says which rule it broke.
pub fn check_record_name(name: &str) -> Result<(), String> {
    let accepted = format!(
        "a record file is a relative name inside the media folder (1 to \
         {MAX_RECORD_NAME_BYTES} bytes, no '..', no hidden component) ending in \
         .{RECORD_EXTENSION}"
    );
    if name.is_empty() || name.len() > MAX_RECORD_NAME_BYTES {
        return Err(format!("file name of {} bytes: {accepted}", name.len()));
    }
    if name.contains('\0') {
        return Err(format!("file name {name:?} holds a NUL byte: {accepted}"));
    }
    if name.starts_with('/') {
        return Err(format!(
            "file name {name:?} is an absolute path: {accepted}"
        ));
    }
    for part in name.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!(
                "file name {name:?} has a {:?} component: {accepted}",
                part
            ));
        }
        if part.starts_with('.') {
            return Err(format!(
                "file name {name:?} has a hidden component {part:?}: {accepted}"
            ));
        }
    }
    let has_extension = Path::new(name)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(RECORD_EXTENSION));
    if !has_extension {
        return Err(format!(
            "file name {name:?} does not end in .{RECORD_EXTENSION}: {accepted}"
        ));
    }
    // Lexically normal by now; the components are plain names.
    debug_assert!(
        Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
    );
    Ok(())
}

/// The name of a recording started without one: `latentd-YYYYMMDD-HHMMSS.wav`, the UTC
/// time `unix_seconds` after the epoch.
pub fn timestamped_name(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "latentd-{y:04}{m:02}{d:02}-{:02}{:02}{:02}.{RECORD_EXTENSION}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_inside_the_folder_ending_in_wav_are_accepted() {
        for ok in ["take.wav", "a/b/take.WAV", "night-1_x.wav"] {
            assert_eq!(check_record_name(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "0 bytes"),
            ("/tmp/x.wav", "absolute"),
            ("../x.wav", "\"..\" component"),
            ("a/../../x.wav", "\"..\" component"),
            ("a//x.wav", "\"\" component"),
            ("./x.wav", "\".\" component"),
            (".x.wav", "hidden"),
            ("take.mp3", "does not end in .wav"),
            ("take", "does not end in .wav"),
            ("a\0.wav", "NUL"),
        ] {
            let err = check_record_name(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        assert!(check_record_name(&format!("{}.wav", "a".repeat(252))).is_err());
    }

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(timestamped_name(0), "latentd-19700101-000000.wav");
        // 2026-12-05 12:26:24 UTC.
        assert_eq!(
            timestamped_name(1_796_473_584),
            "latentd-20261205-122624.wav"
        );
        // 2000-02-29 23:59:59 UTC (a leap day).
        assert_eq!(timestamped_name(951_868_799), "latentd-20000229-235959.wav");
    }
}
