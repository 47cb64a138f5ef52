//! `bench knob-to-ear`: the measurement loop (see the parent module for the protocol).
//!
//! Steps: open the capture; read `/status`; send gains 1 and wait until the output has
//! sounded for half a second; start the flood if asked; then for each change: pause
//! `--interval-ms` (draining the capture), stamp `jack_frame_time`, send the pre-encoded
//! datagram at once, and drain until the detector hears it or `--detect-timeout` passes.
//! Finally restore gains 1, stop the flood, read `/status` again, print and write the report.
//!
//! Threading: main thread (plus the flood's helper thread and JACK's threads).

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use latentd_osc_schema::Schema;
use latentd_osc_schema::rosc::{OscMessage, OscPacket, OscType, decoder, encoder};

use super::capture::Capture;
use super::detect::{Detector, Edge, Heard};
use super::flood;
use super::report::{Change, DaemonCounters, JackSide, Report, Summaries};
use super::{KnobToEarArgs, flood_plan, server_addr};
use crate::{Cli, Failure};

/// The address every change is sent to.
const GAINS: &str = "/knob/ch_g*";
/// Audio the capture queue holds while the main thread is busy, seconds.
const QUEUE_SECONDS: f64 = 20.0;
/// How long the output must sound before the first change, seconds.
const WARM_UP_SOUNDING_S: f64 = 0.5;
/// How long the daemon may take to sound at all, seconds.
const WARM_UP_TIMEOUT_S: f64 = 30.0;
/// How the clock is read, for the report.
const CLOCK: &str = "send: jack_frame_time() immediately before send(2) on a connected UDP \
    socket, clamped to the first frame of the next cycle when the server runs late; heard: jack_last_frame_time() of the capture cycle + sample index (the daemon \
    feeds the capture client, so it runs first in the same cycle); resolution 1 frame";

/// `/status.reply` argument positions.
const XRUNS: usize = 8;
const LATE_LANDINGS: usize = 9;
const LAST_KNOB_TO_EAR_MS: usize = 10;

