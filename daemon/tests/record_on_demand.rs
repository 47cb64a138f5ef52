//! Recording on demand, on the real binary playing a quadrature tone into a private
//! `jackd -d dummy`, steered over real OSC on loopback, the files read back with hound:
//!
//! - `/record/start` and `/record/stop` give a valid WAV as long as the time between them
//!   (within a period or two), holding the tone unbroken, and the `/done` replies name it.
//! - With `[record] split_s = 1` a recording rolls over to new files, each valid, whose
//!   lengths add up to the whole.
//! - Bad names (absolute, `..`, not `.wav`, hidden, taken) are one `/fail` each and change
//!   nothing: no file, no recording.
//! - A full disk (a small private tmpfs as the media folder) stops the recording with the
//!   `record` alarm, leaves a valid WAV, and never stops the audio.
//!
//! Threading: libjack finds the private server through the process-wide
//! `JACK_DEFAULT_SERVER`, so each test holds a [`JackSession`] while its server runs.

mod common;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::jack_tone::{LEVEL, PERIOD, RATE, start_tone_daemon};
use common::osc_client::{Link, Transport, msg};
use common::service_fixture::{Daemon, NotifySocket};
use common::tmpfs::Tmpfs;
use latentd_tests::JackSession;
use rosc::{OscMessage, OscPacket, OscType};
use tempfile::TempDir;

const REPLY: Duration = Duration::from_secs(2);

/// A client that keeps the `/alarm` pushes it meets while waiting for a reply.
struct Client {
    link: Link,
    alarms: VecDeque<OscMessage>,
}

impl Client {
    /// The messages of the next packet within `limit`.
    fn next(&mut self, limit: Duration) -> Vec<OscMessage> {
        fn flatten(packet: OscPacket, out: &mut Vec<OscMessage>) {
            match packet {
                OscPacket::Message(m) => out.push(m),
                OscPacket::Bundle(b) => b.content.into_iter().for_each(|p| flatten(p, out)),
            }
        }
        let mut out = Vec::new();
        if let Some(packet) = self.link.recv(limit) {
            flatten(packet, &mut out);
        }
        out
    }

    /// Sends `addr args` and returns the `/done` or `/fail` that answers it.
    fn answer(&mut self, addr: &str, args: Vec<OscType>) -> OscMessage {
        self.link.send(&msg(addr, args));
        let end = Instant::now() + REPLY;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            for m in self.next(left) {
                if (m.addr == "/done" || m.addr == "/fail") && text(&m, 0) == addr {
                    return m;
                }
                if m.addr == "/alarm" {
                    self.alarms.push_back(m);
                }
            }
        }
        panic!("no /done or /fail for {addr} within {REPLY:?}");
    }

    /// The next `/alarm` within `limit`.
    fn alarm(&mut self, limit: Duration) -> Option<OscMessage> {
        let end = Instant::now() + limit;
        while self.alarms.is_empty() {
            let left = end.checked_duration_since(Instant::now())?;
            for m in self.next(left) {
                if m.addr == "/alarm" {
                    self.alarms.push_back(m);
                }
            }
        }
        self.alarms.pop_front()
    }

    /// `/done /record/stop <file> <seconds>` as (file, seconds).
    fn stop(&mut self) -> (String, f64) {
        let m = self.answer("/record/stop", vec![]);
        assert_eq!(m.addr, "/done", "{m:?}");
        let seconds = match m.args[2] {
            OscType::Float(v) => f64::from(v),
            ref other => panic!("seconds: {other:?}"),
        };
        (text(&m, 1), seconds)
    }
}

/// A daemon playing the tone into `session`'s server, with `media` as its media folder and
/// `config` (TOML) as its config file; returns it with a client subscribed to pushes.
fn daemon(session: &JackSession, dir: &TempDir, media: &Path, config: &str) -> (Daemon, Client) {
    let notify = NotifySocket::bind(dir.path());
    let config_path = dir.path().join("latentd.toml");
    std::fs::write(&config_path, config).unwrap();
    let media = media.display().to_string();
    let daemon = start_tone_daemon(session, dir, &notify, &config_path, &["--media", &media]);
    let mut client = Client {
        link: Link::connect(daemon.osc_addr(REPLY), Transport::Udp),
        alarms: VecDeque::new(),
    };
    let m = client.answer("/notify", vec![OscType::Int(1)]);
    assert_eq!(m.addr, "/done", "{m:?}");
    (daemon, client)
}

fn text(m: &OscMessage, i: usize) -> String {
    match &m.args[i] {
        OscType::String(s) => s.clone(),
        other => panic!("{} argument {i}: {other:?}", m.addr),
    }
}

/// A WAV's spec and interleaved samples (panics unless it is a complete, valid file).
fn read_wav(path: &Path) -> (hound::WavSpec, Vec<f32>) {
    let mut wav =
        hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = wav.spec();
    let samples = wav
        .samples::<f32>()
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (spec, samples)
}

