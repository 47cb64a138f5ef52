//! `latentctl`: command-line companion of latentd (send, query, watch, bench).
//!
//! Threading: a plain command-line program; one thread.

use clap::Parser;

/// Command-line companion of latentd. Its subcommands arrive with the OSC and runner issues.
#[derive(Parser)]
#[command(name = "latentctl", version, about)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
}
