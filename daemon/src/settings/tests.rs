//! Command line and config file: merging, precedence and one-line errors, with real files.

use super::*;
use crate::osc::Cidr;

fn config_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("latentd-cli-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

fn run(args: &[&str]) -> Result<Settings, String> {
    let argv = std::iter::once("latentd").chain(args.iter().copied());
    match parse_args(argv) {
        Ok(Invocation::Run(s)) => Ok(*s),
        Ok(Invocation::Print(text)) => panic!("printed {text}"),
        Ok(Invocation::CheckConfig(_)) => panic!("checked"),
        Err(e) => Err(e.0),
    }
}

#[test]
fn defaults_without_flags_or_file() {
    let s = run(&[]).unwrap();
    assert_eq!(s.source, None);
    assert_eq!(s.backend, BackendChoice::Auto);
    assert_eq!(s.client_name, "latentd");
    assert!(!s.autoconnect);
    assert_eq!((s.sample_rate, s.period_frames), (48_000, 256));
    assert_eq!(s.loop_seconds, 60.0);
    assert_eq!(s.record, None);
    assert_eq!(s.log_level, LogLevel::Info);
    assert_eq!(s.log_target, LogTarget::Auto);
    assert_eq!(s.osc_bind, SocketAddr::from(([127, 0, 0, 1], 7770)));
    assert_eq!(s.oscquery_port, 7771);
    assert_eq!(s.advertise, crate::discovery::Advertise::Auto);
    assert_eq!(s.media_folder, std::env::current_dir().unwrap());
    assert_eq!((s.prompt.clone(), s.prompt_b.clone()), (None, None));
    assert!(s.knobs.is_empty());
    assert_eq!(s.lead, LeadConfig::default());
    assert_eq!(s.health, crate::health::HealthConfig::default());
}

#[test]
fn engine_osc_lead_and_state_keys_are_read_and_overridden() {
    let path = config_file(
        "engine",
        "[osc]\nbind = \"0.0.0.0:9000\"\nallowlist = [\"10.0.0.0/8\"]\noscquery_port = 0\n\
         advertise = \"false\"\n[media]\nfolder = \"/srv/m\"\n[engine]\nprompt = \"dark slow\"\n\
         knobs = { denoise = 0.25, steps = 6.0 }\n[lead]\ngain = 2.0\n\
         [state]\npath = \"/tmp/s.json\"\n[log]\ntarget = \"stderr\"\n",
    );
    let p = path.to_str().unwrap();
    let s = run(&["--config", p, "--knob", "denoise=0.75", "--no-repatch"]).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(s.osc_bind.to_string(), "0.0.0.0:9000");
    assert_eq!(s.osc_allow, vec!["10.0.0.0/8".parse::<Cidr>().unwrap()]);
    assert_eq!(s.oscquery_port, 0);
    assert_eq!(s.advertise, crate::discovery::Advertise::Off);
    assert_eq!(s.media_folder, PathBuf::from("/srv/m"));
    assert_eq!(s.prompt.as_deref(), Some("dark slow"));
    assert_eq!(
        s.knobs,
        vec![
            (KnobId::from_name("steps").unwrap(), 6.0),
            (KnobId::from_name("denoise").unwrap(), 0.75)
        ]
    );
    assert_eq!(s.lead.gain, 2.0);
    assert!(!s.lead.repatch);
    assert_eq!(s.state_path, PathBuf::from("/tmp/s.json"));
    assert_eq!(s.log_target, LogTarget::Stderr);
}

#[test]
fn bad_engine_and_osc_values_name_the_key_and_what_is_accepted() {
    for (text, wants) in [
        ("[osc]\nbind = \"localhost\"\n", "osc.bind"),
        ("[osc]\nallowlist = [\"ten/8\"]\n", "CIDR"),
        (
            "[engine]\nknobs = { loudness = 1.0 }\n",
            "unknown knob \"loudness\"",
        ),
        (
            "[engine]\nknobs = { denoise = 3.0 }\n",
            "engine.knobs.denoise",
        ),
        ("[lead]\nfloor_s = 2.0\n", "[lead]"),
        (
            "[health]\nsilence_s = -1\n",
            "config section [health]: silence_s = -1: expected seconds above 0",
        ),
        (
            "[health]\nclip_dbfs = 1.5\n",
            "config section [health]: clip_dbfs = 1.5: expected -40 to 0 dBFS",
        ),
        ("[health]\naction = \"reboot\"\n", "reboot"),
        ("[health]\nsilence = 3\n", "silence"),
        ("[log]\ntarget = \"syslog\"\n", "auto, journal or stderr"),
    ] {
        let path = config_file("bad-engine", text);
        let err = run(&["--config", path.to_str().unwrap()]).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(!err.contains('\n'), "{err}");
        assert!(err.contains(wants), "{text:?}: {err}");
    }
    let err = run(&["--knob", "denoise"]).unwrap_err();
    assert!(err.contains("NAME=NUMBER"), "{err}");
    let err = run(&["--knob", "seed=-1"]).unwrap_err();
    assert!(err.contains("--knob seed"), "{err}");
}

#[test]
fn flags_override_the_file() {
    let path = config_file(
        "override",
        "[audio]\nbackend = \"jack\"\nrate = 44100\nperiod = 512\nclient_name = \"file\"\n\
         autoconnect = true\n[source]\nfile = \"a.wav\"\nloop_seconds = 4.5\n\
         [record]\nfile = \"r.wav\"\n[log]\nlevel = \"debug\"\n",
    );
    let p = path.to_str().unwrap();
    let from_file = run(&["--config", p]).unwrap();
    assert_eq!(from_file.backend, BackendChoice::Jack);
    assert_eq!(
        (from_file.sample_rate, from_file.period_frames),
        (44_100, 512)
    );
    assert_eq!(from_file.client_name, "file");
    assert!(from_file.autoconnect);
    assert_eq!(from_file.source, Some(PathBuf::from("a.wav")));
    assert_eq!(from_file.loop_seconds, 4.5);
    assert_eq!(from_file.record, Some(PathBuf::from("r.wav")));
    assert_eq!(from_file.log_level, LogLevel::Debug);

    let s = run(&[
        "--config",
        p,
        "--audio",
        "null",
        "--rate",
        "96000",
        "--period",
        "64",
        "--client-name",
        "flag",
        "--source",
        "b.wav",
        "--log-level",
        "warn",
    ])
    .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(s.backend, BackendChoice::Null);
    assert_eq!((s.sample_rate, s.period_frames), (96_000, 64));
    assert_eq!(s.client_name, "flag");
    assert_eq!(s.source, Some(PathBuf::from("b.wav")));
    assert_eq!(s.log_level, LogLevel::Warn);
    assert_eq!(s.record, Some(PathBuf::from("r.wav")));
}

#[test]
fn unknown_backend_flag_is_one_line_with_the_accepted_values() {
    let err = run(&["--audio", "alsa"]).unwrap_err();
    assert!(!err.contains('\n'), "{err}");
    assert!(err.contains("'alsa'") && err.contains("--audio"), "{err}");
    assert!(err.contains("auto, jack, pipewire, null"), "{err}");
}

#[test]
fn unknown_config_key_names_the_key_line_and_the_accepted_keys() {
    let path = config_file("unknown", "[audio]\nrate = 48000\nbuffer = 64\n");
    let err = run(&["--config", path.to_str().unwrap()]).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(!err.contains('\n'), "{err}");
    assert!(err.contains("line 3: `buffer = 64`"), "{err}");
    assert!(err.contains("unknown field `buffer`"), "{err}");
    assert!(err.contains("`period`"), "{err}");
}

#[test]
fn wrong_type_and_bad_variant_in_config_name_the_line() {
    let path = config_file("type", "[audio]\nrate = \"fast\"\n");
    let err = run(&["--config", path.to_str().unwrap()]).unwrap_err();
    assert!(
        err.contains("line 2: `rate = \"fast\"`") && err.contains("u32"),
        "{err}"
    );

    let path2 = config_file("variant", "[audio]\nbackend = \"alsa\"\n");
    let err = run(&["--config", path2.to_str().unwrap()]).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_file(&path2).unwrap();
    assert!(err.contains("`backend = \"alsa\"`"), "{err}");
    assert!(err.contains("`auto`, `jack`, `pipewire`"), "{err}");
}

#[test]
fn out_of_range_values_name_where_they_came_from() {
    let path = config_file("range", "[audio]\nperiod = 5\n");
    let err = run(&["--config", path.to_str().unwrap()]).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        err,
        "config key audio.period = 5: expected 16..=8192 frames"
    );
    assert_eq!(
        run(&["--rate", "0"]).unwrap_err(),
        "--rate = 0: expected 8000..=384000 Hz"
    );
    assert_eq!(
        run(&["--loop-seconds", "-1"]).unwrap_err(),
        "--loop-seconds = -1: expected seconds above 0 and at most 600"
    );
    assert_eq!(
        run(&["--client-name", "a:b"]).unwrap_err(),
        "--client-name = \"a:b\": expected 1 to 63 bytes without ':'"
    );
}

