//! Packet bytes to validated commands. Framing is checked here (not left to `rosc`), so every
//! defect has a precise reason: truncation, bad type tags, trailing bytes, nested bundles.
//! A packet applies as a whole or not at all: the first failure rejects it.
//!
//! Nested bundles are rejected (`bundle element N is a nested bundle`): the elements of one
//! flat bundle already apply atomically at one time, and rejecting nesting keeps the time rule
//! and the recursion depth trivial.
//!
//! Threading: pure (except resolving media paths, which reads file metadata); any control thread.

use rosc::{OscMessage, OscPacket, OscTime, OscType};

use crate::command::{Command, Fail, RecordFile, Timed, When};
use crate::knobs::ParamSpec;
use crate::pattern;
use crate::presets::{FadeCurve, MAX_FADE_S, check_preset_name};
use crate::schema::Schema;
use crate::table::{self, ArgSpec, Route};

const BUNDLE_TAG: &[u8] = b"#bundle\0";
/// Type tags whose payloads this decoder can size (OSC 1.0 plus the common 1.1 extensions).
const KNOWN_TAGS: &str = "ifsbhtdScrmTFNI[]";

impl Schema {
    /// Decode one packet (a UDP datagram or one TCP frame) into the commands it carries.
    ///
    /// A message yields [`When::Immediately`]; a bundle yields its timetag. A pattern address
    /// yields one command per matching address. Any defect rejects the whole packet.
    pub fn decode(&self, packet: &[u8]) -> Result<Timed<Vec<Command>>, Fail> {
        let limit = self.limits().max_packet_bytes;
        if packet.len() > limit {
            return Err(Fail::packet(format!(
                "packet of {} bytes exceeds the limit of {limit} bytes",
                packet.len()
            )));
        }
        match packet.first() {
            None => Err(Fail::packet("empty packet")),
            Some(b'/') => {
                let commands = self.decode_message(packet)?;
                Ok(Timed {
                    when: When::Immediately,
                    value: commands,
                })
            }
            Some(b'#') if packet.starts_with(BUNDLE_TAG) => self.decode_bundle(packet),
            Some(&b) => Err(Fail::packet(format!(
                "packet starts with byte 0x{b:02x}: neither a message ('/') nor a bundle ('#bundle')"
            ))),
        }
    }

    fn decode_bundle(&self, packet: &[u8]) -> Result<Timed<Vec<Command>>, Fail> {
        let bundle_fail = |reason: String| Fail::new("#bundle", reason);
        if packet.len() < 16 {
            return Err(bundle_fail(format!(
                "truncated bundle: {} bytes, the header alone needs 16",
                packet.len()
            )));
        }
        let time = OscTime {
            seconds: be_u32(&packet[8..12]),
            fractional: be_u32(&packet[12..16]),
        };
        let mut commands = Vec::new();
        let mut rest = &packet[16..];
        let mut element = 0;
        while !rest.is_empty() {
            element += 1;
            if rest.len() < 4 {
                return Err(bundle_fail(format!(
                    "bundle element {element}: truncated size prefix ({} bytes)",
                    rest.len()
                )));
            }
            let size = be_u32(&rest[..4]) as usize;
            rest = &rest[4..];
            if size > rest.len() {
                return Err(bundle_fail(format!(
                    "bundle element {element} declares {size} bytes but only {} remain",
                    rest.len()
                )));
            }
            if size == 0 || !size.is_multiple_of(4) {
                return Err(bundle_fail(format!(
                    "bundle element {element} has size {size}; sizes are positive multiples of 4"
                )));
            }
            let (bytes, after) = rest.split_at(size);
            rest = after;
            if bytes.starts_with(b"#") {
                return Err(bundle_fail(format!(
                    "bundle element {element} is a nested bundle; nested bundles are not \
                     accepted, send one flat bundle"
                )));
            }
            let mut element_commands = self.decode_message(bytes).map_err(|f| Fail {
                reason: format!("in bundle element {element}: {}", f.reason),
                ..f
            })?;
            commands.append(&mut element_commands);
        }
        Ok(Timed {
            when: When::from_timetag(time),
            value: commands,
        })
    }

    /// Decode and validate one message (the bytes of a packet or of a bundle element).
    fn decode_message(&self, bytes: &[u8]) -> Result<Vec<Command>, Fail> {
        let message = self.parse_message(bytes)?;
        self.route_message(&message)
    }

