//! Decode and validation: every row of the contract, patterns, bundles, and the bad-input
//! table (each case yields a precise `/fail`).

use latentd_osc_schema::rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType, encoder};
use latentd_osc_schema::{Command, Fail, MediaRoot, Schema, When, reference_knobs};

fn schema() -> Schema {
    Schema::new(reference_knobs()).unwrap()
}

fn msg(addr: &str, args: Vec<OscType>) -> Vec<u8> {
    encoder::encode(&OscPacket::Message(OscMessage {
        addr: addr.into(),
        args,
    }))
    .unwrap()
}

fn bundle(time: (u32, u32), content: Vec<OscPacket>) -> Vec<u8> {
    encoder::encode(&OscPacket::Bundle(OscBundle {
        timetag: OscTime::from(time),
        content,
    }))
    .unwrap()
}

fn m(addr: &str, args: Vec<OscType>) -> OscPacket {
    OscPacket::Message(OscMessage {
        addr: addr.into(),
        args,
    })
}

fn one(s: &Schema, packet: &[u8]) -> Command {
    let decoded = s.decode(packet).unwrap();
    assert_eq!(decoded.when, When::Immediately);
    assert_eq!(decoded.value.len(), 1);
    decoded.value.into_iter().next().unwrap()
}

fn fail(s: &Schema, packet: &[u8]) -> Fail {
    s.decode(packet).expect_err("packet must be rejected")
}

#[test]
fn every_row_decodes() {
    let s = schema();
    use OscType::*;
    assert_eq!(
        one(&s, &msg("/knob/denoise", vec![Float(0.25)])),
        Command::SetKnob {
            index: 0,
            name: "denoise",
            value: 0.25,
            glide_s: 0.0
        }
    );
    assert_eq!(
        one(&s, &msg("/knob/denoise", vec![Int(1)])),
        Command::SetKnob {
            index: 0,
            name: "denoise",
            value: 1.0,
            glide_s: 0.0
        }
    );
    assert_eq!(
        one(&s, &msg("/knob/steps", vec![Float(4.0)])),
        Command::SetKnob {
            index: s.knob_index("steps").unwrap(),
            name: "steps",
            value: 4.0,
            glide_s: 0.0
        }
    );
    assert_eq!(
        one(&s, &msg("/knob/seed", vec![Long(4_294_967_295)])),
        Command::SetKnob {
            index: s.knob_index("seed").unwrap(),
            name: "seed",
            value: 4_294_967_295.0,
            glide_s: 0.0
        }
    );
    assert_eq!(
        one(&s, &msg("/knob/denoise", vec![])),
        Command::QueryKnob {
            index: 0,
            name: "denoise"
        }
    );
    assert_eq!(one(&s, &msg("/knobs", vec![])), Command::QueryKnobs);
    assert_eq!(
        one(&s, &msg("/prompt", vec![String("a, b".into())])),
        Command::Prompt {
            tags: "a, b".into(),
            tags_b: None
        }
    );
    assert_eq!(
        one(
            &s,
            &msg("/prompt", vec![String("a".into()), String("b".into())])
        ),
        Command::Prompt {
            tags: "a".into(),
            tags_b: Some("b".into())
        }
    );
    assert_eq!(one(&s, &msg("/timbre/clear", vec![])), Command::TimbreClear);
    assert_eq!(
        one(&s, &msg("/structure/clear", vec![])),
        Command::StructureClear
    );
    assert_eq!(
        one(&s, &msg("/loop", vec![Float(1.0), Int(3)])),
        Command::Loop { a: 1.0, b: 3.0 }
    );
    assert_eq!(one(&s, &msg("/loop/clear", vec![])), Command::LoopClear);
    assert_eq!(one(&s, &msg("/transport/play", vec![])), Command::Play);
    assert_eq!(one(&s, &msg("/transport/pause", vec![])), Command::Pause);
    assert_eq!(
        one(&s, &msg("/transport/seek", vec![Double(2.5)])),
        Command::Seek { seconds: 2.5 }
    );
    assert_eq!(one(&s, &msg("/status", vec![])), Command::Status);
    assert_eq!(
        one(&s, &msg("/notify", vec![Int(1)])),
        Command::Notify(true)
    );
    assert_eq!(
        one(&s, &msg("/notify", vec![Int(0)])),
        Command::Notify(false)
    );
    assert_eq!(one(&s, &msg("/sync", vec![Int(-7)])), Command::Sync(-7));
    assert_eq!(one(&s, &msg("/version", vec![])), Command::Version);
}

