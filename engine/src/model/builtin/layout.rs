//! The built-in model's latent layout: what each of the 64 channels of a latent frame means.
//!
//! | group | channels | meaning |
//! | --- | --- | --- |
//! | 0-3 | 0-31 | spectral envelope: level of 32 log-spaced bands, 40 Hz to 20 kHz |
//! | 4 | 32-39 | melody voice: pitch, level, partials 2-7 (level relative to the fundamental) |
//! | 5 | 40-47 | bass voice: pitch, level, partials 2-7 |
//! | 6 | 48-55 | onsets in 8 band groups (0-1 kick, 2-4 snare, 5-7 hats) |
//! | 7 | 56-63 | stereo width of 8 band groups |
//!
//! Levels are `(dB + 50) / 20` (so -50 dB is 0 and -10 dB is 2); pitches are
//! `(midi - ref) / 12`; partial levels are dB / [`PARTIAL_DB_SCALE`].

/// Channels per latent frame.
pub const LATENT_CHANNELS: usize = 64;
/// Channel groups (one `ch_g*` gain each).
pub const GROUPS: usize = 8;
/// Envelope bands.
pub const BANDS: usize = 32;
/// First envelope channel.
pub const ENVELOPE: usize = 0;
/// First melody channel (pitch; then level; then partials 2..=7).
pub const MELODY: usize = 32;
/// First bass channel.
pub const BASS: usize = 40;
/// First onset channel.
pub const ONSETS: usize = 48;
/// First width channel.
pub const WIDTH: usize = 56;
/// Highest partial of the voices.
pub const PARTIALS: usize = 7;
/// The melody pitch channel's reference (A4).
pub const MELODY_REF_MIDI: f32 = 69.0;
/// The bass pitch channel's reference (A2).
pub const BASS_REF_MIDI: f32 = 45.0;
/// dB per unit of a partial-level channel.
pub const PARTIAL_DB_SCALE: f32 = 20.0;
/// Lowest band edge, Hz.
pub const BAND_LOW_HZ: f32 = 40.0;
/// Highest band edge, Hz.
pub const BAND_HIGH_HZ: f32 = 20_000.0;

/// A level in dB as a latent value.
#[inline]
pub fn db_to_latent(db: f32) -> f32 {
    (db + 50.0) / 20.0
}

/// A latent level value in dB.
#[inline]
pub fn latent_to_db(v: f32) -> f32 {
    v * 20.0 - 50.0
}

/// The band (0..BANDS) a frequency falls in, or `None` outside 40 Hz .. 20 kHz.
pub fn band_of(hz: f32) -> Option<usize> {
    if !(BAND_LOW_HZ..BAND_HIGH_HZ).contains(&hz) {
        return None;
    }
    let pos = (hz / BAND_LOW_HZ).ln() / (BAND_HIGH_HZ / BAND_LOW_HZ).ln();
    Some(((pos * BANDS as f32) as usize).min(BANDS - 1))
}

/// The channel group a channel belongs to.
#[inline]
pub fn group_of(channel: usize) -> usize {
    channel / (LATENT_CHANNELS / GROUPS)
}
