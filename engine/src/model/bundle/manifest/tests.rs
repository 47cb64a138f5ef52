//! Manifest tests on real files in temporary folders: the reference manifest (the example
//! of docs/bundles.md) is accepted, and each refusal names the key or file. The last tests
//! run tools/bundles/make_test_bundle.py (python3 + onnx, installed by scripts/setup.sh)
//! and load what it writes.

use super::*;
use std::fs;
use tempfile::TempDir;

/// The reference manifest, as docs/bundles.md shows it.
const REFERENCE_MANIFEST: &str = r#"format = "latentd-bundle/1"
name = "acestep-shaped-random"
license = "MIT"
provenance = "free text"
[geometry]
sample_rate = 48000
audio_channels = 2
latent_channels = 64
latent_frame_rate = 25
[sampler]
convention = "flow-velocity"   # x_t = t*noise + (1-t)*x0, v = noise - x0
default_steps = 8
default_shift = 3.0
guidance = "none"              # or "cfg": the batch is doubled with the null condition
[dit]
file = "dit.onnx"
t_multiple = 2                 # odd T is padded
[decoder]
file = "decoder.onnx"
context_frames = 8
[encoder]
file = "encoder.onnx"
[text]
kind = "tags"
vocab = "tags.txt"             # one tag a line; unknown words are reported, never silently dropped
file = "text.onnx"
"#;

/// A bundle folder holding `manifest` and the files the reference manifest names (the graphs
/// are placeholder bytes: the manifest does not parse ONNX).
fn bundle(manifest: &str) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(MANIFEST_FILE), manifest).unwrap();
    for graph in ["dit.onnx", "decoder.onnx", "encoder.onnx", "text.onnx"] {
        fs::write(dir.path().join(graph), b"onnx").unwrap();
    }
    fs::write(dir.path().join("tags.txt"), "piano\ndrums\nbass\n").unwrap();
    dir
}

/// The reference manifest with `old` replaced by `new` (which must be there).
fn edited(old: &str, new: &str) -> String {
    assert!(
        REFERENCE_MANIFEST.contains(old),
        "{old:?} not in the manifest"
    );
    REFERENCE_MANIFEST.replacen(old, new, 1)
}

/// The error `load` gives for the reference manifest with one edit, as text.
fn refusal(old: &str, new: &str) -> String {
    let dir = bundle(&edited(old, new));
    load(dir.path()).unwrap_err().to_string()
}

fn canonical(dir: &TempDir) -> PathBuf {
    fs::canonicalize(dir.path()).unwrap()
}

#[test]
fn the_reference_manifest_is_accepted_with_typed_values_and_absolute_paths() {
    let dir = bundle(REFERENCE_MANIFEST);
    let root = canonical(&dir);
    let m = load(dir.path()).unwrap();
    assert_eq!(m.dir, root);
    assert_eq!(m.name, "acestep-shaped-random");
    assert_eq!(m.license, "MIT");
    assert_eq!(m.provenance, "free text");
    assert_eq!(
        m.geometry,
        Geometry {
            sample_rate: 48_000,
            audio_channels: 2,
            latent_channels: 64,
            latent_frame_rate: 25,
        }
    );
    assert_eq!(
        m.sampler,
        SamplerSpec {
            convention: Convention::FlowVelocity,
            default_steps: 8,
            default_shift: 3.0,
            guidance: Guidance::None,
            default_guidance: 1.0,
        }
    );
    assert_eq!(
        m.dit,
        DitSpec {
            file: root.join("dit.onnx"),
            t_multiple: 2,
            chunk_frames: None,
        }
    );
    assert_eq!(
        m.decoder,
        DecoderSpec {
            file: root.join("decoder.onnx"),
            context_frames: 8,
            output: DecoderOutput::Audio,
        }
    );
    assert_eq!(m.encoder, Some(root.join("encoder.onnx")));
    let text = m.text.unwrap();
    assert_eq!(text.kind, TextKind::Tags);
    assert_eq!(text.vocab, ["piano", "drums", "bass"]);
    assert_eq!(text.vocab_file, root.join("tags.txt"));
    assert_eq!(text.file, root.join("text.onnx"));
    assert_eq!(m.timbre, None);
    assert_eq!(m.parity, None);
}

