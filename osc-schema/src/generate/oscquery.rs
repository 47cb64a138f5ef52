//! The OSCQuery namespace description (JSON): `FULL_PATH`, `TYPE`, `RANGE`, `DESCRIPTION`,
//! `ACCESS` (0 none, 1 read, 2 write, 3 both), `VALUE`, nested in `CONTENTS`.

use serde_json::{Map, Value, json};

use crate::limits::METER_MAX_HZ;
use crate::reply::{Level, METER_CHANNELS, level_arg_names};
use crate::schema::Schema;
use crate::table::{ADDRESSES, ArgType, Route};

/// Where OSCQuery shows the output's levels (read-only; the daemon fills `VALUE`).
pub const METER_PATH: &str = "/meter";

/// Describe every address. `values` (one per knob, in schema order) fills `VALUE`; `None`
/// uses the knob defaults.
pub fn oscquery(schema: &Schema, values: Option<&[f64]>) -> Value {
    let mut root = node("/", "latentd OSC namespace");
    for (i, k) in schema.knobs().iter().enumerate() {
        let value = values.and_then(|v| v.get(i).copied()).unwrap_or(k.default);
        let ty = k.reply_tag().to_string();
        let mut leaf = node(&format!("/knob/{}", k.name), k.doc);
        leaf.insert("TYPE".into(), json!(ty));
        leaf.insert("ACCESS".into(), json!(3));
        leaf.insert("RANGE".into(), json!([{ "MIN": k.min, "MAX": k.max }]));
        leaf.insert("VALUE".into(), json!([value]));
        if !k.unit.is_empty() {
            leaf.insert("UNIT".into(), json!([k.unit]));
        }
        insert(&mut root, &format!("/knob/{}", k.name), leaf);
    }
    for spec in ADDRESSES.iter().filter(|s| s.route != Route::Knob) {
        let mut leaf = node(spec.address, spec.doc);
        let types: String = spec.args.iter().map(|a| a.ty.tag()).collect();
        if !types.is_empty() {
            leaf.insert("TYPE".into(), json!(types));
            let ranges: Vec<Value> = spec
                .args
                .iter()
                .map(|a| match (spec.route, a.ty) {
                    (Route::Notify, _) => json!({ "VALS": [0, 1] }),
                    (Route::NotifyMeter, _) => json!({ "MIN": 0.0, "MAX": METER_MAX_HZ }),
                    (_, ArgType::Number) => json!({ "MIN": 0.0 }),
                    _ => Value::Null,
                })
                .collect();
            if ranges.iter().any(|r| !r.is_null()) {
                leaf.insert("RANGE".into(), json!(ranges));
            }
        }
        leaf.insert("ACCESS".into(), json!(2));
        insert(&mut root, spec.address, leaf);
    }
    let mut meter = node(
        METER_PATH,
        &format!(
            "The output's levels over its last period, read-only: {} (dBFS; {} for silence). \
             Clients that want them pushed send /notify/meter <hz>.",
            level_arg_names().join(", "),
            Level::FLOOR_DBFS
        ),
    );
    meter.insert("TYPE".into(), json!("ff".repeat(METER_CHANNELS)));
    meter.insert("ACCESS".into(), json!(1));
    meter.insert(
        "RANGE".into(),
        json!(vec![
            json!({ "MIN": Level::FLOOR_DBFS });
            2 * METER_CHANNELS
        ]),
    );
    meter.insert(
        "VALUE".into(),
        json!(vec![Level::FLOOR_DBFS; 2 * METER_CHANNELS]),
    );
    meter.insert("UNIT".into(), json!(vec!["dBFS"; 2 * METER_CHANNELS]));
    insert(&mut root, METER_PATH, meter);
    Value::Object(root)
}

fn node(path: &str, doc: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("FULL_PATH".into(), json!(path));
    m.insert("DESCRIPTION".into(), json!(doc));
    m
}

/// Put `leaf` at `path`, creating container nodes (ACCESS 0) on the way and keeping what an
/// existing node already holds (`/timbre` is both a method and the parent of `/timbre/clear`).
fn insert(root: &mut Map<String, Value>, path: &str, leaf: Map<String, Value>) {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut current = root;
    let mut prefix = String::new();
    for part in &parts {
        prefix.push('/');
        prefix.push_str(part);
        let contents = current
            .entry("CONTENTS")
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .expect("CONTENTS is an object");
        let child = contents.entry(part.to_string()).or_insert_with(|| {
            let mut c = node(&prefix, "");
            c.insert("ACCESS".into(), json!(0));
            Value::Object(c)
        });
        current = child.as_object_mut().expect("nodes are objects");
    }
    for (k, v) in leaf {
        current.insert(k, v);
    }
}
