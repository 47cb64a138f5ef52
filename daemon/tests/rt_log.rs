//! Realtime events pushed with allocation forbidden (this binary's global allocator is
//! `assert_no_alloc`'s AllocDisabler) arrive as log records on the logger thread.

use latentd_engine::lock::MutexExt;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use assert_no_alloc::{AllocDisabler, assert_no_alloc};
use latentd::logging::{RT_TARGET, RtEvent, RtLogger, rt_log};
use log::Level;

#[global_allocator]
static ALLOCATOR: AllocDisabler = AllocDisabler;

#[derive(Debug, Clone, PartialEq)]
struct Captured {
    level: Level,
    target: String,
    message: String,
    rt_event: Option<String>,
}

static RECORDS: Mutex<Vec<Captured>> = Mutex::new(Vec::new());
/// Tests share the one process logger; each takes this lock so their records do not mix.
static SERIAL: Mutex<()> = Mutex::new(());

struct CaptureLogger;

impl log::Log for CaptureLogger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        RECORDS.lock().unwrap().push(Captured {
            level: record.level(),
            target: record.target().to_owned(),
            message: record.args().to_string(),
            rt_event: record
                .key_values()
                .get(log::kv::Key::from("rt_event"))
                .map(|value| value.to_string()),
        });
    }
    fn flush(&self) {}
}

fn take_records() -> Vec<Captured> {
    static LOGGER: CaptureLogger = CaptureLogger;
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        log::set_logger(&LOGGER).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
    std::mem::take(&mut *RECORDS.lock().unwrap())
}

#[test]
fn events_pushed_without_allocating_become_log_records() {
    let _serial = SERIAL.lock_unpoisoned();
    take_records();
    let (mut sender, receiver) = rt_log(64);
    let logger = RtLogger::spawn(receiver, Duration::from_millis(5)).unwrap();

    let events = [
        RtEvent::Xrun { total: 3 },
        RtEvent::PeriodChanged { frames: 512 },
        RtEvent::SampleRateChanged { rate: 44_100 },
        RtEvent::TornRead { total: 1 },
        RtEvent::RecordDropped { frames: 128 },
        RtEvent::PeriodOverCapacity {
            requested: 2048,
            capacity: 1024,
        },
    ];
    let accepted = assert_no_alloc(|| {
        let mut accepted = 0;
        for event in events {
            accepted += usize::from(sender.push(event));
        }
        accepted
    });
    assert_eq!(accepted, events.len());

    // The logger thread picks them up while running, not only at stop.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut records = Vec::new();
    while records.len() < events.len() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        records.extend(take_records());
    }
    assert_eq!(logger.stop(), events.len() as u64);

    let expected: Vec<Captured> = [
        (Level::Warn, "xrun", "audio xrun (3 since start)"),
        (
            Level::Info,
            "period_changed",
            "period changed to 512 frames",
        ),
        (
            Level::Info,
            "rate_changed",
            "sample rate changed to 44100 Hz",
        ),
        (Level::Warn, "torn_read", "torn ring read (1 since start)"),
        (
            Level::Warn,
            "record_dropped",
            "record tap dropped 128 frames",
        ),
        (
            Level::Error,
            "period_over_capacity",
            "callback asked for 2048 frames, buffers hold 1024",
        ),
    ]
    .into_iter()
    .map(|(level, code, message)| Captured {
        level,
        target: RT_TARGET.to_owned(),
        message: message.to_owned(),
        rt_event: Some(code.to_owned()),
    })
    .collect();
    assert_eq!(records, expected);
}

#[test]
fn a_full_queue_counts_drops_and_reports_them() {
    let _serial = SERIAL.lock_unpoisoned();
    take_records();
    let (mut sender, receiver) = rt_log(4);
    let accepted = assert_no_alloc(|| {
        (0..10u64)
            .filter(|&total| sender.push(RtEvent::Xrun { total }))
            .count()
    });
    assert_eq!(accepted, 4);

    // Started after the pushes: the first drain sees the 4 queued events and the 6 drops.
    let logger = RtLogger::spawn(receiver, Duration::from_millis(5)).unwrap();
    assert_eq!(logger.stop(), 4);
    let records = take_records();
    let totals: Vec<&str> = records
        .iter()
        .filter(|record| record.rt_event.as_deref() == Some("xrun"))
        .map(|record| record.message.as_str())
        .collect();
    assert_eq!(
        totals,
        [
            "audio xrun (0 since start)",
            "audio xrun (1 since start)",
            "audio xrun (2 since start)",
            "audio xrun (3 since start)"
        ]
    );
    let drops: Vec<&Captured> = records
        .iter()
        .filter(|record| record.rt_event.as_deref() == Some("queue_full"))
        .collect();
    assert_eq!(drops.len(), 1, "{records:?}");
    assert_eq!(drops[0].level, Level::Warn);
    assert_eq!(
        drops[0].message,
        "realtime event queue full: 6 events dropped"
    );
}