#[test]
fn media_paths_resolve_inside_the_folder_only() {
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir_all(media.join("sub")).unwrap();
    std::fs::write(media.join("sub/pad.wav"), b"RIFF").unwrap();
    std::fs::write(dir.path().join("secret.wav"), b"RIFF").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.wav"), media.join("link.wav")).unwrap();
    let s = schema().with_media_root(MediaRoot::new(&media).unwrap());
    let canonical = media.join("sub/pad.wav").canonicalize().unwrap();
    let path = |p: &str| msg("/timbre", vec![OscType::String(p.into())]);
    assert_eq!(
        one(&s, &path("sub/pad.wav")),
        Command::Timbre {
            path: canonical.clone()
        }
    );
    assert_eq!(
        one(&s, &path("./sub/../sub/pad.wav")),
        Command::Timbre {
            path: canonical.clone()
        }
    );
    assert_eq!(
        one(&s, &path(canonical.to_str().unwrap())),
        Command::Timbre {
            path: canonical.clone()
        }
    );
    assert_eq!(
        one(
            &s,
            &msg("/source", vec![OscType::String("sub/pad.wav".into())])
        ),
        Command::Source {
            path: canonical.clone()
        }
    );
    let cases = [
        ("../../etc/passwd", "is outside the media folder"),
        ("/etc/passwd", "is outside the media folder"),
        ("../secret.wav", "is outside the media folder"),
        (
            "link.wav",
            "resolves (through a symlink) outside the media folder",
        ),
        ("missing.wav", "does not name a readable file"),
        ("sub", "is not a regular file"),
        ("", "path is empty"),
    ];
    for (p, why) in cases {
        let f = fail(&s, &path(p));
        assert_eq!(f.address, "/timbre");
        assert!(f.reason.contains(why), "{p}: {}", f.reason);
    }
    let f = fail(&schema(), &path("sub/pad.wav"));
    assert_eq!(f.reason, "no media folder is configured");
}

#[test]
fn patterns_expand_to_every_match() {
    let s = schema();
    let all = s
        .decode(&msg("/knob/ch_g*", vec![OscType::Float(0.0)]))
        .unwrap()
        .value;
    let names: Vec<&str> = all
        .iter()
        .map(|c| match c {
            Command::SetKnob { name, value, .. } if *value == 0.0 => *name,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            "ch_g0", "ch_g1", "ch_g2", "ch_g3", "ch_g4", "ch_g5", "ch_g6", "ch_g7"
        ]
    );
    assert_eq!(
        s.decode(&msg("/knob/ch_g[0-1]", vec![OscType::Int(2)]))
            .unwrap()
            .value
            .len(),
        2
    );
    assert_eq!(
        s.decode(&msg("/knob/{denoise,seed}", vec![OscType::Int(1)]))
            .unwrap()
            .value
            .len(),
        2
    );
    assert_eq!(
        s.decode(&msg("/knob/*", vec![])).unwrap().value.len(),
        reference_knobs().len()
    );
    assert_eq!(
        s.decode(&msg("/{timbre,structure}/clear", vec![]))
            .unwrap()
            .value,
        vec![Command::TimbreClear, Command::StructureClear]
    );
    // One invalid expansion rejects the whole pattern: 2.0 is fine for ch_g* but not denoise.
    let f = fail(&s, &msg("/knob/{ch_g0,denoise}", vec![OscType::Float(2.0)]));
    assert!(
        f.reason.contains("out of range for knob denoise"),
        "{}",
        f.reason
    );
    assert_eq!(
        fail(&s, &msg("/knob/zz*", vec![])).reason,
        "no address matches this pattern"
    );
    assert!(
        fail(&s, &msg("/knob/ch_g[0-", vec![]))
            .reason
            .contains("unclosed '['")
    );
}

