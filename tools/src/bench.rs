//! `latentctl bench`: measurements against a running latentd from outside.
//!
//! - `knob-to-ear`: sends `/knob/ch_g* 0` and `1` in turn over UDP while a JACK capture
//!   client connected to the daemon's `out_1`/`out_2` timestamps the output in JACK frames
//!   (see `capture` for the clock, `detect` for what counts as heard). Each change is sent
//!   once the previous one was heard and `--interval-ms` has passed, so changes never
//!   overlap. Reports p50/p95/p99 and jitter, per edge and overall, and the daemon's xruns
//!   and late landings (`/status`) before and after. `--flood-rate` floods another knob at
//!   the same time (see `flood`).
//! - `flood`: only the flood, for a given time.
//!
//! Threading: the main thread sends, drains the capture queue and analyses; JACK's threads
//! run the capture callbacks; a helper thread runs the flood when asked.

mod flood;

#[cfg(feature = "jack")]
mod capture;
#[cfg(feature = "jack")]
mod detect;
#[cfg(feature = "jack")]
mod knob_to_ear;
#[cfg(feature = "jack")]
mod report;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::{Args, Subcommand};
use latentd_osc_schema::Schema;
use latentd_osc_schema::rosc::OscType;

use crate::{Cli, Failure};
use flood::FloodPlan;

/// `latentctl bench ...`.
#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    which: Which,
}

#[derive(Subcommand)]
enum Which {
    /// Time from an OSC knob change to the first changed output sample, via JACK capture.
    KnobToEar(KnobToEarArgs),
    /// Send knob messages at a fixed rate for a fixed time.
    Flood(FloodArgs),
}

/// Options of `bench knob-to-ear`.
#[derive(Args)]
pub struct KnobToEarArgs {
    /// Changes to send (alternating gains 0 and 1, starting with 0).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub count: u32,
    /// Pause after a change is heard before the next is sent, ms.
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub interval_ms: u64,
    /// The daemon's JACK client name (its ports are NAME:out_1 and NAME:out_2).
    #[arg(long, default_value = "latentd")]
    pub client_name: String,
    /// This bench's own JACK client name.
    #[arg(long, default_value = "latentctl-bench")]
    pub capture_name: String,
    /// Exactly-zero frames (both channels) that make a silent run.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=48_000))]
    pub silence_frames: u64,
    /// Seconds to wait for a change to be heard before counting it as missed.
    #[arg(long, default_value_t = 5.0, value_parser = seconds)]
    pub detect_timeout: f64,
    /// Write the full report as JSON here.
    #[arg(long, value_name = "FILE.json")]
    pub out: Option<PathBuf>,
    /// Flood another knob at this many messages per second during the measurement.
    #[arg(long, value_name = "PER_S", value_parser = rate)]
    pub flood_rate: Option<f64>,
    /// The knob the flood sets (not a ch_g*).
    #[arg(long, default_value = "denoise")]
    pub flood_knob: String,
    /// Longest flood, seconds (it also ends with the measurement).
    #[arg(long, default_value_t = 10.0, value_parser = seconds)]
    pub flood_seconds: f64,
    /// Sockets the flood spreads over [default: one per 1000 messages/s].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub flood_sockets: Option<u32>,
}

/// Options of `bench flood`.
#[derive(Args)]
struct FloodArgs {
    /// Messages per second.
    #[arg(long, default_value_t = 10_000.0, value_parser = rate)]
    rate: f64,
    /// How long, seconds.
    #[arg(long, default_value_t = 10.0, value_parser = seconds)]
    seconds: f64,
    /// The knob to set.
    #[arg(long, default_value = "denoise")]
    knob: String,
    /// Sockets to spread over [default: one per 1000 messages/s].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    sockets: Option<u32>,
}

fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 3600.0 => Ok(v),
        _ => Err(format!("{text:?} is not a number of seconds in (0, 3600]")),
    }
}

fn rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (1.0..=1_000_000.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{text:?} is not a rate in messages per second in [1, 1000000]"
        )),
    }
}

/// Run `latentctl bench ...`.
pub fn run(cli: &Cli, args: &BenchArgs, schema: &Schema) -> Result<(), Failure> {
    match &args.which {
        Which::Flood(f) => {
            let plan = flood_plan(
                cli,
                schema,
                &f.knob,
                f.rate,
                f.seconds,
                f.sockets.map(|s| s as usize),
            )?;
            let report = flood::run(&plan, &AtomicBool::new(false))
                .map_err(|e| Failure::Unreachable(format!("flood: {e}")))?;
            print!("{}", report.text());
            Ok(())
        }
        #[cfg(feature = "jack")]
        Which::KnobToEar(k) => knob_to_ear::run(cli, k, schema),
        #[cfg(not(feature = "jack"))]
        Which::KnobToEar(_) => Err(Failure::Usage(
            "bench knob-to-ear needs JACK: this latentctl was built without the `jack` feature"
                .into(),
        )),
    }
}

/// The daemon's OSC address from `--host` and `--port`.
fn server_addr(cli: &Cli) -> Result<SocketAddr, Failure> {
    (cli.host.as_str(), cli.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| Failure::Usage(format!("{}:{} is not an address", cli.host, cli.port)))
}

/// A flood of `knob` between 40 % and 60 % of its range.
fn flood_plan(
    cli: &Cli,
    schema: &Schema,
    knob: &str,
    rate: f64,
    seconds: f64,
    sockets: Option<usize>,
) -> Result<FloodPlan, Failure> {
    let spec = schema
        .knobs()
        .iter()
        .find(|k| k.name == knob)
        .ok_or_else(|| Failure::Usage(format!("no knob called {knob:?}")))?;
    if knob.starts_with("ch_g") {
        return Err(Failure::Usage(format!(
            "the flood cannot use {knob}: the bench detects changes through the ch_g* gains"
        )));
    }
    let address = format!("/knob/{knob}");
    let at = |share: f64| {
        let v = spec.min + share * (spec.max - spec.min);
        let word = if spec.integer {
            format!("{}", v.round())
        } else {
            format!("{v}")
        };
        crate::args::typed_args(schema, &address, &[word])
            .map_err(Failure::Usage)
            .and_then(|mut a| {
                a.pop()
                    .ok_or_else(|| Failure::Usage(format!("{address} takes no value")))
            })
    };
    let values: [OscType; 2] = [at(0.4)?, at(0.6)?];
    Ok(FloodPlan {
        server: server_addr(cli)?,
        address,
        values,
        rate,
        duration: Duration::from_secs_f64(seconds),
        sockets: sockets.unwrap_or_else(|| flood::default_sockets(rate)),
    })
}
