//! `latentctl`: command-line companion of latentd.
//!
//! - `send ADDRESS [ARGS...]`: send one message. Over UDP nothing is awaited; over TCP it
//!   returns once the server has applied it (the server closes its side after reading ours),
//!   and a `/fail` exits 1.
//! - `query ADDRESS [ARGS...]`: send it, then `/sync <id>`; print every reply until
//!   `/synced <id>` (so commands without a reply finish at once, and asynchronous ones after
//!   their `/done`). `/fail` prints the reason and exits 1.
//! - `watch`: `/notify 1`, then print every push with a UTC timestamp until Ctrl-C (or
//!   SIGTERM), then `/notify 0`.
//! - `status`: `/status`, printed as named fields.
//! - `golden`: the knob-to-ear golden run (`latentd_engine::runner::golden`) with an
//!   in-process engine, in simulated time (`--sim`) or in real time on an audio output
//!   (`--realtime --audio null|jack`).
//! - `bench knob-to-ear`, `bench flood`: external measurements (see `bench`).
//! - `check-bundle DIR`: validate a model bundle and run its parity vectors (see
//!   `check_bundle`); exit 2 with one `latentctl: error: ...` line on the first failure.
//!
//! Arguments are typed by the schema (see `args`). Exit status: 0 success, 1 the server
//! answered `/fail`, 2 bad command line, 3 no reply within `--timeout` or a network error.
//!
//! Threading: a plain command-line program; one thread (signal-hook sets a flag for Ctrl-C),
//! except `bench`, which has JACK's threads and a flood thread besides (see `bench`).

mod args;
mod bench;
mod check_bundle;
mod golden;
mod link;
mod show;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use latentd_osc_schema::rosc::{OscMessage, OscPacket, OscType};
use latentd_osc_schema::{Schema, reference_knobs};

use link::{Link, Transport};

/// Command-line companion of latentd: send, query and watch over OSC.
#[derive(Parser)]
#[command(name = "latentctl", version, about)]
struct Cli {
    /// Server host name or address.
    #[arg(long, global = true, default_value = "127.0.0.1")]
    host: String,
    /// Server OSC port.
    #[arg(long, global = true, default_value_t = 7770)]
    port: u16,
    /// Use TCP with OSC 1.0 size-prefix framing instead of UDP.
    #[arg(long, global = true)]
    tcp: bool,
    /// Use TCP with OSC 1.1 SLIP framing (implies --tcp).
    #[arg(long, global = true)]
    slip: bool,
    /// Seconds to wait for replies.
    #[arg(long, global = true, default_value_t = 2.0, value_parser = parse_timeout)]
    timeout: f64,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send one message (over TCP: wait until applied, exit 1 on /fail; over UDP: do not wait).
    Send {
        /// OSC address or pattern, e.g. /knob/denoise or /knob/ch_g*.
        address: String,
        /// Arguments: typed by the schema, or explicitly as f:0.5 d:0.5 i:3 h:3 s:text.
        #[arg(allow_negative_numbers = true)]
        args: Vec<String>,
    },
    /// Send one message and print the replies; exit 1 on /fail, 3 on timeout.
    Query {
        /// OSC address or pattern.
        address: String,
        /// Arguments, as for `send`.
        #[arg(allow_negative_numbers = true)]
        args: Vec<String>,
    },
    /// Subscribe (/notify 1) and print every push with a timestamp until Ctrl-C.
    Watch,
    /// Print /status.reply as named fields.
    Status,
    /// Knob-to-ear golden run (in-process engine): per action kind ack_gap, next_slice,
    /// audible_first, audible_full (p50/p95/p99) and the stream figures.
    Golden(golden::GoldenArgs),
    /// Measure a running latentd from outside: knob-to-ear via JACK capture, OSC floods.
    Bench(bench::BenchArgs),
    /// Check a model bundle: manifest, graphs on ONNX Runtime, parity vectors.
    CheckBundle(check_bundle::CheckBundleArgs),
}

/// Why a command did not succeed; each maps to an exit status.
enum Failure {
    /// The command line is wrong (2).
    Usage(String),
    /// The server answered `/fail` (1).
    Refused(String),
    /// No reply in time, or the network failed (3).
    Unreachable(String),
}

fn parse_timeout(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 3600.0 => Ok(v),
        _ => Err(format!("{text:?} is not a number of seconds in (0, 3600]")),
    }
}

// `golden --realtime` runs an output's realtime callback in this process, under
// `assert_no_alloc` in debug builds as in the daemon.
#[cfg(debug_assertions)]
#[global_allocator]
static ALLOCATOR: assert_no_alloc::AllocDisabler = assert_no_alloc::AllocDisabler;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let (code, text) = match failure {
                Failure::Refused(why) => (1, format!("failed: {why}")),
                Failure::Usage(why) => (2, why),
                Failure::Unreachable(why) => (3, why),
            };
            eprintln!("latentctl: {text}");
            ExitCode::from(code)
        }
    }
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let schema = Schema::new(reference_knobs()).map_err(Failure::Usage)?;
    let packet = |address: &str, words: &[String]| {
        args::typed_args(&schema, address, words)
            .map(|args| message(address, args))
            .map_err(Failure::Usage)
    };
    match &cli.command {
        Cmd::Send { address, args } => {
            let packet = packet(address, args)?;
            let mut link = connect(cli)?;
            link.send(&packet).map_err(|e| network(&link, e))?;
            let deadline = Instant::now() + timeout(cli);
            match link.finish(deadline).map_err(|e| network(&link, e))? {
                Some(replies) => {
                    let fail = replies
                        .iter()
                        .flat_map(show::messages)
                        .find_map(show::failure);
                    fail.map_or(Ok(()), |why| Err(Failure::Refused(why)))
                }
                None => Err(Failure::Unreachable(format!(
                    "{} did not confirm within {} s that the message was applied",
                    link.describe(),
                    cli.timeout
                ))),
            }
        }
        Cmd::Query { address, args } => {
            let packet = packet(address, args)?;
            let mut link = connect(cli)?;
            for reply in exchange(&mut link, &packet, timeout(cli))? {
                println!("{}", show::message(&reply));
            }
            Ok(())
        }
        Cmd::Status => {
            let mut link = connect(cli)?;
            let replies = exchange(&mut link, &message("/status", vec![]), timeout(cli))?;
            let reply = replies
                .iter()
                .find(|m| m.addr == "/status.reply")
                .ok_or_else(|| {
                    Failure::Unreachable(format!("{} sent no /status.reply", link.describe()))
                })?;
            print!("{}", show::status(reply).map_err(Failure::Unreachable)?);
            Ok(())
        }
        Cmd::Watch => watch(cli),
        Cmd::Golden(args) => golden::run(args.clone()).map_err(|e| Failure::Refused(e.to_string())),
        Cmd::Bench(args) => bench::run(cli, args, &schema),
        Cmd::CheckBundle(args) => {
            check_bundle::run(args).map_err(|e| Failure::Usage(format!("error: {e}")))
        }
    }
}