/// Run the measurement.
pub fn run(cli: &Cli, args: &KnobToEarArgs, schema: &Schema) -> Result<(), Failure> {
    let server = server_addr(cli)?;
    let flood_plan = args
        .flood_rate
        .map(|rate| {
            flood_plan(
                cli,
                schema,
                &args.flood_knob,
                rate,
                args.flood_seconds,
                args.flood_sockets.map(|s| s as usize),
            )
        })
        .transpose()?;
    let packets = [
        gain_packet(Edge::ToSilence.gain())?,
        gain_packet(Edge::ToSound.gain())?,
    ];
    let packet = |edge: Edge| &packets[usize::from(edge == Edge::ToSound)];

    let mut capture = Capture::start(&args.capture_name, &args.client_name, QUEUE_SECONDS)
        .map_err(Failure::Unreachable)?;
    let rate = capture.sample_rate();
    let before = status(cli)?;
    let socket = UdpSocket::bind(if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .and_then(|s| s.connect(server).map(|()| s))
    .and_then(|s| s.set_nonblocking(true).map(|()| s))
    .map_err(|e| Failure::Unreachable(format!("udp://{server}: {e}")))?;
    let send = |edge: Edge| {
        socket
            .send(packet(edge))
            .map(drop)
            .map_err(|e| Failure::Unreachable(format!("udp://{server}: {e}")))
    };

    // Warm-up: gains 1, then half a second of sound.
    let mut detector = Detector::new(args.silence_frames);
    send(Edge::ToSound)?;
    let warm = Instant::now() + Duration::from_secs_f64(WARM_UP_TIMEOUT_S);
    let needed = (f64::from(rate) * WARM_UP_SOUNDING_S) as u64;
    while !detector.sounding_for(needed) {
        if Instant::now() > warm {
            capture.stop();
            return Err(Failure::Unreachable(format!(
                "{}:out_1/out_2 did not sound for {WARM_UP_SOUNDING_S} s within \
                 {WARM_UP_TIMEOUT_S} s after {GAINS} 1 (is the engine running?)",
                args.client_name
            )));
        }
        capture.drain(|f, l, r| {
            detector.feed(f, l, r);
        });
        check_fail(&socket)?;
        std::thread::sleep(Duration::from_millis(2));
    }
    detector.accept_sounding();

    let flooding = Arc::new(AtomicBool::new(false));
    let stop_flood = Arc::new(AtomicBool::new(false));
    let flood_thread = flood_plan.map(|plan| {
        flooding.store(true, Ordering::SeqCst);
        let (flooding, stop) = (flooding.clone(), stop_flood.clone());
        std::thread::spawn(move || {
            let report = flood::run(&plan, &stop);
            flooding.store(false, Ordering::SeqCst);
            report
        })
    });

    let interval = Duration::from_millis(args.interval_ms);
    let timeout = Duration::from_secs_f64(args.detect_timeout);
    let mut changes = Vec::with_capacity(args.count as usize);
    let mut edge = Edge::ToSilence;
    let mut last_state = Edge::ToSound;
    let mut clamped_sends = 0;
    for index in 0..args.count as usize {
        pump(&mut capture, &mut detector, Instant::now() + interval);
        check_fail(&socket)?;
        note_reversion(&mut changes, detector.take_reversion(), rate);
        let during_flood = flooding.load(Ordering::SeqCst);
        let (sent, clamped) = capture.frame_now();
        send(edge)?;
        clamped_sends += usize::from(clamped);
        detector.arm(edge, sent);
        let heard = pump(&mut capture, &mut detector, Instant::now() + timeout);
        if heard.is_none() {
            detector.disarm();
        }
        last_state = edge;
        changes.push(change(index, edge, sent, heard, rate, during_flood));
        edge = edge.next();
    }
    pump(&mut capture, &mut detector, Instant::now() + interval);
    note_reversion(&mut changes, detector.take_reversion(), rate);
    if last_state != Edge::ToSound {
        send(Edge::ToSound)?;
    }
    stop_flood.store(true, Ordering::SeqCst);
    let flood = match flood_thread.map(|t| t.join()) {
        Some(Ok(Ok(report))) => Some(report),
        Some(Ok(Err(e))) => return Err(Failure::Unreachable(format!("flood: {e}"))),
        Some(Err(_)) => return Err(Failure::Unreachable("the flood thread panicked".into())),
        None => None,
    };
    check_fail(&socket)?;
    let after = status(cli)?;
    let jack = JackSide {
        sample_rate: rate,
        period_frames: capture.period_frames(),
        playback_latency_frames: capture.playback_latency(),
        capture_xruns: capture.xruns(),
        capture_dropped_cycles: capture.dropped_cycles(),
    };
    capture.stop();

    let clean = |c: &Change| c.clean && c.latency_ms.is_some();
    let report = Report {
        bench: "knob-to-ear",
        address: GAINS.into(),
        server: format!("udp://{server}"),
        client_name: args.client_name.clone(),
        silence_run_frames: args.silence_frames,
        clock: CLOCK,
        sent: changes.len(),
        detected: changes.iter().filter(|c| c.latency_ms.is_some()).count(),
        clean: changes.iter().filter(|c| clean(c)).count(),
        clamped_sends,
        reverted: changes
            .iter()
            .filter(|c| c.reverted_after_ms.is_some())
            .count(),
        latency: Summaries::of(&changes, clean),
        latency_during_flood: flood
            .as_ref()
            .map(|_| Summaries::of(&changes, |c| clean(c) && c.during_flood)),
        jack,
        daemon: DaemonCounters {
            xruns_before: int_at(&before, XRUNS)?,
            xruns_after: int_at(&after, XRUNS)?,
            late_landings_before: int_at(&before, LATE_LANDINGS)?,
            late_landings_after: int_at(&after, LATE_LANDINGS)?,
            internal_last_knob_to_ear_ms: match after.args.get(LAST_KNOB_TO_EAR_MS) {
                Some(OscType::Float(v)) if *v >= 0.0 => Some(f64::from(*v)),
                _ => None,
            },
        },
        flood,
        changes,
    };
    print!("{}", report.text());
    if let Some(path) = &args.out {
        let json = serde_json::to_string_pretty(&report).expect("the report serializes");
        std::fs::write(path, json + "\n")
            .map_err(|e| Failure::Usage(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Drain the capture into the detector until `deadline`, or until the armed change is heard.
fn pump(capture: &mut Capture, detector: &mut Detector, deadline: Instant) -> Option<Heard> {
    let mut heard = None;
    loop {
        capture.drain(|f, l, r| {
            if let Some(h) = detector.feed(f, l, r) {
                heard = Some(h);
            }
        });
        if heard.is_some() || Instant::now() >= deadline {
            return heard;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn change(
    index: usize,
    edge: Edge,
    sent: u64,
    heard: Option<Heard>,
    rate: u32,
    during_flood: bool,
) -> Change {
    let latency = heard.map(|h| h.frame.saturating_sub(sent));
    Change {
        index,
        edge,
        sent_frame: sent,
        heard_frame: heard.map(|h| h.frame),
        latency_frames: latency,
        latency_ms: latency.map(|f| f as f64 * 1000.0 / f64::from(rate)),
        clean: heard.is_some_and(|h| h.clean),
        during_flood,
        reverted_after_ms: None,
    }
}

/// Attach a reversion seen before the next send to the newest change that was heard.
fn note_reversion(changes: &mut [Change], at: Option<u64>, rate: u32) {
    if let (Some(at), Some(last)) = (at, changes.last_mut())
        && let Some(heard) = last.heard_frame
    {
        last.reverted_after_ms = Some(at.saturating_sub(heard) as f64 * 1000.0 / f64::from(rate));
    }
}

fn gain_packet(gain: f32) -> Result<Vec<u8>, Failure> {
    encoder::encode(&OscPacket::Message(OscMessage {
        addr: GAINS.into(),
        args: vec![OscType::Float(gain)],
    }))
    .map_err(|e| Failure::Usage(format!("cannot encode {GAINS} {gain}: {e}")))
}

/// A `/fail` the daemon sent back to the change socket ends the bench with its reason.
fn check_fail(socket: &UdpSocket) -> Result<(), Failure> {
    let mut buf = [0u8; 2048];
    while let Ok(n) = socket.recv(&mut buf) {
        if let Ok((_, packet)) = decoder::decode_udp(&buf[..n])
            && let Some(why) = crate::show::messages(&packet)
                .into_iter()
                .find_map(crate::show::failure)
        {
            return Err(Failure::Refused(why));
        }
    }
    Ok(())
}

fn status(cli: &Cli) -> Result<OscMessage, Failure> {
    let mut link = crate::connect(cli)?;
    let replies = crate::exchange(
        &mut link,
        &crate::message("/status", vec![]),
        crate::timeout(cli),
    )?;
    replies
        .into_iter()
        .find(|m| m.addr == "/status.reply")
        .ok_or_else(|| Failure::Unreachable(format!("{} sent no /status.reply", link.describe())))
}

fn int_at(m: &OscMessage, index: usize) -> Result<i64, Failure> {
    match m.args.get(index) {
        Some(OscType::Int(v)) => Ok(i64::from(*v)),
        Some(OscType::Long(v)) => Ok(*v),
        other => Err(Failure::Unreachable(format!(
            "/status.reply argument {index} is {other:?}, expected an integer"
        ))),
    }
}