#[test]
fn optional_sections_may_be_left_out() {
    let manifest = REFERENCE_MANIFEST.split("[encoder]").next().unwrap();
    let dir = bundle(manifest);
    let m = load(dir.path()).unwrap();
    assert_eq!(
        (m.encoder, m.text, m.timbre, m.parity),
        (None, None, None, None)
    );
}

#[test]
fn a_bad_enumerated_value_is_refused_with_the_accepted_list() {
    assert_eq!(
        refusal(r#"guidance = "none""#, r#"guidance = "foo""#),
        r#"bundle.toml: [sampler] guidance: "foo" (accepted: "none", "cfg")"#
    );
    assert_eq!(
        refusal(r#""flow-velocity""#, r#""epsilon""#),
        r#"bundle.toml: [sampler] convention: "epsilon" (accepted: "flow-velocity")"#
    );
    assert_eq!(
        refusal(r#"kind = "tags""#, r#"kind = "t5""#),
        r#"bundle.toml: [text] kind: "t5" (accepted: "tags")"#
    );
}

#[test]
fn a_wrong_format_string_is_refused() {
    assert_eq!(
        refusal(r#""latentd-bundle/1""#, r#""latentd-bundle/2""#),
        r#"bundle.toml: format: "latentd-bundle/2" (accepted: "latentd-bundle/1")"#
    );
}

#[test]
fn an_unknown_key_is_refused_naming_it_and_its_section() {
    assert_eq!(
        refusal("t_multiple = 2", "t_multiple = 2\nwindow = 3"),
        "bundle.toml: line 18 ([dit]): unknown field `window`, expected one of `file`, `t_multiple`, `chunk_frames`"
    );
    let e = refusal("[encoder]", "[structure]\nfile = \"s.onnx\"\n[encoder]");
    assert!(e.contains("unknown field `structure`"), "{e}");
    let e = refusal("format =", "colour = 1\nformat =");
    assert!(
        e.starts_with("bundle.toml: line 1: unknown field `colour`"),
        "{e}"
    );
}

#[test]
fn a_missing_key_or_a_wrong_type_is_refused_naming_it() {
    let e = refusal("license = \"MIT\"\n", "");
    assert!(e.contains("missing field `license`"), "{e}");
    let e = refusal("context_frames = 8\n", "");
    assert!(e.contains("missing field `context_frames`"), "{e}");
    let e = refusal("sample_rate = 48000", "sample_rate = \"48k\"");
    assert!(
        e.starts_with("bundle.toml: line 6 ([geometry]): invalid type"),
        "{e}"
    );
}

#[test]
fn geometry_the_loop_cannot_take_is_refused() {
    assert_eq!(
        refusal("latent_frame_rate = 25", "latent_frame_rate = 7"),
        "bundle.toml: [geometry] latent_frame_rate: 7 (accepted: a divisor of [geometry] \
         sample_rate 48000)"
    );
    assert!(refusal("latent_frame_rate = 25", "latent_frame_rate = 0").contains("divisor"));
    assert_eq!(
        refusal("audio_channels = 2", "audio_channels = 0"),
        "bundle.toml: [geometry] audio_channels: 0 (accepted: 1 to 8)"
    );
    assert!(refusal("sample_rate = 48000", "sample_rate = 1000").contains("8000 to 192000"));
}

#[test]
fn t_multiple_zero_and_a_huge_context_are_refused() {
    assert_eq!(
        refusal("t_multiple = 2", "t_multiple = 0"),
        "bundle.toml: [dit] t_multiple: 0 (accepted: 1 to 64)"
    );
    assert_eq!(
        refusal("context_frames = 8", "context_frames = 100000"),
        "bundle.toml: [decoder] context_frames: 100000 (accepted: 0 to 256)"
    );
}

#[test]
fn a_chunk_length_is_read_and_one_the_walk_cannot_take_is_refused() {
    let dir = bundle(&edited(
        "t_multiple = 2 ",
        "t_multiple = 2\nchunk_frames = 250",
    ));
    let m = load(dir.path()).unwrap();
    assert_eq!(m.dit.chunk_frames, Some(250));
    assert_eq!(m.walk_chunk_s(), Some(10.0));
    // At 25 frames/s a chunk must be at least 4 s: walk mode switches 3 s before its end.
    assert_eq!(
        refusal("t_multiple = 2 ", "t_multiple = 2\nchunk_frames = 99"),
        "bundle.toml: [dit] chunk_frames: 99 (accepted: 100 to 1048576)"
    );
    let e = refusal("t_multiple = 2 ", "t_multiple = 2\nchunk_frames = -1");
    assert!(
        e.starts_with("bundle.toml: line 18 ([dit]): invalid value"),
        "{e}"
    );
}

#[test]
fn an_stft_decoder_is_read_with_its_n_fft_and_hop() {
    // The lead's model: 48 kHz, 25 fps, n_fft 1920, hop 480.
    let ctx = "context_frames = 8\n";
    let stft = "context_frames = 8\noutput = \"stft\"\nn_fft = 1920\nhop = 480\n";
    let dir = bundle(&edited(ctx, stft));
    let m = load(dir.path()).unwrap();
    assert_eq!(
        m.decoder.output,
        DecoderOutput::Stft {
            n_fft: 1920,
            hop: 480
        }
    );
    let hann = format!("{stft}window = \"hann\"\n");
    assert!(load(bundle(&edited(ctx, &hann)).path()).is_ok());
}

#[test]
fn bad_stft_decoder_keys_are_refused_naming_the_key() {
    let ctx = "context_frames = 8\n";
    let case = |extra: &str| refusal(ctx, &format!("{ctx}{extra}"));
    let stft = "output = \"stft\"\n";
    assert_eq!(
        case(&format!("{stft}n_fft = 1920\n")),
        "bundle.toml: [decoder] hop: missing (accepted: a divisor of rate/fps = 1920, \
         required with output = \"stft\")"
    );
    assert!(
        case(&format!("{stft}hop = 480\n")).starts_with("bundle.toml: [decoder] n_fft: missing")
    );
    assert_eq!(
        case(&format!("{stft}n_fft = 1921\nhop = 480\n")),
        "bundle.toml: [decoder] n_fft: 1921 (accepted: an even number from 2 * hop = 960 to 65536)"
    );
    assert!(
        case(&format!("{stft}n_fft = 900\nhop = 480\n"))
            .starts_with("bundle.toml: [decoder] n_fft: 900")
    );
    assert_eq!(
        case(&format!("{stft}n_fft = 1920\nhop = 500\n")),
        "bundle.toml: [decoder] hop: 500 (accepted: a divisor of rate/fps = 1920)"
    );
    assert!(
        case(&format!("{stft}n_fft = 1920\nhop = 0\n"))
            .starts_with("bundle.toml: [decoder] hop: 0")
    );
    assert_eq!(
        case(&format!(
            "{stft}n_fft = 1920\nhop = 480\nwindow = \"hamming\"\n"
        )),
        "bundle.toml: [decoder] window: \"hamming\" (accepted: \"hann\")"
    );
    assert_eq!(
        case("output = \"mel\"\n"),
        "bundle.toml: [decoder] output: \"mel\" (accepted: \"audio\", \"stft\")"
    );
    assert_eq!(
        case("n_fft = 1920\n"),
        "bundle.toml: [decoder] n_fft: given (accepted: only with output = \"stft\")"
    );
    assert_eq!(
        case("output = \"audio\"\nhop = 480\n"),
        "bundle.toml: [decoder] hop: given (accepted: only with output = \"stft\")"
    );
    assert!(case(&format!("{stft}n_fft = 1920\nhop = 480\nwin = 3\n")).contains("win"));
}

#[test]
fn sampler_defaults_outside_the_knob_ranges_are_refused() {
    assert_eq!(
        refusal("default_steps = 8", "default_steps = 0"),
        "bundle.toml: [sampler] default_steps: 0 (accepted: 1 to 16)"
    );
    assert!(refusal("default_steps = 8", "default_steps = 17").contains("1 to 16"));
    let e = refusal("default_shift = 3.0", "default_shift = nan");
    assert!(
        e.starts_with("bundle.toml: [sampler] default_shift: NaN"),
        "{e}"
    );
    assert!(refusal("default_shift = 3.0", "default_shift = 0.5").contains("shift knob"));
    let cfg = r#"guidance = "cfg"
default_guidance = "#;
    let e = refusal(r#"guidance = "none""#, &format!("{cfg}16.0"));
    assert_eq!(
        e,
        "bundle.toml: [sampler] default_guidance: 16 (accepted: 1 to 15 (the guidance knob's range))"
    );
    assert!(refusal(r#"guidance = "none""#, &format!("{cfg}nan")).contains("NaN"));
    let e = refusal(
        r#"guidance = "none""#,
        "guidance = \"none\"\ndefault_guidance = 3.0",
    );
    assert!(e.contains("1 only (guidance = \"none\""), "{e}");
}

#[test]
fn the_sampler_defaults_are_the_knobs_a_bundle_starts_at() {
    let manifest = edited(
        r#"guidance = "none""#,
        "guidance = \"cfg\"\ndefault_guidance = 4.5",
    )
    .replacen("default_steps = 8", "default_steps = 5", 1)
    .replacen("default_shift = 3.0", "default_shift = 2.0", 1);
    let dir = bundle(&manifest);
    let sampler = load(dir.path()).unwrap().sampler;
    assert_eq!(
        sampler.start_knobs(),
        [
            (KnobId::steps, 5.0),
            (KnobId::shift, 2.0),
            (KnobId::guidance, 4.5)
        ]
    );
    // Without the key, the guidance knob starts at its own default.
    let dir = bundle(REFERENCE_MANIFEST);
    let start = load(dir.path()).unwrap().sampler.start_knobs();
    assert_eq!(
        start[2],
        (KnobId::guidance, KnobId::guidance.spec().default)
    );
}

#[test]
fn cfg_needs_a_text_condition() {
    let cfg = edited(r#"guidance = "none""#, r#"guidance = "cfg""#);
    let dir = bundle(&cfg);
    assert_eq!(load(dir.path()).unwrap().sampler.guidance, Guidance::Cfg);
    let without_text = cfg.split("[text]").next().unwrap();
    let dir = bundle(without_text);
    let e = load(dir.path()).unwrap_err().to_string();
    assert!(
        e.starts_with(r#"bundle.toml: [sampler] guidance: "cfg" (accepted: "none""#),
        "{e}"
    );
}

#[test]
fn a_timbre_graph_is_read_and_needs_an_encoder() {
    let timbre =
        format!("{REFERENCE_MANIFEST}[timbre]\nfile = \"text.onnx\"\nreference_frames = 750\n");
    let dir = bundle(&timbre);
    let t = load(dir.path()).unwrap().timbre.unwrap();
    assert_eq!(
        (t.file, t.reference_frames),
        (canonical(&dir).join("text.onnx"), 750)
    );
    let without_encoder = timbre.replace("[encoder]\nfile = \"encoder.onnx\"\n", "");
    assert!(!without_encoder.contains("[encoder]"));
    let e = load(bundle(&without_encoder).path())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        r#"bundle.toml: [timbre] file: "text.onnx" (accepted: only with an [encoder] section (references are encoded by it))"#
    );
}

#[test]
fn a_missing_file_is_named_with_the_folder() {
    let dir = bundle(REFERENCE_MANIFEST);
    fs::remove_file(dir.path().join("dit.onnx")).unwrap();
    assert_eq!(
        load(dir.path()).unwrap_err().to_string(),
        format!(
            "bundle.toml: [dit] file: \"dit.onnx\": no such file in {}",
            canonical(&dir).display()
        )
    );
    let dir = bundle(REFERENCE_MANIFEST);
    fs::remove_file(dir.path().join("tags.txt")).unwrap();
    let e = load(dir.path()).unwrap_err().to_string();
    assert!(
        e.starts_with("bundle.toml: [text] vocab: \"tags.txt\": no such file"),
        "{e}"
    );
}

#[test]
fn a_missing_bundle_folder_or_manifest_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let e = load(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("bundle.toml") && e.contains("No such file"),
        "{e}"
    );
    let gone = dir.path().join("gone");
    let e = load(&gone).unwrap_err().to_string();
    assert!(e.starts_with(&gone.display().to_string()), "{e}");
}

#[test]
fn files_must_be_regular_inside_the_folder_and_under_the_limit() {
    let dir = bundle(REFERENCE_MANIFEST);
    fs::remove_file(dir.path().join("decoder.onnx")).unwrap();
    fs::create_dir(dir.path().join("decoder.onnx")).unwrap();
    assert_eq!(
        load(dir.path()).unwrap_err().to_string(),
        "bundle.toml: [decoder] file: \"decoder.onnx\": not a regular file"
    );
    for escape in ["../dit.onnx", "/etc/passwd", ""] {
        let e = refusal(r#"file = "dit.onnx""#, &format!("file = {escape:?}"));
        assert_eq!(
            e,
            format!(
                "bundle.toml: [dit] file: {escape:?}: must be a relative path inside the \
                 bundle folder"
            )
        );
    }
    // A sparse file one byte past the graph limit.
    let dir = bundle(REFERENCE_MANIFEST);
    let big = fs::File::create(dir.path().join("encoder.onnx")).unwrap();
    big.set_len(MAX_GRAPH_BYTES + 1).unwrap();
    assert_eq!(
        load(dir.path()).unwrap_err().to_string(),
        format!(
            "bundle.toml: [encoder] file: \"encoder.onnx\": {} bytes (accepted: at most {})",
            MAX_GRAPH_BYTES + 1,
            MAX_GRAPH_BYTES
        )
    );
}

#[test]
fn files_in_subfolders_are_accepted() {
    let dir = bundle(&edited(
        r#"file = "dit.onnx""#,
        r#"file = "graphs/./dit.onnx""#,
    ));
    fs::create_dir(dir.path().join("graphs")).unwrap();
    fs::rename(
        dir.path().join("dit.onnx"),
        dir.path().join("graphs/dit.onnx"),
    )
    .unwrap();
    let m = load(dir.path()).unwrap();
    assert!(m.dit.file.ends_with("graphs/dit.onnx") && m.dit.file.is_file());
}

/// The error for the reference bundle with `tags.txt` holding `vocab`.
fn vocab_refusal(vocab: impl AsRef<[u8]>) -> String {
    let dir = bundle(REFERENCE_MANIFEST);
    fs::write(dir.path().join("tags.txt"), vocab).unwrap();
    let e = load(dir.path()).unwrap_err().to_string();
    let prefix = format!("{}: ", canonical(&dir).join("tags.txt").display());
    e.strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{e:?} does not name the vocabulary file"))
        .to_string()
}

#[test]
fn a_vocabulary_with_empty_duplicate_or_spaced_tags_is_refused() {
    assert_eq!(
        vocab_refusal("piano\ndrums\npiano\n"),
        r#"line 3: "piano": duplicate of line 1"#
    );
    assert_eq!(
        vocab_refusal("piano\n\ndrums\n"),
        "line 2: empty line (one tag a line)"
    );
    assert_eq!(vocab_refusal(""), "line 1: empty line (one tag a line)");
    assert_eq!(
        vocab_refusal("piano\nhip hop\n"),
        r#"line 2: "hip hop": a tag is one word (no spaces or control characters)"#
    );
    assert_eq!(vocab_refusal(b"piano\n\xff\n"), "line 2: not UTF-8");
    let long = "x".repeat(MAX_TAG_CHARS + 1);
    assert!(vocab_refusal(&long).contains("longer than 64 characters"));
}

#[test]
fn a_vocabulary_without_final_newline_or_with_crlf_is_read() {
    let dir = bundle(REFERENCE_MANIFEST);
    fs::write(dir.path().join("tags.txt"), "piano\r\ndrums").unwrap();
    assert_eq!(
        load(dir.path()).unwrap().text.unwrap().vocab,
        ["piano", "drums"]
    );
}

#[test]
fn blank_name_or_license_is_refused() {
    assert!(
        refusal(r#"name = "acestep-shaped-random""#, r#"name = " ""#)
            .starts_with(r#"bundle.toml: name: " " (accepted: 1 to 64 characters"#)
    );
    assert!(refusal(r#"license = "MIT""#, r#"license = """#).starts_with("bundle.toml: license:"));
    let dir = bundle(&edited(
        r#"provenance = "free text""#,
        "provenance = \"\"\"exported from\nthe v1.5 turbo checkpoint\"\"\"",
    ));
    assert!(load(dir.path()).unwrap().provenance.contains('\n'));
}

/// The reference bundle plus one parity run of the decoder: `latents [1,2,1]` f32 in,
/// `audio [1,2,2]` f32 out, written with the sizes given.
fn parity_bundle(run: &str, latents_bytes: usize) -> TempDir {
    let dir = bundle(&format!(
        "{REFERENCE_MANIFEST}[parity]\natol = 1e-4\nrtol = 1e-3\n{run}"
    ));
    fs::create_dir(dir.path().join("parity")).unwrap();
    fs::write(
        dir.path().join("parity/latents.bin"),
        vec![0u8; latents_bytes],
    )
    .unwrap();
    let audio: Vec<u8> = [0.5f32, -1.0, 2.0, 0.25]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    fs::write(dir.path().join("parity/audio.bin"), audio).unwrap();
    dir
}

const DECODER_RUN: &str = r#"[[parity.run]]
graph = "decoder"
inputs = [{ name = "latents", file = "parity/latents.bin", dtype = "f32", shape = [1, 2, 1] }]
outputs = [{ name = "audio", file = "parity/audio.bin", dtype = "f32", shape = [1, 2, 2] }]
"#;

#[test]
fn parity_runs_are_read_with_their_shapes() {
    let dir = parity_bundle(DECODER_RUN, 8);
    let parity = load(dir.path()).unwrap().parity.unwrap();
    assert_eq!((parity.atol, parity.rtol), (1e-4, 1e-3));
    let run = &parity.runs[0];
    assert_eq!(run.graph, GraphKind::Decoder);
    assert_eq!(run.inputs[0].shape, [1, 2, 1]);
    assert_eq!(
        run.outputs[0].read().unwrap(),
        TensorData::F32(vec![0.5, -1.0, 2.0, 0.25])
    );
}

#[test]
fn parity_files_must_match_their_shapes_and_graphs_must_exist() {
    let e = load(parity_bundle(DECODER_RUN, 12).path())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        r#"bundle.toml: [[parity.run]] #1 inputs "latents" file: "parity/latents.bin": 12 bytes, its shape and dtype need 8"#
    );
    let timbre = DECODER_RUN.replace(r#"graph = "decoder""#, r#"graph = "timbre""#);
    let e = load(parity_bundle(&timbre, 8).path())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        r#"bundle.toml: [[parity.run]] #1 graph: "timbre" (accepted: a graph the bundle declares)"#
    );
    let zero = DECODER_RUN.replace("shape = [1, 2, 1]", "shape = [1, 0, 1]");
    let e = load(parity_bundle(&zero, 8).path())
        .unwrap_err()
        .to_string();
    assert!(e.contains(r#"inputs "latents" shape: [1, 0, 1]"#), "{e}");
    let int_out = DECODER_RUN.replace(
        r#"dtype = "f32", shape = [1, 2, 2]"#,
        r#"dtype = "i64", shape = [1, 2, 1]"#,
    );
    let e = load(parity_bundle(&int_out, 8).path())
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with(r#"outputs "audio" dtype: "i64" (accepted: "f32")"#),
        "{e}"
    );
    let twice = DECODER_RUN.replace(r#"name = "audio""#, r#"name = "latents""#);
    let e = load(parity_bundle(&twice, 8).path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("each name once"), "{e}");
}

#[test]
fn parity_compare_takes_atol_plus_rtol_and_refuses_nan_and_length() {
    let spec = ParitySpec {
        atol: 1e-3,
        rtol: 1e-2,
        runs: Vec::new(),
    };
    // |e| = 10: tolerance 0.101.
    assert_eq!(
        spec.compare(&[10.0, 0.0], &[10.1, -0.0005]),
        Ok((10.1f32 - 10.0).abs())
    );
    let Err(ParityMismatch::Value { index, .. }) = spec.compare(&[10.0, 0.0], &[10.0, 0.002])
    else {
        panic!("0.002 is outside atol 0.001 at 0");
    };
    assert_eq!(index, 1);
    assert!(spec.compare(&[1.0], &[f32::NAN]).is_err());
    assert!(spec.compare(&[f32::MAX], &[f32::INFINITY]).is_err());
    assert_eq!(
        spec.compare(&[1.0, 2.0], &[1.0]),
        Err(ParityMismatch::Length {
            expected: 2,
            actual: 1
        })
    );
    assert_eq!(
        ParityMismatch::Value {
            index: 3,
            expected: 1.0,
            actual: 2.0,
            tolerance: 0.5
        }
        .to_string(),
        "element 3: 2, expected 1 (tolerance 0.5)"
    );
}

/// Runs tools/bundles/make_test_bundle.py with `args` into a fresh folder.
fn make_test_bundle(args: &[&str]) -> TempDir {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/bundles/make_test_bundle.py");
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("python3")
        .arg(&script)
        .args(args)
        .arg("--out")
        .arg(out.path())
        .status()
        .expect("python3 runs (scripts/setup.sh installs python3, onnx and numpy)");
    assert!(
        status.success(),
        "{} failed: {status} (run scripts/setup.sh)",
        script.display()
    );
    out
}

#[test]
fn the_script_writes_a_bundle_the_manifest_accepts_and_regenerates_it_bit_identically() {
    let tiny = make_test_bundle(&["--preset", "tiny"]);
    let m = load(tiny.path()).unwrap();
    assert_eq!(m.name, "tiny-random");
    assert_eq!(m.geometry.samples_per_latent_frame(), 1920);
    assert_eq!(m.text.as_ref().unwrap().vocab.len(), 48);
    let parity = m.parity.as_ref().unwrap();
    let graphs: Vec<GraphKind> = parity.runs.iter().map(|r| r.graph).collect();
    assert_eq!(
        graphs,
        [
            GraphKind::Dit,
            GraphKind::Decoder,
            GraphKind::Encoder,
            GraphKind::Text
        ]
    );
    for run in &parity.runs {
        for tensor in run.inputs.iter().chain(&run.outputs) {
            let n = match tensor.read().unwrap() {
                TensorData::F32(v) => {
                    assert!(v.iter().all(|x| x.is_finite()), "{}", tensor.name);
                    v.len()
                }
                TensorData::I64(v) => v.len(),
            };
            assert_eq!(n, tensor.elements());
        }
    }
    let total: u64 = fs::read_dir(tiny.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(total < 600_000, "the tiny bundle grew to {total} bytes");

    let again = make_test_bundle(&["--preset", "tiny"]);
    let other_seed = make_test_bundle(&["--preset", "tiny", "--seed", "1"]);
    for file in [
        "bundle.toml",
        "dit.onnx",
        "decoder.onnx",
        "parity/dit.velocity.bin",
    ] {
        let bytes = fs::read(tiny.path().join(file)).unwrap();
        assert_eq!(bytes, fs::read(again.path().join(file)).unwrap(), "{file}");
        if file != "bundle.toml" {
            assert_ne!(
                bytes,
                fs::read(other_seed.path().join(file)).unwrap(),
                "{file}"
            );
        }
    }
}

#[test]
fn a_default_prompt_is_read_when_every_word_is_a_tag() {
    let with = r#"file = "text.onnx"
default_prompt = "Piano, bass""#;
    let dir = bundle(&edited(r#"file = "text.onnx""#, with));
    let m = load(dir.path()).unwrap();
    assert_eq!(
        m.text.unwrap().default_prompt.as_deref(),
        Some("Piano, bass")
    );
    let dir = bundle(REFERENCE_MANIFEST);
    assert_eq!(load(dir.path()).unwrap().text.unwrap().default_prompt, None);
}

#[test]
fn a_default_prompt_with_unknown_words_or_none_is_refused() {
    let e = refusal(
        r#"file = "text.onnx""#,
        "file = \"text.onnx\"\ndefault_prompt = \"piano violin\"",
    );
    assert!(
        e.contains("[text] default_prompt") && e.contains("`violin` is not one"),
        "{e}"
    );
    let e = refusal(
        r#"file = "text.onnx""#,
        "file = \"text.onnx\"\ndefault_prompt = \" , \"",
    );
    assert!(e.contains("[text] default_prompt"), "{e}");
}
