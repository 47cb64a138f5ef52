use super::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// Encodes to plain strings, sleeps a pseudo-random while, and checks encodes never overlap.
#[derive(Default)]
struct SlowEncoder {
    busy: AtomicBool,
    calls: AtomicUsize,
    jitter: AtomicU64,
    /// When set, the first prompt encode waits for a message on this channel.
    gate: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
}

impl SlowEncoder {
    fn encode(&self, what: String) -> String {
        assert!(
            !self.busy.swap(true, Ordering::SeqCst),
            "two encodes overlapped"
        );
        self.calls.fetch_add(1, Ordering::SeqCst);
        let x = self
            .jitter
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        std::thread::sleep(Duration::from_micros((x >> 40) % 300));
        self.busy.store(false, Ordering::SeqCst);
        what
    }
}

impl ConditionEncoder for SlowEncoder {
    type Cond = String;
    fn encode_prompt(&self, tags: &str) -> Result<PromptEncoding<String>, EncodeError> {
        if let Some((started, go)) = self.gate.lock().unwrap().take() {
            started.send(()).unwrap();
            go.recv().unwrap();
        }
        if tags.contains("refuse") {
            return Err(EncodeError::Refused {
                field: "tags",
                reason: "test refusal".into(),
            });
        }
        let unknown = tags
            .split_whitespace()
            .filter(|w| w.starts_with('?'))
            .map(String::from);
        Ok(PromptEncoding {
            cond: self.encode(tags.to_owned()),
            unknown_words: unknown.collect(),
        })
    }
    fn encode_timbre(&self, audio: AudioView<'_>) -> Result<String, EncodeError> {
        Ok(self.encode(format!("timbre:{}", audio.frames())))
    }
    fn encode_structure(&self, audio: AudioView<'_>) -> Result<String, EncodeError> {
        Ok(self.encode(format!("structure:{}", audio.frames())))
    }
}

fn prompt(tags: &str) -> PromptSpec {
    PromptSpec {
        tags: tags.into(),
        tags_b: None,
    }
}

fn audio(frames: usize) -> Vec<f32> {
    vec![0.1; frames]
}

fn view(samples: &[f32]) -> AudioView<'_> {
    AudioView {
        samples,
        channels: 1,
        sample_rate: 48_000,
    }
}

#[test]
fn commits_publish_to_the_reader_and_emit_epoch_events() {
    let (tx, rx) = mpsc::channel();
    let (cond, mut reader) = Conditioner::new(Arc::new(SlowEncoder::default()), Some(tx));
    assert_eq!(reader.read().epoch, 0);
    let ev = cond
        .set_prompt(PromptSpec {
            tags: "warm ?zzz pad".into(),
            tags_b: Some("?qq".into()),
        })
        .unwrap();
    assert_eq!(ev.epoch, 1);
    assert_eq!(
        ev.unknown_words,
        vec!["?zzz".to_string(), "?qq".to_string()]
    );
    assert_eq!(rx.recv().unwrap(), ev);
    let seen = reader.read();
    assert_eq!(seen.epoch, 1);
    let p = seen.prompt.as_ref().unwrap();
    assert_eq!(
        (p.a.cond.as_str(), p.b.as_ref().unwrap().cond.as_str()),
        ("warm ?zzz pad", "?qq")
    );
    cond.set_timbre(view(&audio(480))).unwrap();
    assert_eq!(
        reader.read().timbre.as_deref().map(String::as_str),
        Some("timbre:480")
    );
    assert_eq!(cond.clear_timbre().epoch, 3);
    assert!(reader.read().timbre.is_none());
    assert!(
        reader.read().prompt.is_some(),
        "clearing the timbre keeps the prompt"
    );
}