    fn parse_message(&self, bytes: &[u8]) -> Result<OscMessage, Fail> {
        let (address, after_address) =
            osc_string(bytes).map_err(|why| Fail::packet(format!("address {why}")))?;
        let address =
            std::str::from_utf8(address).map_err(|_| Fail::packet("address is not valid UTF-8"))?;
        if !address.starts_with('/') {
            return Err(Fail::packet(format!(
                "address {address:?} does not start with '/'"
            )));
        }
        let max_address = self.limits().max_address_bytes;
        if address.len() > max_address {
            return Err(Fail::new(
                truncate(address, 64),
                format!(
                    "address is {} bytes; the limit is {max_address}",
                    address.len()
                ),
            ));
        }
        let fail = |reason: String| Fail::new(address, reason);
        if after_address.is_empty() {
            // OSC 1.0 lets very old clients omit the type tag string: no arguments.
            return Ok(OscMessage {
                addr: address.to_string(),
                args: vec![],
            });
        }
        let (tags, argument_bytes) = osc_string(&bytes[bytes.len() - after_address.len()..])
            .map_err(|why| fail(format!("type tag string {why}")))?;
        let tags = std::str::from_utf8(tags)
            .map_err(|_| fail("type tag string is not valid UTF-8".into()))?;
        let Some(tag_list) = tags.strip_prefix(',') else {
            return Err(fail(format!(
                "type tag string {tags:?} does not start with ','"
            )));
        };
        if let Some((i, bad)) = tag_list
            .chars()
            .enumerate()
            .find(|(_, c)| !KNOWN_TAGS.contains(*c))
        {
            return Err(fail(format!(
                "unknown type tag {bad:?} at position {} of {tags:?}",
                i + 1
            )));
        }
        check_argument_bytes(tag_list, argument_bytes).map_err(fail)?;
        let decoded = rosc::decoder::decode_udp(bytes)
            .map_err(|e| fail(format!("arguments do not match type tags {tags:?} ({e})")))?;
        let (remainder, packet) = decoded;
        if !remainder.is_empty() {
            return Err(fail(format!(
                "{} bytes left over after the arguments of type tags {tags:?}",
                remainder.len()
            )));
        }
        match packet {
            OscPacket::Message(message) => Ok(message),
            OscPacket::Bundle(_) => Err(fail("expected a message, found a bundle".into())),
        }
    }

    fn route_message(&self, message: &OscMessage) -> Result<Vec<Command>, Fail> {
        let address = message.addr.as_str();
        let fail = |reason: String| Fail::new(address, reason);
        let max_string = self.limits().max_string_bytes;
        for (i, arg) in message.args.iter().enumerate() {
            if let OscType::String(s) = arg
                && s.len() > max_string
            {
                return Err(fail(format!(
                    "argument {} is a string of {} bytes; the limit is {max_string}",
                    i + 1,
                    s.len()
                )));
            }
        }
        let targets: Vec<usize> = if pattern::is_pattern(address) {
            pattern::validate(address).map_err(fail)?;
            let found: Vec<usize> = (0..self.endpoints().len())
                .filter(|&i| pattern::matches(address, &self.endpoints()[i].address))
                .collect();
            if found.is_empty() {
                return Err(fail("no address matches this pattern".into()));
            }
            found
        } else {
            match self.endpoints().iter().position(|e| e.address == address) {
                Some(i) => vec![i],
                None => return Err(fail(self.unknown_address_reason(address))),
            }
        };
        targets
            .into_iter()
            .map(|i| {
                let endpoint = &self.endpoints()[i];
                self.command(endpoint.route, endpoint.knob, &message.args)
                    .map_err(&fail)
            })
            .collect()
    }

    fn unknown_address_reason(&self, address: &str) -> String {
        match address.strip_prefix("/knob/") {
            Some(name) => {
                let names: Vec<&str> = self.knobs().iter().map(|k| k.name).collect();
                format!("unknown knob {name:?}; knobs are: {}", names.join(", "))
            }
            None => "unknown address (see docs/osc.md)".to_string(),
        }
    }