#[test]
fn missing_config_file_is_named() {
    let err = run(&["--config", "/nonexistent/latentd.toml"]).unwrap_err();
    assert!(
        err.starts_with("config /nonexistent/latentd.toml: "),
        "{err}"
    );
}

#[test]
fn osc_advertise_takes_auto_true_false_or_a_boolean() {
    use crate::discovery::Advertise;
    for (value, expected) in [
        ("\"auto\"", Some(Advertise::Auto)),
        ("\"true\"", Some(Advertise::On)),
        ("false", Some(Advertise::Off)),
        ("true", Some(Advertise::On)),
        ("\"always\"", None),
    ] {
        let path = config_file("advertise", &format!("[osc]\nadvertise = {value}\n"));
        let got = run(&["--config", path.to_str().unwrap()]);
        std::fs::remove_file(&path).unwrap();
        match expected {
            Some(mode) => assert_eq!(got.unwrap().advertise, mode, "{value}"),
            None => {
                let e = got.unwrap_err();
                assert!(e.contains("osc.advertise") && e.contains("always"), "{e}");
            }
        }
    }
}

#[test]
fn midi_keys_are_read_checked_and_printed_back() {
    let path = config_file(
        "midi",
        "[midi]\nenabled = true\n[[midi.map]]\nchannel = 1\ncc = 74\ntarget = \"denoise\"\n\
         mode = \"pickup\"\n[[midi.map]]\nchannel = 16\ncc = 0\ntarget = \"preset/next\"\n",
    );
    let s = run(&["--config", path.to_str().unwrap()]).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(s.midi);
    assert_eq!(s.midi_maps.len(), 2);
    assert_eq!(s.midi_maps[0].mode.as_deref(), Some("pickup"));
    // check-config's output reads back to the same maps (its [midi] part: an unset prompt
    // prints as "", which reads back as a refused blank prompt).
    let toml = s.to_toml();
    let midi = &toml[toml.find("\n[midi]").unwrap()..];
    let midi = &midi[..midi.find("[[schedule]]").unwrap_or(midi.len())];
    let printed = config_file("midi-printed", midi.trim_end_matches("# "));
    let again = run(&["--config", printed.to_str().unwrap()]);
    std::fs::remove_file(&printed).unwrap();
    let again = again.unwrap_or_else(|e| panic!("{e}\n{}", s.to_toml()));
    assert_eq!(again.midi_maps, s.midi_maps);
    assert!(!run(&[]).unwrap().midi, "off by default");
    assert!(run(&["--midi"]).unwrap().midi);
    for (text, why) in [
        (
            "[[midi.map]]\nchannel = 1\ncc = 128\ntarget = \"denoise\"\n",
            "config [[midi.map]]: MIDI map (channel 1, cc 128, target \"denoise\"): a \
             controller (CC) number is an integer 0 to 127; got 128",
        ),
        (
            "[[midi.map]]\nchannel = 1\ncc = 1\ntarget = \"volume\"\n",
            "unknown target \"volume\"",
        ),
        (
            "[[midi.map]]\nchannel = 1\ncc = 1\ntarget = \"denoise\"\n\
             [[midi.map]]\nchannel = 1\ncc = 1\ntarget = \"shift\"\n",
            "channel 1 cc 1 is mapped twice",
        ),
        (
            "[[midi.map]]\nchannel = 1\ncc = 1\ntarget = \"denoise\"\nspeed = 2\n",
            "unknown field `speed`",
        ),
    ] {
        let path = config_file("midi-bad", text);
        let err = run(&["--config", path.to_str().unwrap()]).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(err.contains(why), "{err}");
    }
}

