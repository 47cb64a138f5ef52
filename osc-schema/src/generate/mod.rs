//! Generators: everything derived from the table for people and other programs.
//! `docs/osc.md`, the OSCQuery description and the client examples are produced here, written
//! by `cargo run -p latentd-osc-schema --example gen`, and checked by a test that regenerates
//! each into memory and compares it with the checked-in file.
//!
//! Threading: pure functions; usable from any thread.

mod clients;
mod markdown;
mod oscquery;
mod touchosc;

pub use markdown::markdown;
pub use oscquery::{METER_PATH, oscquery};
pub use touchosc::{touchosc_layout_xml, zlib_stored};

use crate::schema::Schema;

/// Default OSC port of the daemon (UDP and TCP), used in docs and examples.
pub const DEFAULT_PORT: u16 = 7770;
/// Default bind address of the daemon.
pub const DEFAULT_HOST: &str = "127.0.0.1";

/// One generated file: its path relative to the workspace root, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// Path relative to the workspace root.
    pub path: &'static str,
    /// Exact content.
    pub bytes: Vec<u8>,
}

/// Every generated file for `schema` (use [`crate::reference_knobs`] for the checked-in set).
pub fn all(schema: &Schema) -> Vec<GeneratedFile> {
    let json = serde_json::to_string_pretty(&oscquery(schema, None))
        .expect("JSON values serialize")
        + "\n";
    let layout = touchosc_layout_xml(schema);
    let file = |path, text: String| GeneratedFile {
        path,
        bytes: text.into_bytes(),
    };
    vec![
        file("docs/osc.md", markdown(schema)),
        file("examples/osc/README.md", clients::readme()),
        file("examples/osc/oscquery.json", json),
        file("examples/osc/latentd.scd", clients::supercollider(schema)),
        file("examples/osc/latentd.maxpat", clients::max_patch(schema)),
        file("examples/osc/latentd.pd", clients::pure_data(schema)),
        file("examples/osc/latentd_client.py", clients::python(schema)),
        GeneratedFile {
            path: "examples/osc/touchosc/latentd.tosc",
            bytes: zlib_stored(layout.as_bytes()),
        },
        file("examples/osc/touchosc/latentd.xml", layout),
    ]
}

/// Format a bound for humans: integers without a fraction.
pub(crate) fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}