/// The quadrature tone's envelope √(L² + R²) is `LEVEL` at every frame it plays.
fn assert_tone_unbroken(samples: &[f32], what: &str) {
    for (i, frame) in samples.chunks_exact(2).enumerate() {
        let envelope = (frame[0] * frame[0] + frame[1] * frame[1]).sqrt();
        assert!(
            (envelope / LEVEL - 1.0).abs() < 0.01,
            "{what}: frame {i} has envelope {envelope} (the tone's is {LEVEL})"
        );
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn start_and_stop_over_osc_record_a_wav_as_long_as_the_time_between() {
    let session = JackSession::start(RATE, PERIOD);
    let dir = TempDir::new().unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir_all(media.join("takes")).unwrap();
    let (mut daemon, mut osc) = daemon(&session, &dir, &media, "");

    let sent_start = Instant::now();
    let m = osc.answer("/record/start", vec![OscType::String("takes/a.wav".into())]);
    let started = Instant::now();
    assert_eq!(
        (m.addr.as_str(), text(&m, 1).as_str()),
        ("/done", "takes/a.wav")
    );
    std::thread::sleep(Duration::from_millis(1500));
    let sent_stop = Instant::now();
    let (file, seconds) = osc.stop();
    let stopped = Instant::now();
    assert_eq!(file, "takes/a.wav");

    let (spec, samples) = read_wav(&media.join("takes/a.wav"));
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, RATE, 32)
    );
    let frames = samples.len() / 2;
    let length = frames as f64 / f64::from(RATE);
    // The recording starts between the send and the reply of /record/start, and ends
    // between those of /record/stop, to the period.
    let period = PERIOD as f64 / f64::from(RATE);
    let shortest = (sent_stop - started).as_secs_f64() - 2.0 * period;
    let longest = (stopped - sent_start).as_secs_f64() + 2.0 * period;
    eprintln!("recorded {length:.4} s; between {shortest:.4} and {longest:.4} s expected");
    assert!(
        (shortest..=longest).contains(&length),
        "{length} s recorded; expected {shortest} to {longest} s"
    );
    assert!((seconds - length).abs() < 1e-4, "/done says {seconds} s");
    assert_tone_unbroken(&samples, "takes/a.wav");

    // Without a name: a timestamped one in the media folder.
    let m = osc.answer("/record/start", vec![]);
    assert_eq!(m.addr, "/done", "{m:?}");
    let name = text(&m, 1);
    assert!(
        name.starts_with("latentd-") && name.ends_with(".wav") && name.len() == 27,
        "{name}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(osc.stop().0, name);
    let (_, samples) = read_wav(&media.join(&name));
    assert!(samples.len() / 2 >= RATE as usize / 5, "{}", samples.len());
    daemon.stop_cleanly();
}

#[test]
fn a_recording_splits_into_valid_files_whose_lengths_add_up() {
    let session = JackSession::start(RATE, PERIOD);
    let dir = TempDir::new().unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    let (mut daemon, mut osc) = daemon(&session, &dir, &media, "[record]\nsplit_s = 1\n");

    let m = osc.answer("/record/start", vec![OscType::String("night.wav".into())]);
    assert_eq!(m.addr, "/done", "{m:?}");
    std::thread::sleep(Duration::from_millis(2600));
    let (last, seconds) = osc.stop();
    assert_eq!(last, "night-3.wav");
    assert_eq!(
        names_in(&media),
        ["night-2.wav", "night-3.wav", "night.wav"]
    );
    let mut total = 0;
    let mut joined = Vec::new();
    for name in ["night.wav", "night-2.wav", "night-3.wav"] {
        let (spec, samples) = read_wav(&media.join(name));
        assert_eq!((spec.channels, spec.sample_rate), (2, RATE), "{name}");
        let frames = samples.len() / 2;
        if name != "night-3.wav" {
            assert_eq!(frames, RATE as usize, "{name}: one split_s of frames");
        }
        total += frames;
        joined.extend(samples);
    }
    assert!(
        (total as f64 / f64::from(RATE) - seconds).abs() < 1e-4,
        "{total} frames in the files, /done says {seconds} s"
    );
    // No frame lost or repeated where the files meet: the tone's phase runs on.
    assert_tone_unbroken(&joined, "the parts joined");
    for at in [RATE as usize, 2 * RATE as usize] {
        let phase = |i: usize| joined[2 * i].atan2(joined[2 * i + 1]);
        let step = (phase(at) - phase(at - 1)).rem_euclid(std::f32::consts::TAU);
        let expected = std::f32::consts::TAU * 440.0 / RATE as f32;
        assert!(
            (step - expected).abs() < 0.002,
            "phase step {step} where two parts meet at frame {at}; the tone's is {expected}"
        );
    }
    daemon.stop_cleanly();
}

#[test]
fn bad_names_fail_and_change_nothing() {
    let session = JackSession::start(RATE, PERIOD);
    let dir = TempDir::new().unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("taken.wav"), b"mine").unwrap();
    std::fs::create_dir_all(dir.path().join("outside")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("outside"), media.join("link")).unwrap();
    let (mut daemon, mut osc) = daemon(&session, &dir, &media, "");
    let before = names_in(&media);

    let absolute = dir.path().join("abs.wav").display().to_string();
    for (name, why) in [
        (absolute.as_str(), "absolute path"),
        ("../escape.wav", "\"..\" component"),
        ("a/../../escape.wav", "\"..\" component"),
        ("take.mp3", "does not end in .wav"),
        (".hidden.wav", "hidden component"),
        ("missing/take.wav", "its folder is not in the media folder"),
        ("link/take.wav", "outside the media folder"),
        ("taken.wav", "exists"),
    ] {
        let m = osc.answer("/record/start", vec![OscType::String(name.into())]);
        assert_eq!(m.addr, "/fail", "{name}: {m:?}");
        let reason = text(&m, 1);
        assert!(reason.contains(why), "{name}: {reason}");
    }
    let m = osc.answer("/record/start", vec![OscType::Int(3)]);
    assert_eq!(m.addr, "/fail", "{m:?}");
    let m = osc.answer("/record/stop", vec![]);
    assert_eq!(
        (m.addr.as_str(), text(&m, 1).as_str()),
        ("/fail", "not recording")
    );
    assert_eq!(names_in(&media), before);
    assert_eq!(std::fs::read(media.join("taken.wav")).unwrap(), b"mine");
    assert!(names_in(&dir.path().join("outside")).is_empty());
    assert!(!dir.path().join("abs.wav").exists() && !dir.path().join("escape.wav").exists());

    // A second start while recording fails and leaves the first running.
    let m = osc.answer("/record/start", vec![OscType::String("one.wav".into())]);
    assert_eq!(m.addr, "/done", "{m:?}");
    let m = osc.answer("/record/start", vec![OscType::String("two.wav".into())]);
    assert_eq!(m.addr, "/fail", "{m:?}");
    assert!(
        text(&m, 1).contains("already recording to one.wav"),
        "{m:?}"
    );
    assert_eq!(osc.stop().0, "one.wav");
    assert!(!media.join("two.wav").exists());
    daemon.stop_cleanly();
}