    fn command(
        &self,
        route: Route,
        knob: Option<usize>,
        args: &[OscType],
    ) -> Result<Command, String> {
        let spec = table::spec(route);
        let required = spec.args.iter().filter(|a| !a.optional).count();
        if args.len() < required || args.len() > spec.args.len() {
            return Err(arity_reason(
                spec.address,
                spec.args,
                args,
                knob.map(|i| &self.knobs()[i]),
            ));
        }
        let path = |arg: &OscType, spec: &ArgSpec| -> Result<std::path::PathBuf, String> {
            let raw = string(1, spec, arg)?;
            let media = self.media_root().ok_or("no media folder is configured")?;
            media.resolve(raw)
        };
        Ok(match route {
            Route::Knob => {
                let index = knob.expect("knob endpoints carry their index");
                let param = &self.knobs()[index];
                match args.first() {
                    None => Command::QueryKnob {
                        index,
                        name: param.name,
                    },
                    Some(arg) => {
                        let value = param.check_value(number(1, &spec.args[0], arg)?)?;
                        let glide_s = match args.get(1) {
                            Some(arg) => fade(2, &spec.args[1], arg)?,
                            None => 0.0,
                        };
                        Command::SetKnob {
                            index,
                            name: param.name,
                            value,
                            glide_s,
                        }
                    }
                }
            }
            Route::Knobs => Command::QueryKnobs,
            Route::Prompt => Command::Prompt {
                tags: string(1, &spec.args[0], &args[0])?.to_string(),
                tags_b: match args.get(1) {
                    Some(arg) => Some(string(2, &spec.args[1], arg)?.to_string()),
                    None => None,
                },
            },
            Route::Timbre => Command::Timbre {
                path: path(&args[0], &spec.args[0])?,
            },
            Route::TimbreClear => Command::TimbreClear,
            Route::Structure => Command::Structure {
                path: path(&args[0], &spec.args[0])?,
            },
            Route::StructureClear => Command::StructureClear,
            Route::Source => Command::Source {
                path: path(&args[0], &spec.args[0])?,
            },
            Route::Loop => {
                let a = non_negative(1, &spec.args[0], number(1, &spec.args[0], &args[0])?)?;
                let b = number(2, &spec.args[1], &args[1])?;
                if b <= a {
                    return Err(format!(
                        "argument 2 (b_seconds) must be greater than a_seconds ({a}); got {b}"
                    ));
                }
                Command::Loop { a, b }
            }
            Route::LoopClear => Command::LoopClear,
            Route::Play => Command::Play,
            Route::Pause => Command::Pause,
            Route::Seek => Command::Seek {
                seconds: non_negative(1, &spec.args[0], number(1, &spec.args[0], &args[0])?)?,
            },
            Route::Status => Command::Status,
            Route::Notify => match &args[0] {
                OscType::Int(1) => Command::Notify(true),
                OscType::Int(0) => Command::Notify(false),
                other => {
                    return Err(format!(
                        "argument 1 (on) must be i 0 or i 1; got {}",
                        describe(other)
                    ));
                }
            },
            Route::NotifyMeter => {
                let hz = number(1, &spec.args[0], &args[0])?;
                let max = crate::limits::METER_MAX_HZ;
                if hz != 0.0 && !(1.0..=max).contains(&hz) {
                    return Err(format!(
                        "argument 1 (hz) must be 0 (stop) or 1 to {max} pushes per second; \
                         got {hz}"
                    ));
                }
                Command::NotifyMeter(hz)
            }
            Route::Sync => match &args[0] {
                OscType::Int(id) => Command::Sync(*id),
                other => {
                    return Err(format!(
                        "argument 1 (id) must be an int (i); got {}",
                        describe(other)
                    ));
                }
            },
            Route::Version => Command::Version,
            Route::PresetSave => Command::PresetSave {
                name: preset_name(1, &spec.args[0], &args[0])?,
            },
            Route::PresetRecall => Command::PresetRecall {
                name: preset_name(1, &spec.args[0], &args[0])?,
                fade_s: match args.get(1) {
                    Some(arg) => fade(2, &spec.args[1], arg)?,
                    None => 0.0,
                },
                curve: match args.get(2) {
                    Some(arg) => FadeCurve::from_name(string(3, &spec.args[2], arg)?)
                        .map_err(|why| format!("argument 3 (curve): {why}"))?,
                    None => FadeCurve::default(),
                },
            },
            Route::PresetList => Command::PresetList,
            Route::PresetDelete => Command::PresetDelete {
                name: preset_name(1, &spec.args[0], &args[0])?,
            },
            Route::PresetMorph => {
                let x = number(3, &spec.args[2], &args[2])?;
                if !(0.0..=1.0).contains(&x) {
                    return Err(format!("argument 3 (x) must be in [0, 1]; got {x}"));
                }
                Command::PresetMorph {
                    a: preset_name(1, &spec.args[0], &args[0])?,
                    b: preset_name(2, &spec.args[1], &args[1])?,
                    x,
                }
            }
            Route::RecordStart => {
                let media = self.media_root().ok_or("no media folder is configured")?;
                Command::RecordStart {
                    file: match args.first() {
                        Some(arg) => {
                            let name = string(1, &spec.args[0], arg)?;
                            let path = media
                                .resolve_new(name)
                                .map_err(|why| format!("argument 1 (file): {why}"))?;
                            Some(RecordFile {
                                name: name.to_string(),
                                path,
                            })
                        }
                        None => None,
                    },
                }
            }
            Route::RecordStop => Command::RecordStop,
            Route::MidiLearn => Command::MidiLearn(self.midi_binding(
                string(1, &spec.args[0], &args[0])?,
                optional_number(2, &spec.args[1], args.get(1))?,
                optional_number(3, &spec.args[2], args.get(2))?,
                optional_string(4, &spec.args[3], args.get(3))?,
                optional_string(5, &spec.args[4], args.get(4))?,
            )?),
            Route::MidiMap => Command::MidiMap(self.midi_map(
                number(1, &spec.args[0], &args[0])?,
                number(2, &spec.args[1], &args[1])?,
                string(3, &spec.args[2], &args[2])?,
                optional_number(4, &spec.args[3], args.get(3))?,
                optional_number(5, &spec.args[4], args.get(4))?,
                optional_string(6, &spec.args[5], args.get(5))?,
                optional_string(7, &spec.args[6], args.get(6))?,
            )?),
            Route::MidiUnmap => Command::MidiUnmap {
                channel: crate::midi::check_channel(number(1, &spec.args[0], &args[0])?)
                    .map_err(|why| format!("argument 1 (channel): {why}"))?,
                cc: crate::midi::check_controller(number(2, &spec.args[1], &args[1])?)
                    .map_err(|why| format!("argument 2 (cc): {why}"))?,
            },
            Route::MidiMaps => Command::MidiMaps,
            Route::CaptureStart => Command::CaptureStart {
                seconds: match args.first() {
                    Some(arg) => {
                        let s = number(1, &spec.args[0], arg)?;
                        let max = crate::limits::CAPTURE_MAX_S;
                        if !(s > 0.0 && s <= max) {
                            return Err(format!(
                                "argument 1 (seconds) must be above 0 and at most {max} s; \
                                 got {s}"
                            ));
                        }
                        Some(s)
                    }
                    None => None,
                },
                quantize: match args.get(1) {
                    None | Some(OscType::Int(0)) => false,
                    Some(OscType::Int(1)) => true,
                    Some(other) => {
                        return Err(format!(
                            "argument 2 (quantize) must be i 0 or i 1; got {}",
                            describe(other)
                        ));
                    }
                },
            },
            Route::CaptureStop => Command::CaptureStop,
        })
    }
}