#[test]
fn bad_input_names_the_field_and_changes_nothing() {
    let (cond, mut reader) = Conditioner::new(Arc::new(SlowEncoder::default()), None);
    assert_eq!(
        cond.set_prompt(prompt("  ")),
        Err(ConditioningError::EmptyPrompt { field: "tags" })
    );
    let long = "x".repeat(MAX_PROMPT_CHARS + 1);
    let err = cond
        .set_prompt(PromptSpec {
            tags: "ok".into(),
            tags_b: Some(long),
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            ConditioningError::PromptTooLong {
                field: "tags_b",
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        cond.set_prompt(prompt("please refuse")),
        Err(ConditioningError::Encode(EncodeError::Refused {
            field: "tags",
            ..
        }))
    ));
    let err = cond.set_timbre(view(&[])).unwrap_err();
    assert!(err.to_string().starts_with("timbre"), "{err}");
    let err = cond.set_structure(view(&[f32::NAN])).unwrap_err();
    assert!(err.to_string().starts_with("structure"), "{err}");
    assert_eq!(reader.read().epoch, 0);
    assert_eq!(cond.committed().epoch, 0);
}

#[test]
fn an_encode_overtaken_by_a_commit_is_redone_on_the_new_state() {
    let encoder = Arc::new(SlowEncoder::default());
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    *encoder.gate.lock().unwrap() = Some((started_tx, go_rx));
    let (cond, mut reader) = Conditioner::new(Arc::clone(&encoder), None);
    let cond = Arc::new(cond);
    cond.set_structure(view(&audio(100))).unwrap(); // epoch 1
    let c = Arc::clone(&cond);
    let writer = std::thread::spawn(move || c.set_prompt(prompt("late")).unwrap());
    started_rx.recv().unwrap(); // the prompt encode has snapshotted epoch 1 and is running
    assert_eq!(cond.clear_structure().epoch, 2); // lands while it encodes
    go_tx.send(()).unwrap();
    let ev = writer.join().unwrap();
    assert_eq!(ev.epoch, 3);
    assert_eq!(
        encoder.calls.load(Ordering::SeqCst),
        2 + 1,
        "structure + stale prompt + redo"
    );
    let seen = reader.read();
    assert!(
        seen.structure.is_none(),
        "the stale encode did not resurrect the structure"
    );
    assert_eq!(seen.prompt.as_ref().unwrap().a.cond, "late");
}

#[derive(Clone, Debug)]
enum Op {
    Prompt(String),
    Timbre(usize),
    ClearTimbre,
    Structure(usize),
}

#[test]
fn racing_writers_lose_no_update_and_never_commit_stale_state() {
    const THREADS: usize = 8;
    const OPS: usize = 25;
    let (tx, rx) = mpsc::channel();
    let (cond, mut reader) = Conditioner::new(Arc::new(SlowEncoder::default()), Some(tx));
    let cond = Arc::new(cond);
    let done = Arc::new(AtomicBool::new(false));
    let engine = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut last = 0;
            let mut reads = 0u64;
            while !done.load(Ordering::SeqCst) {
                let epoch = reader.read().epoch;
                assert!(epoch >= last, "the engine saw epochs go backwards");
                last = epoch;
                reads += 1;
            }
            (reader.read().epoch, reads)
        })
    };
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let cond = Arc::clone(&cond);
            std::thread::spawn(move || {
                let mut log = Vec::new();
                let mut x = (t as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
                for i in 0..OPS {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    std::thread::sleep(Duration::from_micros(x % 200));
                    let op = match x % 4 {
                        0 => Op::Prompt(format!("p{t}-{i}")),
                        1 => Op::Timbre(1 + t * 1000 + i),
                        2 => Op::ClearTimbre,
                        _ => Op::Structure(1 + t * 1000 + i),
                    };
                    let event = match &op {
                        Op::Prompt(p) => cond.set_prompt(prompt(p)).unwrap(),
                        Op::Timbre(n) => cond.set_timbre(view(&audio(*n))).unwrap(),
                        Op::ClearTimbre => cond.clear_timbre(),
                        Op::Structure(n) => cond.set_structure(view(&audio(*n))).unwrap(),
                    };
                    log.push((event.epoch, op));
                }
                log
            })
        })
        .collect();
    let mut by_epoch = BTreeMap::new();
    for w in writers {
        for (epoch, op) in w.join().unwrap() {
            assert!(
                by_epoch.insert(epoch, op).is_none(),
                "epoch {epoch} committed twice"
            );
        }
    }
    done.store(true, Ordering::SeqCst);
    let total = (THREADS * OPS) as u64;
    assert_eq!(
        by_epoch.keys().copied().collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    let events: Vec<u64> = rx.try_iter().map(|e| e.epoch).collect();
    assert_eq!(
        events,
        (1..=total).collect::<Vec<_>>(),
        "events arrive once each, in order"
    );

    // Replaying the commits in epoch order gives exactly the final state: nothing lost.
    let (mut want_prompt, mut want_timbre, mut want_structure) = (None, None, None);
    for op in by_epoch.values() {
        match op {
            Op::Prompt(p) => want_prompt = Some(p.clone()),
            Op::Timbre(n) => want_timbre = Some(format!("timbre:{n}")),
            Op::ClearTimbre => want_timbre = None,
            Op::Structure(n) => want_structure = Some(format!("structure:{n}")),
        }
    }
    let last = cond.committed();
    assert_eq!(last.epoch, total);
    assert_eq!(last.prompt.as_ref().map(|p| p.a.cond.clone()), want_prompt);
    assert_eq!(last.timbre.as_deref().cloned(), want_timbre);
    assert_eq!(last.structure.as_deref().cloned(), want_structure);
    let (engine_epoch, reads) = engine.join().unwrap();
    assert_eq!(engine_epoch, total);
    assert!(reads > 0);
}
