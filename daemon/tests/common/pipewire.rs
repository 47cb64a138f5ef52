//! The PipeWire tests' common steps: skip (or fail, under `LATENTD_REQUIRE_PIPEWIRE=1`)
//! when the graph or a tool is missing, and look a node up in the graph.

use std::process::Stdio;
use std::time::{Duration, Instant};

use latentd_tests::pipewire_graph::PipeWireGraph;

use super::service_fixture::Daemon;

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

/// Wait (up to 10 s) until the graph lists `daemon`'s node `name`; panics with the daemon's
/// and the graph's logs otherwise.
pub fn wait_for_node(graph: &PipeWireGraph, daemon: &Daemon, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !has_node(graph, name) {
        assert!(
            Instant::now() < deadline,
            "no node {name} in the graph:\n{}\n{}",
            daemon.lines().join("\n"),
            graph.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The environment a daemon needs to join `graph` (as `Launch::env`): the graph's client
/// variables, and `PIPEWIRE_REMOTE` naming its socket (the fixture points it nowhere).
pub fn daemon_env(graph: &PipeWireGraph) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&'static str, String)> = graph
        .client_env()
        .into_iter()
        .map(|(k, v)| (k, v.to_string_lossy().into_owned()))
        .collect();
    env.push(("PIPEWIRE_REMOTE", "pipewire-0".to_owned()));
    env
}