#[test]
fn input_ports_and_the_capture_folder_come_from_the_file_or_the_flag() {
    let s = run(&[]).unwrap();
    assert_eq!((s.inputs, s.capture_save.clone()), (0, None));
    let path = config_file(
        "capture",
        "[audio]\ninputs = 2\n[capture]\nsave = \"/srv/captures\"\n",
    );
    let s = run(&["--config", path.to_str().unwrap()]).unwrap();
    assert_eq!(s.inputs, 2);
    assert_eq!(s.capture_save, Some(PathBuf::from("/srv/captures")));
    assert_eq!(
        run(&["--config", path.to_str().unwrap(), "--inputs", "1"])
            .unwrap()
            .inputs,
        1
    );
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        run(&["--inputs", "9"]).unwrap_err(),
        "--inputs = 9: expected 0..=8 input ports"
    );
}

/// The example config file of [`crate::config`]'s module doc, as TOML.
fn documented_config() -> String {
    let source = include_str!("../config.rs");
    let doc: String = source
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect();
    let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = start + doc[start..].find("```").expect("its end");
    doc[start..end].to_owned()
}

#[test]
fn the_documented_config_parses_and_shows_the_real_defaults_and_choices() {
    let text = documented_config();
    let file: ConfigFile = toml::from_str(&text).expect("the documented config parses");
    assert_eq!(file.audio.backend, Some(DEFAULT_BACKEND));
    assert_eq!(file.audio.client_name.as_deref(), Some(DEFAULT_CLIENT_NAME));
    assert_eq!(file.audio.rate, Some(DEFAULT_RATE));
    assert_eq!(file.audio.period, Some(DEFAULT_PERIOD));
    assert_eq!(file.audio.inputs, Some(DEFAULT_INPUTS));
    assert_eq!(file.source.loop_seconds, Some(DEFAULT_LOOP_SECONDS));
    assert_eq!(file.osc.bind, Some(DEFAULT_BIND.to_string()));
    assert_eq!(file.osc.oscquery_port, Some(DEFAULT_OSCQUERY_PORT));
    assert_eq!(file.engine.backend, Some(DEFAULT_ENGINE));
    assert_eq!(file.model.threads, Some(DEFAULT_MODEL_THREADS));
    assert_eq!(file.log.level, Some(DEFAULT_LEVEL));
    assert_eq!(
        DEFAULT_BIND.ip().to_string(),
        latentd_osc_schema::generate::DEFAULT_HOST
    );
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} line"))
            .to_owned()
    };
    // `backend` appears under [audio] first, then under [engine].
    let audio = line("backend");
    for name in BackendChoice::ACCEPTED.split(", ") {
        assert!(
            audio.contains(name),
            "[audio] backend omits {name}: {audio}"
        );
    }
    let engine = text
        .lines()
        .filter(|l| l.starts_with("backend = "))
        .nth(1)
        .expect("[engine] backend");
    for choice in <EngineChoice as clap::ValueEnum>::value_variants() {
        assert!(
            engine.contains(choice.as_str()),
            "[engine] backend omits {}: {engine}",
            choice.as_str()
        );
    }
}