#[test]
fn a_full_disk_stops_the_recording_with_an_alarm_and_never_the_audio() {
    let dir = TempDir::new().unwrap();
    let media: PathBuf = dir.path().join("media");
    // About 1.4 s of 48 kHz stereo float.
    let Some(fs) = Tmpfs::mount_or_skip(&media, 512 * 1024, "record ENOSPC") else {
        return;
    };
    let session = JackSession::start(RATE, PERIOD);
    let (mut daemon, mut osc) = daemon(&session, &dir, &media, "");

    let m = osc.answer("/record/start", vec![OscType::String("long.wav".into())]);
    assert_eq!(m.addr, "/done", "{m:?}");
    let alarm = osc
        .alarm(Duration::from_secs(5))
        .expect("no /alarm within 5 s of a recording that fills the disk");
    assert_eq!(text(&alarm, 0), "record", "{alarm:?}");
    assert_eq!(alarm.args[1], OscType::Int(1), "{alarm:?}");
    let detail = text(&alarm, 2);
    assert!(
        detail.contains("long.wav") && detail.contains("No space left on device"),
        "{detail}"
    );
    daemon.wait_line("record alarm raised", REPLY);

    // The audio plays on: the playhead moves, the output runs.
    let a = osc.link.status();
    std::thread::sleep(Duration::from_millis(300));
    let b = osc.link.status();
    assert_eq!(b.output, "running", "{b:?}");
    assert_ne!(a.playhead_s, b.playhead_s, "the playhead stood still");
    // The file holds what reached the disk, a valid WAV of the tone.
    let (_, samples) = read_wav(&media.join("long.wav"));
    assert!(samples.len() / 2 > RATE as usize / 2, "{}", samples.len());
    assert_tone_unbroken(&samples, "long.wav");
    let m = osc.answer("/record/stop", vec![]);
    assert_eq!(m.addr, "/fail", "{m:?}");
    assert!(
        text(&m, 1).contains("the last recording stopped") && text(&m, 1).contains("No space"),
        "{m:?}"
    );

    // Space again: the next recording clears the alarm.
    std::fs::remove_file(media.join("long.wav")).unwrap();
    let m = osc.answer("/record/start", vec![OscType::String("again.wav".into())]);
    assert_eq!(m.addr, "/done", "{m:?}");
    let cleared = osc.alarm(REPLY).expect("no /alarm record 0");
    assert_eq!(
        (text(&cleared, 0).as_str(), &cleared.args[1]),
        ("record", &OscType::Int(0))
    );
    std::thread::sleep(Duration::from_millis(200));
    osc.stop();
    read_wav(&media.join("again.wav"));
    daemon.stop_cleanly();
    drop(fs);
}
