//! The checked-in docs and client examples equal what the schema generates now.

use std::path::Path;

use latentd_osc_schema::{Schema, generate, reference_knobs};

#[test]
fn checked_in_files_match_the_generators() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let schema = Schema::new(reference_knobs()).unwrap();
    let mut stale = Vec::new();
    for file in generate::all(&schema) {
        match std::fs::read(workspace.join(file.path)) {
            Ok(bytes) if bytes == file.bytes => {}
            Ok(_) => stale.push(format!("{} differs", file.path)),
            Err(e) => stale.push(format!("{}: {e}", file.path)),
        }
    }
    assert!(
        stale.is_empty(),
        "regenerate with `cargo run -p latentd-osc-schema --example gen`: {stale:?}"
    );
}

#[test]
fn reference_documents_every_address_and_knob() {
    let schema = Schema::new(reference_knobs()).unwrap();
    let md = generate::markdown(&schema);
    for spec in latentd_osc_schema::table::ADDRESSES {
        assert!(
            md.contains(&format!("### `{}`", spec.address)),
            "{} missing",
            spec.address
        );
    }
    for knob in reference_knobs() {
        assert!(
            md.contains(&format!("| `{}` |", knob.name)),
            "{} missing",
            knob.name
        );
    }
    assert!(md.contains("out of range for knob denoise: accepted [0, 1]"));
}

#[test]
fn oscquery_describes_knobs_with_range_and_value() {
    let schema = Schema::new(reference_knobs()).unwrap();
    let mut values: Vec<f64> = reference_knobs().iter().map(|k| k.default).collect();
    values[0] = 0.25;
    let json = generate::oscquery(&schema, Some(&values));
    let denoise = &json["CONTENTS"]["knob"]["CONTENTS"]["denoise"];
    assert_eq!(denoise["FULL_PATH"], "/knob/denoise");
    assert_eq!(denoise["TYPE"], "f");
    assert_eq!(denoise["ACCESS"], 3);
    assert_eq!(denoise["RANGE"][0]["MAX"], 1.0);
    assert_eq!(denoise["VALUE"][0], 0.25);
    let steps = &json["CONTENTS"]["knob"]["CONTENTS"]["steps"];
    assert_eq!(steps["TYPE"], "i");
    let timbre = &json["CONTENTS"]["timbre"];
    assert_eq!(timbre["TYPE"], "s");
    assert_eq!(timbre["CONTENTS"]["clear"]["FULL_PATH"], "/timbre/clear");
    assert_eq!(
        json["CONTENTS"]["transport"]["CONTENTS"]["seek"]["TYPE"],
        "f"
    );
}

#[test]
fn python_example_compiles() {
    let schema = Schema::new(reference_knobs()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.py");
    let py = generate::all(&schema)
        .into_iter()
        .find(|f| f.path.ends_with(".py"))
        .unwrap();
    std::fs::write(&path, &py.bytes).unwrap();
    let status = std::process::Command::new("python3")
        .args(["-m", "py_compile"])
        .arg(&path)
        .status()
        .expect("python3 runs");
    assert!(status.success());
}

#[test]
fn max_patch_lines_connect_existing_boxes() {
    let schema = Schema::new(reference_knobs()).unwrap();
    let patch: serde_json::Value = serde_json::from_str(
        &generate::all(&schema)[4]
            .bytes
            .iter()
            .map(|&b| b as char)
            .collect::<String>(),
    )
    .unwrap();
    let boxes = patch["patcher"]["boxes"].as_array().unwrap();
    let ids: Vec<&str> = boxes
        .iter()
        .map(|b| b["box"]["id"].as_str().unwrap())
        .collect();
    for line in patch["patcher"]["lines"].as_array().unwrap() {
        for end in ["source", "destination"] {
            let id = line["patchline"][end][0].as_str().unwrap();
            assert!(ids.contains(&id), "line to missing box {id}");
        }
    }
}

#[test]
fn pd_patch_connections_reference_existing_objects() {
    let schema = Schema::new(reference_knobs()).unwrap();
    let pd = generate::all(&schema)
        .into_iter()
        .find(|f| f.path.ends_with(".pd"))
        .unwrap();
    let text = String::from_utf8(pd.bytes).unwrap();
    let objects = text
        .lines()
        .filter(|l| l.starts_with("#X ") && !l.starts_with("#X connect"))
        .count();
    let mut connects = 0;
    for line in text.lines().filter(|l| l.starts_with("#X connect")) {
        let n: Vec<usize> = line
            .trim_end_matches(';')
            .split(' ')
            .skip(2)
            .map(|t| t.parse().unwrap())
            .collect();
        assert!(n[0] < objects && n[2] < objects, "{line}");
        connects += 1;
    }
    assert_eq!(connects, 3 + 2 * reference_knobs().len());
}
