//! The OSC contract as data: every address, its arguments, whether it is asynchronous, its
//! reply, and its doc. Knob addresses (`/knob/<name>`) are one row here and are expanded per
//! knob by [`crate::Schema`]. Decoding, docs and client examples are all derived from this.
//!
//! Threading: static data; usable from any thread.

/// What an address does once decoded; [`crate::Schema`] routes concrete addresses to these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `/knob/<name>`: set (a number, optionally a glide time) or query (no argument).
    Knob,
    /// `/knobs`
    Knobs,
    /// `/prompt`
    Prompt,
    /// `/timbre`
    Timbre,
    /// `/timbre/clear`
    TimbreClear,
    /// `/structure`
    Structure,
    /// `/structure/clear`
    StructureClear,
    /// `/source`
    Source,
    /// `/loop`
    Loop,
    /// `/loop/clear`
    LoopClear,
    /// `/transport/play`
    Play,
    /// `/transport/pause`
    Pause,
    /// `/transport/seek`
    Seek,
    /// `/status`
    Status,
    /// `/notify`
    Notify,
    /// `/notify/meter`
    NotifyMeter,
    /// `/sync`
    Sync,
    /// `/version`
    Version,
    /// `/preset/save`
    PresetSave,
    /// `/preset/recall`
    PresetRecall,
    /// `/preset/list`
    PresetList,
    /// `/preset/delete`
    PresetDelete,
    /// `/preset/morph`
    PresetMorph,
    /// `/record/start`
    RecordStart,
    /// `/record/stop`
    RecordStop,
    /// `/midi/learn`
    MidiLearn,
    /// `/midi/map`
    MidiMap,
    /// `/midi/unmap`
    MidiUnmap,
    /// `/midi/maps`
    MidiMaps,
    /// `/capture/start`
    CaptureStart,
    /// `/capture/stop`
    CaptureStop,
}

/// How an argument is typed on the wire and which coercions apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgType {
    /// A number: `i`, `f`, `h` or `d` accepted, converted to f64; must be finite.
    Number,
    /// An `i` (int32) only.
    Int,
    /// An `s` (string) only.
    Str,
}

impl ArgType {
    /// The OSC type tag shown in docs (`f` for numbers: what clients should send).
    pub fn tag(self) -> char {
        match self {
            ArgType::Number => 'f',
            ArgType::Int => 'i',
            ArgType::Str => 's',
        }
    }
}

/// One argument of an address.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArgSpec {
    /// Name used in docs and in `/fail` reasons.
    pub name: &'static str,
    /// Wire type and coercion.
    pub ty: ArgType,
    /// May be omitted (only trailing arguments are optional).
    pub optional: bool,
    /// Unit (`""` when none).
    pub unit: &'static str,
    /// What it means and what is accepted.
    pub doc: &'static str,
}

/// Whether an address takes effect at once or reports completion later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// Takes effect before the next engine tick; no reply unless stated.
    Immediate,
    /// Takes effect later; `/done <address> ...` when it has.
    Asynchronous,
}

/// One row of the contract.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AddressSpec {
    /// The address; `/knob/<name>` stands for one address per knob.
    pub address: &'static str,
    /// Where decode routes it.
    pub route: Route,
    /// Arguments in order.
    pub args: &'static [ArgSpec],
    /// Immediate or asynchronous.
    pub timing: Timing,
    /// What the server sends back to the sender (and to subscribers, where stated).
    pub reply: &'static str,
    /// What it does.
    pub doc: &'static str,
}

const fn arg(name: &'static str, ty: ArgType, unit: &'static str, doc: &'static str) -> ArgSpec {
    ArgSpec {
        name,
        ty,
        optional: false,
        unit,
        doc,
    }
}

/// [`arg`], optional.
const fn optional(
    name: &'static str,
    ty: ArgType,
    unit: &'static str,
    doc: &'static str,
) -> ArgSpec {
    ArgSpec {
        optional: true,
        ..arg(name, ty, unit, doc)
    }
}

