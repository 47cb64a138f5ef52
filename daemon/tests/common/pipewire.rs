//! The PipeWire tests' common steps: skip (or fail, under `LATENTD_REQUIRE_PIPEWIRE=1`)
//! when the graph or a tool is missing, and look a node up in the graph.

use std::process::Stdio;

use latentd_tests::pipewire_graph::PipeWireGraph;

/// Skip `test` saying why, or panic when `LATENTD_REQUIRE_PIPEWIRE=1` (scripts/test.sh).
pub fn skip_or_fail(test: &str, reason: &str) {
    if std::env::var("LATENTD_REQUIRE_PIPEWIRE").as_deref() == Ok("1") {
        panic!("pipewire test required (LATENTD_REQUIRE_PIPEWIRE=1) but: {reason}");
    }
    println!("SKIPPED: {test}: {reason}");
}

/// Whether `program` is an executable found in `PATH`.
pub fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Whether the graph lists a node named `name` now.
pub fn has_node(graph: &PipeWireGraph, name: &str) -> bool {
    graph
        .command("pw-cli")
        .args(["ls", "Node"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| {
            String::from_utf8_lossy(&out.stdout).contains(&format!("node.name = \"{name}\""))
        })
}