fn arity_reason(
    address: &str,
    specs: &[ArgSpec],
    args: &[OscType],
    knob: Option<&ParamSpec>,
) -> String {
    let address = match knob {
        Some(k) => format!("/knob/{}", k.name),
        None => address.to_string(),
    };
    let signature: Vec<String> = specs
        .iter()
        .map(|a| {
            let s = format!("{} {}", a.ty.tag(), a.name);
            if a.optional { format!("[{s}]") } else { s }
        })
        .collect();
    let got: Vec<String> = args.iter().map(describe).collect();
    let takes = if specs.is_empty() {
        "takes no arguments".to_string()
    } else {
        format!("takes ({})", signature.join(", "))
    };
    format!(
        "{address} {takes}; got {} argument(s): {}",
        args.len(),
        if got.is_empty() {
            "none".into()
        } else {
            got.join(", ")
        }
    )
}

/// Coerce a number argument to f64: `i`, `f`, `h`, `d` accepted; must be finite.
fn number(position: usize, spec: &ArgSpec, arg: &OscType) -> Result<f64, String> {
    let value = match arg {
        OscType::Int(v) => f64::from(*v),
        OscType::Float(v) => f64::from(*v),
        OscType::Double(v) => *v,
        OscType::Long(v) => {
            if v.unsigned_abs() > (1u64 << 53) {
                return Err(format!(
                    "argument {position} ({}) h {v} is too large to convert exactly",
                    spec.name
                ));
            }
            *v as f64
        }
        OscType::Inf => f64::INFINITY,
        other => {
            return Err(format!(
                "argument {position} ({}) must be a number (i, f, h or d); got {}",
                spec.name,
                describe(other)
            ));
        }
    };
    if value.is_nan() {
        return Err(format!(
            "argument {position} ({}) is NaN; a finite number is required",
            spec.name
        ));
    }
    if value.is_infinite() {
        return Err(format!(
            "argument {position} ({}) is infinite; a finite number is required",
            spec.name
        ));
    }
    Ok(value)
}