const PATH_DOC: &str = "WAV file inside the configured media folder, relative to it or absolute; \
                        paths that resolve outside it (`..`, symlinks) are refused. Checked \
                        before it is read (docs/operations.md, Limits, Files): a regular file \
                        of at most 4 GiB whose header claims at most 600 s, 1 to 8 channels \
                        and 8000 to 384000 Hz, with its data chunk complete; anything else is \
                        answered at once with `/fail <address> <reason>` naming the file and \
                        the limit";

const PRESET_NAME_DOC: &str = "the preset's name (see Presets for what a name may hold)";

const MIDI_TARGET_DOC: &str = "a knob's name (`prompt_blend` included) or an action (see MIDI)";
const MIDI_MIN_DOC: &str = "the knob's value at controller value 0, within its range (the \
                            knob's minimum by default; above `max` inverts the fader)";
const MIDI_MAX_DOC: &str = "the knob's value at controller value 127 (the knob's maximum by \
                            default)";
const MIDI_CURVE_DOC: &str = "shape from controller to knob value, a fade curve (see Presets; \
                              `linear` by default)";
const MIDI_MODE_DOC: &str = "`absolute` (the default), `pickup`, `relative` or \
                             `relative_offset` (see MIDI)";

/// The address space, in the order the reference lists it.
pub const ADDRESSES: &[AddressSpec] = &[
    AddressSpec {
        address: "/knob/<name>",
        route: Route::Knob,
        args: &[
            ArgSpec {
                name: "value",
                ty: ArgType::Number,
                optional: true,
                unit: "",
                doc: "new value within the knob's range (see the knob table); `i`, `f`, `h`, \
                      `d` accepted; integer knobs take an integral value; omit it to query",
            },
            ArgSpec {
                name: "glide_s",
                ty: ArgType::Number,
                optional: true,
                unit: "s",
                doc: "glide to the value over this time (0, the default: at once), linearly \
                      on the engine's frame clock; at most the longest fade (see Presets). \
                      An integer knob switches halfway through the glide",
            },
        ],
        timing: Timing::Immediate,
        reply: "set: none on success; subscribers receive `/knob/<name> <value>` (during a \
                glide, the passing values, at most every 20 ms, and the final one). \
                query (no argument): `/knob/<name> <value>`, the value sounding now \
                (mid-glide, the passing one)",
        doc: "Set or query one knob. Address patterns expand to several knobs \
              (`/knob/ch_g*` sets all eight channel gains). A set during a glide or fade \
              replaces it (a glide starts from the value passing now).",
    },
    AddressSpec {
        address: "/knobs",
        route: Route::Knobs,
        args: &[],
        timing: Timing::Immediate,
        reply: "a bundle of `/knob/<name> <value>`, one per knob",
        doc: "Query every knob at once.",
    },
    AddressSpec {
        address: "/prompt",
        route: Route::Prompt,
        args: &[
            arg("tags", ArgType::Str, "", "comma-separated style tags"),
            optional(
                "tags_b",
                ArgType::Str,
                "",
                "second prompt, blended in by the `prompt_blend` knob",
            ),
        ],
        timing: Timing::Asynchronous,
        reply: "`/done /prompt <epoch> [unknown]` once the prompt is encoded and committed (the \
                engine's next tick uses it), `unknown` (the words the model does not know, \
                space-separated) only when there are any; \
                subscribers receive `/prompt/applied <epoch> <tags>`",
        doc: "Replace the text conditioning. Encoding runs on the encoder thread; a newer \
              prompt supersedes an older one still encoding.",
    },
    AddressSpec {
        address: "/timbre",
        route: Route::Timbre,
        args: &[arg("path", ArgType::Str, "", PATH_DOC)],
        timing: Timing::Asynchronous,
        reply: "`/done /timbre <epoch>`",
        doc: "Use an audio file as timbre reference.",
    },
    AddressSpec {
        address: "/timbre/clear",
        route: Route::TimbreClear,
        args: &[],
        timing: Timing::Asynchronous,
        reply: "`/done /timbre/clear <epoch>`",
        doc: "Remove the timbre reference.",
    },
    AddressSpec {
        address: "/structure",
        route: Route::Structure,
        args: &[arg("path", ArgType::Str, "", PATH_DOC)],
        timing: Timing::Asynchronous,
        reply: "`/done /structure <epoch>`",
        doc: "Use an audio file as structure reference.",
    },
    AddressSpec {
        address: "/structure/clear",
        route: Route::StructureClear,
        args: &[],
        timing: Timing::Asynchronous,
        reply: "`/done /structure/clear <epoch>`",
        doc: "Remove the structure reference.",
    },
    AddressSpec {
        address: "/source",
        route: Route::Source,
        args: &[arg("path", ArgType::Str, "", PATH_DOC)],
        timing: Timing::Asynchronous,
        reply: "`/done /source`",
        doc: "Load a new source loop. One of another length (up to the 600 s file limit, at \
              least the engine's kept window plus the ring's guard) replaces the ring's loop \
              while playing: the new loop starts at its frame 0, crossfaded from the old over \
              10 ms; a `/loop` band that no longer fits is cleared, one that fits is kept; \
              paused stays paused. `/status` `loop_s` follows within a period.",
    },
    AddressSpec {
        address: "/loop",
        route: Route::Loop,
        args: &[
            arg("a_seconds", ArgType::Number, "s", "band start, >= 0"),
            arg(
                "b_seconds",
                ArgType::Number,
                "s",
                "band end, > a_seconds, <= loop length",
            ),
        ],
        timing: Timing::Immediate,
        reply: "none on success",
        doc: "Arm a loop band: the playhead wraps from B back to A.",
    },
    AddressSpec {
        address: "/loop/clear",
        route: Route::LoopClear,
        args: &[],
        timing: Timing::Immediate,
        reply: "none on success",
        doc: "Disarm the loop band.",
    },
    AddressSpec {
        address: "/transport/play",
        route: Route::Play,
        args: &[],
        timing: Timing::Immediate,
        reply: "none on success",
        doc: "Start (or resume) playback.",
    },
    AddressSpec {
        address: "/transport/pause",
        route: Route::Pause,
        args: &[],
        timing: Timing::Immediate,
        reply: "none on success",
        doc: "Pause playback (the output plays silence, the playhead holds).",
    },
    AddressSpec {
        address: "/transport/seek",
        route: Route::Seek,
        args: &[arg(
            "seconds",
            ArgType::Number,
            "s",
            "new playhead, >= 0, < loop length",
        )],
        timing: Timing::Immediate,
        reply: "none on success",
        doc: "Move the playhead.",
    },
    AddressSpec {
        address: "/preset/save",
        route: Route::PresetSave,
        args: &[arg("name", ArgType::Str, "", PRESET_NAME_DOC)],
        timing: Timing::Asynchronous,
        reply: "`/done /preset/save <name>` once the file is written; `/fail /preset/save \
                <reason>` when it cannot be (the file is left as it was)",
        doc: "Save the knobs (their target values, also mid-fade) and the prompts as a preset \
              file (docs/operations.md, Presets), replacing one of the same name. Recall, \
              morph and list see it from the `/done` on (send `/sync` to wait).",
    },
    AddressSpec {
        address: "/preset/recall",
        route: Route::PresetRecall,
        args: &[
            arg("name", ArgType::Str, "", "a saved preset"),
            ArgSpec {
                name: "fade_s",
                ty: ArgType::Number,
                optional: true,
                unit: "s",
                doc: "fade length, 0 (the default: at once) up to the longest fade (see \
                      Presets)",
            },
            optional(
                "curve",
                ArgType::Str,
                "",
                "shape of the fade (see Presets; `linear` by default)",
            ),
        ],
        timing: Timing::Immediate,
        reply: "none on success; subscribers receive the knob echoes (during the fade, the \
                passing values, at most every 20 ms, and the final ones); a prompt change \
                answers as `/prompt` does (`/done /prompt <epoch>`, `/prompt/applied`)",
        doc: "Recall a preset. Float knobs ramp from the values sounding now to the preset's \
              over `fade_s`, on the engine's frame clock (the audio output's frames played): \
              each engine tick uses the values of its frame. Integer knobs switch halfway \
              through the fade. A preset with another prompt crossfades through \
              `prompt_blend`: the prompt pair becomes (the current prompt, the preset's \
              prompt) and `prompt_blend` ramps from 0 to 1 (with no fade, or no current \
              prompt, the preset's prompts replace the pair and its `prompt_blend` applies). \
              Knobs the preset lacks keep their values. In a timed bundle the fade starts at \
              the timetag.",
    },
    AddressSpec {
        address: "/preset/list",
        route: Route::PresetList,
        args: &[],
        timing: Timing::Immediate,
        reply: "`/preset/list.reply s name...`, the saved presets in name order (none: no \
                arguments)",
        doc: "List the saved presets.",
    },
    AddressSpec {
        address: "/preset/delete",
        route: Route::PresetDelete,
        args: &[arg("name", ArgType::Str, "", "a saved preset")],
        timing: Timing::Asynchronous,
        reply: "`/done /preset/delete <name>` once the file is removed",
        doc: "Delete a preset and its file.",
    },
    AddressSpec {
        address: "/preset/morph",
        route: Route::PresetMorph,
        args: &[
            arg("a", ArgType::Str, "", "a saved preset (at x = 0)"),
            arg("b", ArgType::Str, "", "a saved preset (at x = 1)"),
            arg("x", ArgType::Number, "", "position between them, 0 to 1"),
        ],
        timing: Timing::Immediate,
        reply: "none on success; subscribers receive the knob echoes",
        doc: "An XY pad between two presets: every float knob both hold is set to \
              `a + (b - a) * x`; integer knobs take `a`'s value below x = 0.5 and `b`'s from \
              0.5 on (the fade's halfway rule). Knobs only one of them holds, and the \
              prompts, are left as they are. It sets at once and replaces a running fade \
              of the knobs it sets; send it as often as the pad moves.",
    },
    AddressSpec {
        address: "/record/start",
        route: Route::RecordStart,
        args: &[ArgSpec {
            name: "file",
            ty: ArgType::Str,
            optional: true,
            unit: "",
            doc: "the file to create, a name relative to the media folder (subfolders that \
                  exist are allowed) ending in `.wav`; no absolute path, no `..`, no hidden \
                  component, at most 255 bytes, and no file of that name may exist. \
                  Omitted: `latentd-YYYYMMDD-HHMMSS.wav` (UTC) in the media folder",
        }],
        timing: Timing::Immediate,
        reply: "`/done /record/start <file>` once the file is created and the recording \
                runs; `/fail /record/start <reason>` for a bad or taken name, a recording \
                already running, or a file that cannot be created (nothing changes)",
        doc: "Record what the output plays (32-bit float WAV at the output's rate and \
              channels, as played, after the fade and the rate conversion) until \
              `/record/stop`. The writing runs on its own thread, never in the audio \
              callback. Every `[record] split_s` seconds (default 3600: hourly) the \
              recording rolls over to a new file, `<name>-2.wav`, `<name>-3.wav`, ..., each \
              a complete WAV, with no frame lost or repeated between them. A write that \
              fails (a full disk) stops the recording, keeps the file valid up to the last \
              whole frame written and raises the `record` alarm (docs/operations.md, \
              Recording); the audio plays on.",
    },
    AddressSpec {
        address: "/record/stop",
        route: Route::RecordStop,
        args: &[],
        timing: Timing::Immediate,
        reply: "`/done /record/stop <file> <seconds>` (`file`: the last part written, \
                `seconds`: the whole recording's length, all parts, as `f`); `/fail \
                /record/stop <reason>` when nothing is recording",
        doc: "Stop the recording and complete its file.",
    },
    AddressSpec {
        address: "/capture/start",
        route: Route::CaptureStart,
        args: &[
            optional(
                "seconds",
                ArgType::Number,
                "s",
                "longest capture, above 0 and at most 600; omitted: the loop's length",
            ),
            ArgSpec {
                name: "quantize",
                ty: ArgType::Int,
                optional: true,
                unit: "",
                doc: "1: start (and end, on `/capture/stop`) at the loop's wrap; 0 (the \
                      default): start now",
            },
        ],
        timing: Timing::Asynchronous,
        reply: "`/done /capture/start` once the capture is armed; when it ends (`seconds` \
                captured, or `/capture/stop`), the captured audio goes through the `/source` \
                path: `/done /source [file]` (`file`: the WAV saved under `[capture] save`, \
                when set) or `/fail /source <reason>`. `/fail /capture/start <reason>` when \
                the daemon has no input ports (`audio.inputs = 0`, or an output without \
                inputs), a capture is already running, or `seconds` is out of range \
                (nothing changes)",
        doc: "Capture the input ports (`audio.inputs`, JACK's `in_1 .. in_N`) and make \
              the capture the new source, as `/source` does with a file. The capture is \
              compensated for latency: its first `capture + playback` latency frames (the \
              input ports' capture latency range and the output's playback latency, as the \
              server reports them) are dropped, so what a player plays along with the loop \
              lines up with it. With `quantize` 1 the capture starts at the next loop wrap \
              (the loop band's end when one is set). The copy from the audio callback is \
              lock- and allocation-free; periods lost because the control side fell behind \
              are filled with silence and logged.",
    },
    AddressSpec {
        address: "/capture/stop",
        route: Route::CaptureStop,
        args: &[],
        timing: Timing::Immediate,
        reply: "`/done /capture/stop`; `/fail /capture/stop <reason>` when no capture runs",
        doc: "End the running capture now (a quantized one at the next loop wrap); its audio \
              becomes the source as `/capture/start` says. A capture stopped before it began \
              (still waiting for the wrap) ends with `/fail /source <reason>`.",
    },
    AddressSpec {
        address: "/status",
        route: Route::Status,
        args: &[],
        timing: Timing::Immediate,
        reply: "`/status.reply s backend, i sample_rate, i period_frames, f playhead_s, \
                f loop_s, f ticks_per_s, f tick_ms_p50, f lead_s, i xruns, i late_landings, \
                f last_knob_to_ear_ms, i engine_restarts, s output, i output_reconnects, \
                f peak_dbfs_1, f rms_dbfs_1, f peak_dbfs_2, f rms_dbfs_2, s inert_knobs, \
                f output_latency_ms, i callback_realtime` (`last_knob_to_ear_ms` is -1 until \
                measured)",
        doc: "Report engine and output health. `sample_rate` is the engine's and the loop's \
              rate (48000 for the built-in model), the one `playhead_s` and `loop_s` are \
              counted in; `period_frames` is the output's period. An output at another rate \
              (a JACK server at 44.1 kHz) is fed through a rate converter in the audio \
              callback; the daemon's log names both rates at start. `engine_restarts` counts \
              the engine's pipeline restarts, each after a failed (panicking) tick that the \
              engine caught while the loop kept playing; the log names each. `output` is \
              `running`, `lost` (its audio server went away; the engine keeps its state) or \
              `reconnecting` (attempts to reopen it have failed so far; they go on with \
              backoff); `output_reconnects` counts its returns. Then the output's levels \
              over its last period, per channel (`_1` is `out_1`, the left): peak and RMS \
              in dBFS, -120 for silence (as `/meter`). `inert_knobs` names, comma-separated, \
              the knobs the playing model cannot honour (setting one is accepted and changes \
              nothing; e.g. `guidance` for a bundle without classifier-free guidance, \
              docs/bundles.md); empty for the built-in model. OSCQuery tags the same knobs \
              `inert`. `output_latency_ms` is the output's latency to the listener as its \
              audio server reports it: for JACK the playback latency range of latentd's \
              ports (its period plus all that lies downstream, a netjack2 hop included, \
              docs/operations.md), for PipeWire and the null output the period; add it to \
              a knob-to-ear figure measured at the ports to get the figure at the ear. \
              `callback_realtime` is 1 when the audio callback's thread runs with realtime \
              scheduling (`SCHED_FIFO` / `SCHED_RR`), 0 when it does not (expect xruns \
              under load: docs/operations.md, Realtime), -1 until checked; it is checked \
              once per output started (also `latentd_callback_realtime` in `/metrics`). \
              Subscribers \
              (`/notify`) are pushed a `/status.reply` whenever `backend`, `output` or \
              `engine_restarts` changes.",
    },
    AddressSpec {
        address: "/notify",
        route: Route::Notify,
        args: &[arg(
            "on",
            ArgType::Int,
            "",
            "1 subscribes the sender to pushes, 0 unsubscribes",
        )],
        timing: Timing::Asynchronous,
        reply: "`/done /notify`; `/fail /notify` when the subscriber list is full",
        doc: "Subscribe to pushes: knob echoes, `/prompt/applied`, `/alarm`, \
              `/schedule/fired`, `/midi/learned`, and a \
              `/status.reply` whenever the engine backend, the output's state or the engine \
              restarts change.",
    },
    AddressSpec {
        address: "/notify/meter",
        route: Route::NotifyMeter,
        args: &[arg(
            "hz",
            ArgType::Number,
            "Hz",
            "pushes per second, 0 (stop) or 1 to 30",
        )],
        timing: Timing::Asynchronous,
        reply: "`/done /notify/meter`; then `/meter f peak_dbfs_1, f rms_dbfs_1, \
                f peak_dbfs_2, f rms_dbfs_2` `hz` times a second; `/fail /notify/meter` when \
                the subscriber list is full",
        doc: "Subscribe the sender to level meters: the output's peak and RMS per channel \
              over its last period (a period is a few ms; `_1` is `out_1`, the left), in \
              dBFS, -120 for silence. Independent of `/notify`: a client may take meters, \
              the other pushes, or both; both count once against the subscriber list and \
              share its UDP lease (renewed by either address). `0` stops the meters.",
    },
    AddressSpec {
        address: "/sync",
        route: Route::Sync,
        args: &[arg("id", ArgType::Int, "", "any int, echoed back")],
        timing: Timing::Asynchronous,
        reply: "`/synced <id>` once every earlier asynchronous command has completed",
        doc: "Wait for earlier asynchronous commands.",
    },
    AddressSpec {
        address: "/version",
        route: Route::Version,
        args: &[],
        timing: Timing::Immediate,
        reply: "`/version.reply s name, s version`",
        doc: "Report the server's name and version.",
    },
    AddressSpec {
        address: "/midi/learn",
        route: Route::MidiLearn,
        args: &[
            arg("target", ArgType::Str, "", MIDI_TARGET_DOC),
            optional("min", ArgType::Number, "", MIDI_MIN_DOC),
            optional("max", ArgType::Number, "", MIDI_MAX_DOC),
            optional("curve", ArgType::Str, "", MIDI_CURVE_DOC),
            optional("mode", ArgType::Str, "", MIDI_MODE_DOC),
        ],
        timing: Timing::Asynchronous,
        reply: "`/midi/learned i channel, i cc, s target` to the sender and to the subscribers \
                once a controller moves (the map is in place from then on, replacing one on \
                that controller); `/fail /midi/learn <reason>` at once when MIDI input is off, \
                or later when a newer `/midi/learn` takes its place",
        doc: "Bind the next controller (CC) moved on any channel to a target: MIDI learn. \
              The value that completes the learn is not applied. One learn waits at a time.",
    },
    AddressSpec {
        address: "/midi/map",
        route: Route::MidiMap,
        args: &[
            arg("channel", ArgType::Number, "", "MIDI channel, 1 to 16"),
            arg("cc", ArgType::Number, "", "controller number, 0 to 127"),
            arg("target", ArgType::Str, "", MIDI_TARGET_DOC),
            optional("min", ArgType::Number, "", MIDI_MIN_DOC),
            optional("max", ArgType::Number, "", MIDI_MAX_DOC),
            optional("curve", ArgType::Str, "", MIDI_CURVE_DOC),
            optional("mode", ArgType::Str, "", MIDI_MODE_DOC),
        ],
        timing: Timing::Immediate,
        reply: "none on success; `/fail /midi/map <reason>` for an unknown target, a channel \
                or controller out of range, a bound outside the knob's range or a full map \
                table (nothing changes)",
        doc: "Map a controller to a target (see MIDI), replacing the map on that channel and \
              controller. Maps are saved with the session.",
    },
    AddressSpec {
        address: "/midi/unmap",
        route: Route::MidiUnmap,
        args: &[
            arg("channel", ArgType::Number, "", "MIDI channel, 1 to 16"),
            arg("cc", ArgType::Number, "", "controller number, 0 to 127"),
        ],
        timing: Timing::Immediate,
        reply: "none on success; `/fail /midi/unmap <reason>` when nothing is mapped there",
        doc: "Remove a controller's map.",
    },
    AddressSpec {
        address: "/midi/maps",
        route: Route::MidiMaps,
        args: &[],
        timing: Timing::Immediate,
        reply: "a bundle of `/midi/map i channel, i cc, s target, f min, f max, s curve, \
                s mode`, one per map in channel and controller order (the messages that \
                would make them again); an empty bundle when there are none",
        doc: "List the MIDI maps.",
    },
];