fn timeout(cli: &Cli) -> Duration {
    Duration::from_secs_f64(cli.timeout)
}

fn connect(cli: &Cli) -> Result<Link, Failure> {
    let transport = match (cli.tcp, cli.slip) {
        (_, true) => Transport::TcpSlip,
        (true, false) => Transport::TcpSizePrefix,
        (false, false) => Transport::Udp,
    };
    Link::connect(&cli.host, cli.port, transport, timeout(cli)).map_err(|e| {
        Failure::Unreachable(format!(
            "cannot reach {transport}://{}:{}: {e}",
            cli.host, cli.port
        ))
    })
}

fn message(address: &str, args: Vec<OscType>) -> OscPacket {
    OscPacket::Message(OscMessage {
        addr: address.to_string(),
        args,
    })
}

fn network(link: &Link, e: std::io::Error) -> Failure {
    Failure::Unreachable(format!("{}: {e}", link.describe()))
}

/// Send `packet`, then `/sync <id>`; collect the replies until `/synced <id>`.
fn exchange(
    link: &mut Link,
    packet: &OscPacket,
    timeout: Duration,
) -> Result<Vec<OscMessage>, Failure> {
    let mut replies = Vec::new();
    exchange_with(link, packet, timeout, &mut |m| replies.push(m.clone()))?;
    Ok(replies)
}

/// Send `packet`, then `/sync <id>`; hand every other message to `reply` until
/// `/synced <id>`. A `/fail` ends it.
fn exchange_with(
    link: &mut Link,
    packet: &OscPacket,
    timeout: Duration,
    reply: &mut dyn FnMut(&OscMessage),
) -> Result<(), Failure> {
    let id = sync_id();
    link.send(packet).map_err(|e| network(link, e))?;
    link.send(&message("/sync", vec![OscType::Int(id)]))
        .map_err(|e| network(link, e))?;
    let deadline = Instant::now() + timeout;
    loop {
        let Some(packet) = link.recv(deadline).map_err(|e| network(link, e))? else {
            return Err(no_reply(link, timeout));
        };
        for m in show::messages(&packet) {
            if let Some(why) = show::failure(m) {
                return Err(Failure::Refused(why));
            }
            if m.addr == "/synced" && m.args == [OscType::Int(id)] {
                return Ok(());
            }
            reply(m);
        }
    }
}

fn no_reply(link: &Link, timeout: Duration) -> Failure {
    Failure::Unreachable(format!(
        "no reply from {} within {} s (is latentd running there?)",
        link.describe(),
        timeout.as_secs_f64()
    ))
}

/// A `/sync` id unlikely to collide with another client's.
fn sync_id() -> i32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    ((nanos ^ (std::process::id() << 12)) & 0x7fff_ffff) as i32
}

/// `/notify 1` (renewed before its lease ends), print pushes until SIGINT or SIGTERM, then
/// `/notify 0`.
fn watch(cli: &Cli) -> Result<(), Failure> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| Failure::Usage(format!("cannot handle signal {signal}: {e}")))?;
    }
    let mut link = connect(cli)?;
    let notify = |on| message("/notify", vec![OscType::Int(on)]);
    // Pushes can arrive before the subscription is confirmed and after it is withdrawn.
    let mut print = |m: &OscMessage| {
        let done_notify =
            m.addr == "/done" && m.args.first() == Some(&OscType::String("/notify".into()));
        if !done_notify {
            println!("{} {}", show::timestamp_now(), show::message(m));
        }
    };
    exchange_with(&mut link, &notify(1), timeout(cli), &mut print)?;
    eprintln!("latentctl: watching {} (Ctrl-C to stop)", link.describe());
    // A UDP subscription is a lease and a quiet TCP connection is closed: renew well before.
    let renew_every = latentd_osc_schema::limits::UDP_SUBSCRIPTION_LEASE
        .min(latentd_osc_schema::limits::TCP_IDLE_TIMEOUT)
        / 3;
    let mut renewed = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if renewed.elapsed() >= renew_every {
            link.send(&notify(1)).map_err(|e| network(&link, e))?;
            renewed = Instant::now();
        }
        let deadline = Instant::now() + Duration::from_millis(100);
        if let Some(push) = link.recv(deadline).map_err(|e| network(&link, e))? {
            show::messages(&push).into_iter().for_each(&mut print);
        }
    }
    exchange_with(&mut link, &notify(0), timeout(cli), &mut print)
}