#[test]
fn help_shows_the_defaults_the_merge_applies() {
    let argv = ["latentd", "--help"];
    let Ok(Invocation::Print(help)) = parse_args(argv) else {
        panic!("--help prints");
    };
    for (flag, default) in [
        ("--loop-seconds", DEFAULT_LOOP_SECONDS.to_string()),
        ("--rate", DEFAULT_RATE.to_string()),
        ("--period", DEFAULT_PERIOD.to_string()),
        ("--client-name", DEFAULT_CLIENT_NAME.to_string()),
        ("--osc", DEFAULT_BIND.to_string()),
        ("--oscquery-port", DEFAULT_OSCQUERY_PORT.to_string()),
        ("--engine", DEFAULT_ENGINE.as_str().to_string()),
        ("--log-level", DEFAULT_LEVEL.as_str().to_string()),
        ("--inputs", DEFAULT_INPUTS.to_string()),
    ] {
        let start = help
            .find(&format!("      {flag} <"))
            .unwrap_or_else(|| panic!("{flag} in --help"));
        let entry = &help[start..];
        let entry = &entry[..entry[1..].find("\n      --").map_or(entry.len(), |i| i + 1)];
        assert!(
            entry.contains(&format!("[default: {default}]")),
            "{flag} shows [default: {default}]: {entry}"
        );
    }
    assert!(!help.contains("test loop"), "{help}");
    // The merge's defaults are the ones shown.
    let s = run(&[]).unwrap();
    assert_eq!(s.loop_seconds, DEFAULT_LOOP_SECONDS);
    assert_eq!(s.oscquery_port, DEFAULT_OSCQUERY_PORT);
    assert_eq!(s.osc_bind, DEFAULT_BIND);
}

#[test]
fn a_bundle_from_the_file_or_the_flag_picks_the_bundle_engine_unless_one_is_named() {
    let with_bundle = config_file("bundle", "[model]\nbundle = \"/srv/models/gm\"\n");
    let file = with_bundle.to_str().unwrap();
    let s = run(&["--config", file]).unwrap();
    assert_eq!(s.engine, EngineChoice::Bundle);
    assert_eq!(s.model.bundle.as_deref(), Some(Path::new("/srv/models/gm")));
    let s = run(&["--config", file, "--engine", "builtin-cpu"]).unwrap();
    assert_eq!(s.engine, EngineChoice::BuiltinCpu);

    let named = config_file(
        "bundle-named",
        "[engine]\nbackend = \"builtin-cpu\"\n[model]\nbundle = \"/srv/models/gm\"\n",
    );
    let s = run(&["--config", named.to_str().unwrap()]).unwrap();
    assert_eq!(s.engine, EngineChoice::BuiltinCpu);
    // The flag names the bundle: it wins over the file's engine.
    let s = run(&[
        "--config",
        named.to_str().unwrap(),
        "--model",
        "/srv/models/other",
    ])
    .unwrap();
    assert_eq!(s.engine, EngineChoice::Bundle);
    assert_eq!(
        s.model.bundle.as_deref(),
        Some(Path::new("/srv/models/other"))
    );

    assert_eq!(run(&[]).unwrap().engine, DEFAULT_ENGINE);
}