#[test]
fn bundles_flatten_with_their_time_and_fail_as_a_whole() {
    let s = schema();
    let content = vec![
        m("/knob/ch_g0", vec![OscType::Float(0.0)]),
        m("/knob/steps", vec![OscType::Int(4)]),
    ];
    let later = s
        .decode(&bundle((3_900_000_000, 5), content.clone()))
        .unwrap();
    assert_eq!(later.when, When::At(OscTime::from((3_900_000_000, 5))));
    assert_eq!(later.value.len(), 2);
    assert_eq!(
        s.decode(&bundle((0, 1), content.clone())).unwrap().when,
        When::Immediately
    );
    assert!(s.decode(&bundle((0, 1), vec![])).unwrap().value.is_empty());

    let mut bad = content.clone();
    bad.push(m("/knob/steps", vec![OscType::Int(99)]));
    let f = fail(&s, &bundle((0, 1), bad));
    assert_eq!(f.address, "/knob/steps");
    assert!(
        f.reason
            .starts_with("in bundle element 3: value 99 is out of range"),
        "{}",
        f.reason
    );

    let nested = bundle(
        (0, 1),
        vec![OscPacket::Bundle(OscBundle {
            timetag: OscTime::from((0, 1)),
            content,
        })],
    );
    let f = fail(&s, &nested);
    assert_eq!(f.address, "#bundle");
    assert!(
        f.reason.contains("bundle element 1 is a nested bundle"),
        "{}",
        f.reason
    );
}

#[test]
fn bad_input_gets_a_precise_reason() {
    use OscType::*;
    let s = schema();
    let good = msg("/knob/denoise", vec![Float(0.5)]);
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0, 0, 0, 0]);
    let mut bad_tag = msg("/knob/denoise", vec![Float(0.5)]);
    bad_tag[17] = b'x'; // ",f" -> ",x"
    let mut no_comma = good.clone();
    no_comma[16] = b'f';
    let long_address = format!("/knob/{}", "a".repeat(300));
    let mut big_bundle = bundle((0, 1), vec![m("/status", vec![])]);
    big_bundle[19] = 200; // element size larger than the rest
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (vec![], "#packet", "empty packet"),
        (
            good[..10].to_vec(),
            "#packet",
            "address is not NUL-terminated",
        ),
        (
            good[..good.len() - 2].to_vec(),
            "/knob/denoise",
            "truncated packet: the argument of type tag 1 ('f') needs 4 bytes; 2 follow",
        ),
        (
            trailing,
            "/knob/denoise",
            "4 bytes left over after the arguments",
        ),
        (
            bad_tag,
            "/knob/denoise",
            "unknown type tag 'x' at position 1",
        ),
        (no_comma, "/knob/denoise", "does not start with ','"),
        (
            b"hello\0\0\0".to_vec(),
            "#packet",
            "packet starts with byte 0x68",
        ),
        (
            msg("/knob/denoise", vec![Float(f32::NAN)]),
            "/knob/denoise",
            "argument 1 (value) is NaN",
        ),
        (
            msg("/knob/denoise", vec![Float(f32::INFINITY)]),
            "/knob/denoise",
            "argument 1 (value) is infinite",
        ),
        (
            msg("/knob/denoise", vec![Inf]),
            "/knob/denoise",
            "is infinite",
        ),
        (
            msg("/knob/denoise", vec![Bool(true)]),
            "/knob/denoise",
            "must be a number (i, f, h or d); got T (true)",
        ),
        (
            msg("/knob/denoise", vec![String("1".into())]),
            "/knob/denoise",
            "got s \"1\"",
        ),
        (
            msg("/knob/denoise", vec![Float(1.5)]),
            "/knob/denoise",
            "value 1.5 is out of range for knob denoise: accepted [0, 1]",
        ),
        (
            msg("/knob/periodicity", vec![Int(-1)]),
            "/knob/periodicity",
            "accepted [0, 12.5] Hz",
        ),
        (
            msg("/knob/seed", vec![Int(-1)]),
            "/knob/seed",
            "accepted [0, 4294967295]",
        ),
        (
            msg("/knob/steps", vec![Float(2.5)]),
            "/knob/steps",
            "knob steps takes an integer in [1, 16]; got 2.5",
        ),
        (
            msg("/knob/denoise", vec![Float(0.1), Float(0.2), Float(0.3)]),
            "/knob/denoise",
            "/knob/denoise takes ([f value], [f glide_s]); got 3 argument(s): f 0.1, f 0.2, f 0.3",
        ),
        (
            msg("/knob/volume", vec![Float(0.1)]),
            "/knob/volume",
            "unknown knob \"volume\"",
        ),
        (msg("/nope", vec![]), "/nope", "unknown address"),
        (
            msg("/status", vec![Int(1)]),
            "/status",
            "/status takes no arguments; got 1 argument(s): i 1",
        ),
        (
            msg("/prompt", vec![]),
            "/prompt",
            "/prompt takes (s tags, [s tags_b]); got 0",
        ),
        (
            msg("/prompt", vec![Int(3)]),
            "/prompt",
            "argument 1 (tags) must be a string (s); got i 3",
        ),
        (
            msg("/prompt", vec![String("x".repeat(3000))]),
            "/prompt",
            "argument 1 is a string of 3000 bytes; the limit is 2048",
        ),
        (
            msg(&long_address, vec![]),
            "/knob/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...",
            "address is 306 bytes; the limit is 256",
        ),
        (
            msg("/loop", vec![Float(-1.0), Float(2.0)]),
            "/loop",
            "argument 1 (a_seconds) must be >= 0 s; got -1",
        ),
        (
            msg("/loop", vec![Float(3.0), Float(2.0)]),
            "/loop",
            "must be greater than a_seconds (3); got 2",
        ),
        (
            msg("/transport/seek", vec![Float(-0.5)]),
            "/transport/seek",
            "must be >= 0 s",
        ),
        (
            msg("/notify", vec![Int(2)]),
            "/notify",
            "must be i 0 or i 1; got i 2",
        ),
        (msg("/notify", vec![Bool(true)]), "/notify", "got T (true)"),
        (
            msg("/sync", vec![Float(1.0)]),
            "/sync",
            "argument 1 (id) must be an int (i); got f 1",
        ),
        (
            vec![0u8; 70_000],
            "#packet",
            "packet of 70000 bytes exceeds the limit of 65536 bytes",
        ),
        (
            b"#bundle\0\0\0".to_vec(),
            "#bundle",
            "truncated bundle: 10 bytes",
        ),
        (
            big_bundle,
            "#bundle",
            "bundle element 1 declares 200 bytes but only",
        ),
    ];
    for (packet, address, why) in cases {
        let f = fail(&s, &packet);
        assert_eq!(f.address, address, "{why}: {f}");
        assert!(f.reason.contains(why), "expected {why:?} in {:?}", f.reason);
    }
}

