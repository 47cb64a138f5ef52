//! `latentctl`: command-line companion of latentd (send, query, watch, bench).
//!
//! Subcommands:
//! - `golden`: the knob-to-ear golden run ([`golden`]), in simulated time (`--sim`) or in
//!   real time against an audio output (`--realtime --audio null|jack`).
//!
//! Threading: a plain command-line program; `golden --realtime` starts the output's
//! realtime callback and the engine thread (see `latentd_engine::runner::golden`).

mod golden;

use clap::{Parser, Subcommand};

// The output's realtime callback runs under `assert_no_alloc` in debug builds, as in the
// daemon.
#[cfg(debug_assertions)]
#[global_allocator]
static ALLOCATOR: assert_no_alloc::AllocDisabler = assert_no_alloc::AllocDisabler;

/// Command-line companion of latentd.
#[derive(Parser)]
#[command(name = "latentctl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Knob-to-ear golden run: per action kind ack_gap, next_slice, audible_first,
    /// audible_full (p50/p95/p99) and the stream figures.
    Golden(golden::GoldenArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Golden(args) => golden::run(args),
    };
    if let Err(e) = result {
        eprintln!("latentctl: {e}");
        std::process::exit(1);
    }
}
