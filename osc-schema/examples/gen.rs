//! Write docs/osc.md, the OSCQuery description and the client examples from the reference
//! knob list: `cargo run -p latentd-osc-schema --example gen`. The `generated_files` test
//! fails until their checked-in copies match.

use std::path::Path;

use latentd_osc_schema::{Schema, generate, reference_knobs};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let schema = Schema::new(reference_knobs())?;
    for file in generate::all(&schema) {
        let path = workspace.join(file.path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, &file.bytes)?;
        println!("wrote {} ({} bytes)", file.path, file.bytes.len());
    }
    Ok(())
}