#[test]
fn bad_knob_tables_are_refused() {
    let mut knobs = reference_knobs().to_vec();
    knobs.push(knobs[0]);
    assert!(Schema::new(&knobs).unwrap_err().contains("appears twice"));
    let mut knobs = reference_knobs().to_vec();
    knobs[0].default = 2.0;
    assert!(
        Schema::new(&knobs)
            .unwrap_err()
            .contains("min <= default <= max")
    );
    let mut knobs = reference_knobs().to_vec();
    knobs[0].name = "De Noise";
    assert!(Schema::new(&knobs).is_err());
}

#[test]
fn preset_rows_decode_and_refuse_bad_names() {
    use latentd_osc_schema::presets::FadeCurve;
    let s = schema();
    use OscType::*;
    assert_eq!(
        one(&s, &msg("/knob/denoise", vec![Float(0.25), Float(1.5)])),
        Command::SetKnob {
            index: 0,
            name: "denoise",
            value: 0.25,
            glide_s: 1.5
        }
    );
    assert_eq!(
        one(&s, &msg("/preset/save", vec![String("verse".into())])),
        Command::PresetSave {
            name: "verse".into()
        }
    );
    assert_eq!(
        one(
            &s,
            &msg(
                "/preset/recall",
                vec![String("verse".into()), Int(2), String("smooth".into())]
            )
        ),
        Command::PresetRecall {
            name: "verse".into(),
            fade_s: 2.0,
            curve: FadeCurve::Smooth
        }
    );
    assert_eq!(
        one(&s, &msg("/preset/recall", vec![String("verse".into())])),
        Command::PresetRecall {
            name: "verse".into(),
            fade_s: 0.0,
            curve: FadeCurve::Linear
        }
    );
    assert_eq!(one(&s, &msg("/preset/list", vec![])), Command::PresetList);
    assert_eq!(
        one(
            &s,
            &msg(
                "/preset/morph",
                vec![String("a".into()), String("b".into()), Float(0.5)]
            )
        ),
        Command::PresetMorph {
            a: "a".into(),
            b: "b".into(),
            x: 0.5
        }
    );
    let fails = |m: Vec<u8>| s.decode(&m).unwrap_err();
    let f = fails(msg("/preset/save", vec![String("../etc/passwd".into())]));
    assert_eq!(f.address, "/preset/save");
    assert!(f.reason.contains("path separator"), "{}", f.reason);
    let f = fails(msg("/preset/delete", vec![String("x".repeat(65))]));
    assert!(f.reason.contains("65 bytes"), "{}", f.reason);
    let f = fails(msg("/preset/recall", vec![String("a".into()), Float(-1.0)]));
    assert!(f.reason.contains("fade_s"), "{}", f.reason);
    let f = fails(msg(
        "/preset/recall",
        vec![String("a".into()), Float(601.0)],
    ));
    assert!(f.reason.contains("at most 600"), "{}", f.reason);
    let f = fails(msg(
        "/preset/recall",
        vec![String("a".into()), Float(1.0), String("cubic".into())],
    ));
    assert!(f.reason.contains("unknown curve"), "{}", f.reason);
    let f = fails(msg(
        "/preset/morph",
        vec![String("a".into()), String("b".into()), Float(1.5)],
    ));
    assert!(f.reason.contains("[0, 1]"), "{}", f.reason);
    let f = fails(msg("/knob/denoise", vec![Float(0.5), Float(-2.0)]));
    assert!(f.reason.contains("glide_s"), "{}", f.reason);
}