fn non_negative(position: usize, spec: &ArgSpec, value: f64) -> Result<f64, String> {
    if value < 0.0 {
        return Err(format!(
            "argument {position} ({}) must be >= 0 s; got {value}",
            spec.name
        ));
    }
    Ok(value)
}

/// A fade or glide length: a number in `0 ..= MAX_FADE_S` seconds.
fn fade(position: usize, spec: &ArgSpec, arg: &OscType) -> Result<f64, String> {
    let value = non_negative(position, spec, number(position, spec, arg)?)?;
    if value > MAX_FADE_S {
        return Err(format!(
            "argument {position} ({}) must be at most {MAX_FADE_S} s; got {value}",
            spec.name
        ));
    }
    Ok(value)
}

fn optional_number(
    position: usize,
    spec: &ArgSpec,
    arg: Option<&OscType>,
) -> Result<Option<f64>, String> {
    arg.map(|a| number(position, spec, a)).transpose()
}

fn optional_string<'a>(
    position: usize,
    spec: &ArgSpec,
    arg: Option<&'a OscType>,
) -> Result<Option<&'a str>, String> {
    arg.map(|a| string(position, spec, a)).transpose()
}

/// A preset name argument, checked by [`check_preset_name`].
fn preset_name(position: usize, spec: &ArgSpec, arg: &OscType) -> Result<String, String> {
    let name = string(position, spec, arg)?;
    check_preset_name(name).map_err(|why| format!("argument {position} ({}): {why}", spec.name))?;
    Ok(name.to_string())
}

fn string<'a>(position: usize, spec: &ArgSpec, arg: &'a OscType) -> Result<&'a str, String> {
    match arg {
        OscType::String(s) => Ok(s),
        other => Err(format!(
            "argument {position} ({}) must be a string (s); got {}",
            spec.name,
            describe(other)
        )),
    }
}

/// An argument as `<tag> <value>` for `/fail` reasons.
pub fn describe(arg: &OscType) -> String {
    match arg {
        OscType::Int(v) => format!("i {v}"),
        OscType::Float(v) => format!("f {v}"),
        OscType::Long(v) => format!("h {v}"),
        OscType::Double(v) => format!("d {v}"),
        OscType::String(s) => format!("s {:?}", truncate(s, 40)),
        OscType::Blob(b) => format!("b ({} bytes)", b.len()),
        OscType::Time(t) => format!("t {}.{}", t.seconds, t.fractional),
        OscType::Char(c) => format!("c {c:?}"),
        OscType::Color(_) => "r (color)".to_string(),
        OscType::Midi(_) => "m (midi)".to_string(),
        OscType::Bool(true) => "T (true)".to_string(),
        OscType::Bool(false) => "F (false)".to_string(),
        OscType::Array(a) => format!("[...] (array of {})", a.content.len()),
        OscType::Nil => "N (nil)".to_string(),
        OscType::Inf => "I (infinitum)".to_string(),
    }
}

/// Walk the argument bytes by type tag (`tags` without the ',') so that a short packet is
/// named precisely; the decoder's own error would not say which argument or why.
fn check_argument_bytes(tags: &str, mut rest: &[u8]) -> Result<(), String> {
    for (position, tag) in tags.chars().enumerate() {
        let at = format!("the argument of type tag {} ({tag:?})", position + 1);
        let size = match tag {
            'h' | 'd' | 't' => 8,
            'i' | 'f' | 'c' | 'r' | 'm' => 4,
            's' | 'S' => {
                let (_, after) = osc_string(rest).map_err(|why| format!("{at}: string {why}"))?;
                rest.len() - after.len()
            }
            'b' if rest.len() >= 4 => 4 + (be_u32(&rest[..4]) as usize).div_ceil(4) * 4,
            'b' => 4,
            _ => 0,
        };
        if rest.len() < size {
            return Err(format!(
                "truncated packet: {at} needs {size} bytes; {} follow",
                rest.len()
            ));
        }
        rest = &rest[size..];
    }
    Ok(())
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// An OSC string at the start of `bytes`: its content and the bytes after its padding.
fn osc_string(bytes: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let nul = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or("is not NUL-terminated (truncated packet)")?;
    let padded = (nul + 4) & !3;
    if padded > bytes.len() {
        return Err("padding is truncated (strings end on a 4-byte boundary)");
    }
    if bytes[nul..padded].iter().any(|&b| b != 0) {
        return Err("padding holds non-zero bytes");
    }
    Ok((&bytes[..nul], &bytes[padded..]))
}