/// Pushes the server sends to subscribers (after `/notify 1`), for docs and clients.
pub const PUSHES: &[(&str, &str)] = &[
    (
        "/knob/<name> <value>",
        "a knob changed (from any client, a MIDI controller, a preset recall or morph), or \
         moved during a glide \
         or a preset fade (the passing values, at most every 20 ms, then the final one)",
    ),
    (
        "/prompt/applied i epoch, s tags",
        "the engine started using a prompt",
    ),
    (
        "/status.reply ...",
        "status changed: the engine backend, the output's state or the engine's restart count",
    ),
    (
        "/alarm s kind, i raised, s detail",
        "a health alarm (`silence`, `clip`) was raised (1) or cleared (0), `detail` saying \
         what was measured against which threshold (docs/operations.md, Health); or the \
         `record` alarm: a recording stopped because its file could not be written (a full \
         disk), cleared by the next recording that starts",
    ),
    (
        "/schedule/fired s at, s action",
        "a `[[schedule]]` cue of the daemon's config ran at its time of day `at` (`HH:MM`, \
         local time); `action` says what it did, e.g. `preset night (fade 30 s, linear)` \
         (docs/operations.md, Schedules)",
    ),
    (
        "/midi/learned i channel, i cc, s target",
        "a `/midi/learn` bound a controller (from any client)",
    ),
    (
        "/meter f peak_dbfs_1, f rms_dbfs_1, f peak_dbfs_2, f rms_dbfs_2",
        "levels, at the rate asked with `/notify/meter <hz>` (only to those clients)",
    ),
];

/// Look up the row for a route.
pub fn spec(route: Route) -> &'static AddressSpec {
    ADDRESSES
        .iter()
        .find(|s| s.route == route)
        .expect("every route has a row in ADDRESSES")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::METER_MAX_HZ;
    use crate::reply::{Level, level_arg_names};

    /// The prose of the meter rows names the limits and the level arguments declared in
    /// code; this keeps them from drifting apart.
    #[test]
    fn meter_docs_name_the_declared_limits_and_arguments() {
        let meter = spec(Route::NotifyMeter);
        assert!(
            meter.args[0]
                .doc
                .contains(&format!("1 to {}", METER_MAX_HZ as u32))
        );
        let floor = format!("{} for silence", Level::FLOOR_DBFS);
        let status = spec(Route::Status);
        for text in [meter.doc, status.doc] {
            assert!(text.contains(&floor), "{text}");
        }
        let levels = level_arg_names()
            .iter()
            .map(|n| format!("f {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        assert!(status.reply.contains(&levels), "{}", status.reply);
        assert!(meter.reply.contains(&levels), "{}", meter.reply);
        assert!(PUSHES.iter().any(|(p, _)| *p == format!("/meter {levels}")));
    }
}