#[test]
fn midi_rows_decode_and_refuse_bad_maps() {
    use OscType::*;
    use latentd_osc_schema::midi::{MidiAction, MidiMode, MidiTarget};
    use latentd_osc_schema::presets::FadeCurve;
    let s = schema();
    let Command::MidiMap(map) = one(
        &s,
        &msg(
            "/midi/map",
            vec![
                Float(2.0),
                Int(74),
                String("shift".into()),
                Int(1),
                Double(6.0),
                String("ease_in".into()),
                String("pickup".into()),
            ],
        ),
    ) else {
        panic!("not a map");
    };
    assert_eq!((map.channel, map.cc), (2, 74));
    assert_eq!(map.binding.target.name(), "shift");
    assert_eq!((map.binding.min, map.binding.max), (1.0, 6.0));
    assert_eq!(map.binding.curve, FadeCurve::EaseIn);
    assert_eq!(map.binding.mode, MidiMode::Pickup);
    let Command::MidiLearn(binding) =
        one(&s, &msg("/midi/learn", vec![String("preset/next".into())]))
    else {
        panic!("not a learn");
    };
    assert_eq!(binding.target, MidiTarget::Action(MidiAction::PresetNext));
    assert_eq!(
        one(&s, &msg("/midi/unmap", vec![Int(16), Int(127)])),
        Command::MidiUnmap {
            channel: 16,
            cc: 127
        }
    );
    assert_eq!(one(&s, &msg("/midi/maps", vec![])), Command::MidiMaps);
    for (packet, reason) in [
        (
            msg("/midi/map", vec![Int(0), Int(1), String("denoise".into())]),
            "a MIDI channel is an integer 1 to 16; got 0",
        ),
        (
            msg("/midi/unmap", vec![Int(1), Int(-1)]),
            "argument 2 (cc): a controller (CC) number is an integer 0 to 127; got -1",
        ),
        (
            msg(
                "/midi/map",
                vec![Int(1), Float(1.5), String("denoise".into())],
            ),
            "got 1.5",
        ),
        (
            msg("/midi/learn", vec![String("volume".into())]),
            "unknown target \"volume\"",
        ),
        (
            msg(
                "/midi/learn",
                vec![
                    String("denoise".into()),
                    Float(0.0),
                    Float(1.0),
                    String("cubic".into()),
                ],
            ),
            "unknown curve \"cubic\"",
        ),
        (
            msg("/midi/map", vec![Int(1), Int(1)]),
            "/midi/map takes (f channel, f cc, s target, [f min], [f max], [s curve], [s mode])",
        ),
    ] {
        let f = fail(&s, &packet);
        assert!(f.reason.contains(reason), "{}", f.reason);
    }
}
