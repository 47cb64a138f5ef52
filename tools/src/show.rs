//! How replies and pushes are printed: one message per line (`/knob/denoise 0.5`, strings in
//! quotes), UTC timestamps for `watch`, and `/status.reply` as named fields.
//!
//! Threading: pure functions.

use std::time::{SystemTime, UNIX_EPOCH};

use latentd_osc_schema::reply::level_arg_names;
use latentd_osc_schema::rosc::{OscMessage, OscPacket, OscType};

/// Every message of a packet (a bundle's contents in order).
pub fn messages(packet: &OscPacket) -> Vec<&OscMessage> {
    match packet {
        OscPacket::Message(m) => vec![m],
        OscPacket::Bundle(b) => b.content.iter().flat_map(messages).collect(),
    }
}

/// `/address arg arg ...`.
pub fn message(m: &OscMessage) -> String {
    let mut line = m.addr.clone();
    for arg in &m.args {
        line.push(' ');
        line.push_str(&value(arg));
    }
    line
}

fn value(arg: &OscType) -> String {
    match arg {
        OscType::Float(v) => v.to_string(),
        OscType::Double(v) => v.to_string(),
        OscType::Int(v) => v.to_string(),
        OscType::Long(v) => v.to_string(),
        OscType::String(s) => format!("{s:?}"),
        OscType::Bool(b) => b.to_string(),
        OscType::Nil => "nil".into(),
        other => format!("{other:?}"),
    }
}

/// The reason of a `/fail <address> <reason>`: `"<address>: <reason>"`.
pub fn failure(m: &OscMessage) -> Option<String> {
    if m.addr != "/fail" {
        return None;
    }
    let text = |i: usize| match m.args.get(i) {
        Some(OscType::String(s)) => s.clone(),
        Some(other) => value(other),
        None => "?".into(),
    };
    Some(format!("{}: {}", text(0), text(1)))
}

/// The fields of `/status.reply` before the levels, in wire order, with their units.
const STATUS_FIELDS: &[(&str, &str)] = &[
    ("backend", ""),
    ("sample_rate", "Hz"),
    ("period_frames", "frames"),
    ("playhead_s", "s"),
    ("loop_s", "s"),
    ("ticks_per_s", "/s"),
    ("tick_ms_p50", "ms"),
    ("lead_s", "s"),
    ("xruns", ""),
    ("late_landings", ""),
    ("last_knob_to_ear_ms", "ms"),
    ("engine_restarts", ""),
    ("output", ""),
    ("output_reconnects", ""),
];

/// Every field of `/status.reply`, in wire order, with its unit: [`STATUS_FIELDS`], then
/// the levels, then the inert knobs, the output's latency and the callback's scheduling.
fn status_fields() -> Vec<(String, &'static str)> {
    STATUS_FIELDS
        .iter()
        .map(|&(name, unit)| (name.to_string(), unit))
        .chain(level_arg_names().into_iter().map(|name| (name, "dBFS")))
        .chain([
            ("inert_knobs".to_string(), ""),
            ("output_latency_ms".to_string(), "ms"),
            ("callback_realtime".to_string(), ""),
        ])
        .collect()
}

/// `/status.reply` as aligned `name  value unit` lines.
pub fn status(m: &OscMessage) -> Result<String, String> {
    let fields = status_fields();
    if m.args.len() != fields.len() {
        return Err(format!(
            "/status.reply has {} arguments, expected {} ({})",
            m.args.len(),
            fields.len(),
            message(m)
        ));
    }
    let width = fields.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut out = String::new();
    for ((name, unit), arg) in fields.iter().zip(&m.args) {
        let shown = match arg {
            OscType::String(s) => s.clone(),
            OscType::Float(v) if name == "last_knob_to_ear_ms" && *v < 0.0 => {
                "not measured yet".into()
            }
            other => format!("{} {unit}", value(other)).trim_end().to_string(),
        };
        out.push_str(&format!("{name:<width$}  {shown}\n"));
    }
    Ok(out)
}

/// Now as `2025-06-01T12:34:56.789Z`.
pub fn timestamp_now() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    utc(since.as_secs(), since.subsec_millis())
}

/// Seconds since 1970 as an ISO 8601 UTC time with milliseconds.
fn utc(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian, 400-year eras).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use latentd_osc_schema::reply::{Level, StatusReport, status_reply};

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(utc(1_709_251_199, 999), "2024-02-29T23:59:59.999Z");
        assert_eq!(utc(4_102_444_800, 0), "2100-01-01T00:00:00.000Z");
    }

    #[test]
    fn status_fields_are_named() {
        let report = StatusReport {
            backend: "builtin".into(),
            sample_rate: 48_000,
            period_frames: 256,
            playhead_s: 1.5,
            loop_s: 8.0,
            ticks_per_s: 20.0,
            tick_ms_p50: 3.25,
            lead_s: 0.5,
            xruns: 2,
            late_landings: 0,
            last_knob_to_ear_ms: None,
            engine_restarts: 1,
            output: "reconnecting".into(),
            output_reconnects: 2,
            levels: [Level::from_linear(0.5, 0.25), Level::SILENT],
            inert_knobs: vec!["guidance".into(), "cfg_rescale".into()],
            output_latency_ms: 10.5,
            callback_realtime: Some(false),
        };
        let packet = status_reply(&report);
        let text = status(messages(&packet)[0]).unwrap();
        assert!(text.contains("backend              builtin\n"), "{text}");
        assert!(text.contains("sample_rate          48000 Hz\n"), "{text}");
        assert!(text.contains("tick_ms_p50          3.25 ms\n"), "{text}");
        assert!(
            text.contains("last_knob_to_ear_ms  not measured yet\n"),
            "{text}"
        );
        assert!(text.contains("engine_restarts      1\n"), "{text}");
        assert!(
            text.contains("output               reconnecting\n"),
            "{text}"
        );
        assert!(text.contains("output_reconnects    2\n"), "{text}");
        assert!(
            text.contains("peak_dbfs_1          -6.0206 dBFS\n"),
            "{text}"
        );
        assert!(
            text.contains("rms_dbfs_1           -12.0412 dBFS\n"),
            "{text}"
        );
        assert!(text.contains("rms_dbfs_2           -120 dBFS\n"), "{text}");
        assert!(
            text.contains("inert_knobs          guidance,cfg_rescale\n"),
            "{text}"
        );
        assert!(text.contains("output_latency_ms    10.5 ms\n"), "{text}");
        assert!(text.contains("callback_realtime    0\n"), "{text}");
        assert_eq!(text.lines().count(), 21);
    }

    #[test]
    fn messages_and_failures_print_on_one_line() {
        let m = OscMessage {
            addr: "/fail".into(),
            args: vec![
                OscType::String("/knob/denoise".into()),
                OscType::String("value 7 outside 0..1".into()),
            ],
        };
        assert_eq!(
            message(&m),
            "/fail \"/knob/denoise\" \"value 7 outside 0..1\""
        );
        assert_eq!(failure(&m).unwrap(), "/knob/denoise: value 7 outside 0..1");
    }
}
