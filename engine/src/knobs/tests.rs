use super::*;
use std::sync::atomic::AtomicUsize;

#[test]
fn table_is_consistent() {
    assert_eq!(KNOBS.len(), KnobId::ALL.len());
    for (i, (id, spec)) in KnobId::ALL.iter().zip(KNOBS).enumerate() {
        assert_eq!(*id as usize, i);
        assert!(
            spec.min <= spec.default && spec.default <= spec.max,
            "{}",
            spec.name
        );
        assert_eq!(KnobId::from_name(spec.name), Some(*id));
        assert_eq!(
            canonicalize(*id, spec.default),
            Ok(spec.default),
            "{}",
            spec.name
        );
        assert!(!spec.doc.is_empty());
    }
    let p = KnobId::periodicity.spec();
    assert_eq!((p.min, p.max), (0.0, 12.5));
    assert_eq!(KnobId::seed.spec().max, f64::from(u32::MAX));
}

#[test]
fn same_value_twice_publishes_once_and_wakes_once() {
    let (store, mut reader) = KnobStore::new();
    let wakes = Arc::new(AtomicUsize::new(0));
    let w = Arc::clone(&wakes);
    store.set_waker(move |_| {
        w.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(
        store.set("denoise", 0.8),
        Ok(SetOutcome::Changed { version: 1 })
    );
    assert!(reader.changed());
    assert_eq!(reader.read().f32(KnobId::denoise), 0.8);
    assert_eq!(store.set("denoise", 0.8), Ok(SetOutcome::Unchanged));
    // A value that canonicalizes to the same thing is the same value.
    assert_eq!(
        store.set("denoise", f64::from(0.8f32)),
        Ok(SetOutcome::Unchanged)
    );
    assert_eq!(store.set("steps", 8.2), Ok(SetOutcome::Unchanged));
    assert!(!reader.changed());
    assert_eq!(wakes.load(Ordering::SeqCst), 1);
    assert_eq!(store.version(), 1);
}

#[test]
fn the_waker_hears_whether_a_decoder_knob_changed() {
    let (store, _reader) = KnobStore::new();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = Arc::clone(&heard);
    store.set_waker(move |p| h.lock().unwrap().push(p));
    store.set("denoise", 0.3).unwrap();
    store.set("ch_g2", 0.0).unwrap();
    store
        .set_many(&[(KnobId::denoise, 0.6), (KnobId::ch_g3, 2.0)])
        .unwrap();
    store
        .ramp_many(
            &[RampTo {
                id: KnobId::ch_g0,
                from: None,
                to: 0.5,
            }],
            0,
            4800,
            Curve::Linear,
        )
        .unwrap();
    store.set("ch_g3", 2.0).unwrap(); // unchanged: no publish, no wake
    let heard: Vec<(u64, bool)> = heard
        .lock()
        .unwrap()
        .iter()
        .map(|p| (p.version, p.decoder))
        .collect();
    assert_eq!(heard, [(1, false), (2, true), (3, true), (4, true)]);
}

#[test]
fn values_are_canonicalized_at_the_setter() {
    let (store, mut reader) = KnobStore::new();
    store.set("steps", 11.6).unwrap();
    store.set("seed", 41.5).unwrap();
    assert_eq!(store.set("x0_target", -0.0), Ok(SetOutcome::Unchanged));
    let snap = reader.read();
    assert_eq!(snap.get(KnobId::steps), 12.0);
    assert_eq!(snap.u32(KnobId::seed), 42);
    assert_eq!(snap.get(KnobId::x0_target).to_bits(), 0.0f64.to_bits());
    store.set("seed", f64::from(u32::MAX)).unwrap();
    assert_eq!(reader.read().u32(KnobId::seed), u32::MAX);
}

#[test]
fn derived_flags_follow_the_values() {
    let (store, mut reader) = KnobStore::new();
    let f = reader.read().flags;
    assert!(!f.ch_gains_all_zero && f.ch_gains_all_unity && !f.x0_target_nonzero);
    let zeros: Vec<_> = KnobId::CHANNEL_GAINS.iter().map(|&id| (id, 0.0)).collect();
    store.set_many(&zeros[..7]).unwrap();
    assert!(!reader.read().flags.ch_gains_all_zero);
    store.set("ch_g7", 0.0).unwrap();
    assert!(reader.read().flags.ch_gains_all_zero);
    store.set("x0_target", 0.25).unwrap();
    store.set("feedback", 0.1).unwrap();
    let f = reader.read().flags;
    assert!(f.x0_target_nonzero && f.feedback_nonzero && !f.ch_gains_all_unity);
    store.set("sde_amp", 0.0).unwrap();
    assert!(!reader.read().flags.sde_curve_nonzero);
}

#[test]
fn bad_input_is_refused_by_name_and_range_and_changes_nothing() {
    let (store, mut reader) = KnobStore::new();
    let before = reader.read().clone();
    assert_eq!(
        store.set("denoize", 0.5),
        Err(KnobError::Unknown {
            name: "denoize".into()
        })
    );
    let err = store.set("periodicity", 13.0).unwrap_err();
    assert_eq!(
        err,
        KnobError::OutOfRange {
            name: "periodicity",
            value: 13.0,
            min: 0.0,
            max: 12.5
        }
    );
    assert!(err.to_string().contains("periodicity") && err.to_string().contains("12.5"));
    assert!(matches!(
        store.set("shift", f64::NAN),
        Err(KnobError::NotFinite { name: "shift", .. })
    ));
    assert!(store.set("steps", 16.4).is_err());
    assert!(store.set("seed", -1.0).is_err());
    assert!(store.set("ch_g3", f64::INFINITY).is_err());
    // A batch with one bad value changes nothing at all.
    assert!(
        store
            .set_many(&[(KnobId::denoise, 0.9), (KnobId::depth, 9.0)])
            .is_err()
    );
    assert!(!reader.changed());
    assert_eq!(*reader.read(), before);
    assert_eq!(store.version(), 0);
}

#[test]
fn reader_sees_whole_snapshots_while_writers_race() {
    let (store, mut reader) = KnobStore::new();
    let store = Arc::new(store);
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..500 {
                    let v = f64::from((i * 4 + t) % 100) / 100.0;
                    // Both knobs always move together: a torn snapshot would split them.
                    store
                        .set_many(&[(KnobId::feedback, v), (KnobId::x0_target, v)])
                        .unwrap();
                }
            })
        })
        .collect();
    let mut last_version = 0;
    while writers.iter().any(|w| !w.is_finished()) {
        let snap = reader.read();
        assert_eq!(snap.get(KnobId::feedback), snap.get(KnobId::x0_target));
        assert!(snap.version >= last_version);
        last_version = snap.version;
    }
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(reader.read().version, store.version());
}

#[test]
fn a_ramp_passes_through_its_curve_and_lands_on_the_target() {
    let (store, mut reader) = KnobStore::new();
    let ramp = |id, to| RampTo { id, from: None, to };
    store
        .ramp_many(
            &[ramp(KnobId::guidance, 5.0), ramp(KnobId::steps, 16.0)],
            1_000,
            4_800,
            Curve::Linear,
        )
        .unwrap();
    let snap = reader.read().clone();
    // The target is what is saved; the sounding value follows the frame clock.
    assert_eq!(snap.get(KnobId::guidance), 5.0);
    assert_eq!(snap.value_at(KnobId::guidance, 0), 1.0);
    assert_eq!(snap.value_at(KnobId::guidance, 1_000), 1.0);
    assert_eq!(snap.value_at(KnobId::guidance, 1_000 + 1_200), 2.0);
    assert_eq!(snap.value_at(KnobId::guidance, 1_000 + 2_400), 3.0);
    assert_eq!(snap.value_at(KnobId::guidance, 1_000 + 4_800), 5.0);
    assert!(snap.ramping_at(KnobId::guidance, 1_000 + 4_799));
    assert!(!snap.any_ramping_at(1_000 + 4_800));
    // An integer knob switches halfway.
    assert_eq!(snap.value_at(KnobId::steps, 1_000 + 2_399), 8.0);
    assert_eq!(snap.value_at(KnobId::steps, 1_000 + 2_400), 16.0);
    // The engine's resolved view has no ramps and flags of the values it holds.
    let mid = snap.at(1_000 + 2_400);
    assert_eq!(mid.get(KnobId::guidance), 3.0);
    assert_eq!(mid.ramp(KnobId::guidance), None);
    assert_eq!(mid.version, snap.version);
}

#[test]
fn curves_shape_progress_and_a_new_ramp_starts_where_the_old_one_is() {
    assert_eq!(Curve::Smooth.progress(0.5), 0.5);
    assert_eq!(Curve::EaseIn.progress(0.5), 0.25);
    assert_eq!(Curve::EaseOut.progress(0.5), 0.75);
    assert_eq!(Curve::Smooth.progress(2.0), 1.0);
    let (store, mut reader) = KnobStore::new();
    let to = |to| RampTo {
        id: KnobId::denoise,
        from: None,
        to,
    };
    store.ramp_many(&[to(1.0)], 0, 100, Curve::Linear).unwrap();
    // Half way (0.75), a glide back to 0.5 starts from 0.75.
    store.ramp_many(&[to(0.5)], 50, 100, Curve::Linear).unwrap();
    let snap = reader.read().clone();
    assert_eq!(snap.value_at(KnobId::denoise, 50), 0.75);
    assert_eq!(snap.value_at(KnobId::denoise, 100), 0.625);
    // An explicit start, and a plain set cancelling the ramp.
    store
        .ramp_many(
            &[RampTo {
                id: KnobId::prompt_blend,
                from: Some(0.0),
                to: 1.0,
            }],
            0,
            10,
            Curve::Linear,
        )
        .unwrap();
    assert_eq!(reader.read().value_at(KnobId::prompt_blend, 5), 0.5);
    store.set_id(KnobId::prompt_blend, 0.25).unwrap();
    let snap = reader.read().clone();
    assert_eq!(snap.ramp(KnobId::prompt_blend), None);
    assert_eq!(snap.value_at(KnobId::prompt_blend, 5), 0.25);
    // A ramp to where it is is a plain set (the ended ramp is dropped, once); one of no
    // length too; refusals change nothing.
    store
        .ramp_many(&[to(0.5)], 500, 100, Curve::Linear)
        .unwrap();
    assert_eq!(reader.read().ramp(KnobId::denoise), None);
    assert_eq!(
        store.ramp_many(&[to(0.5)], 600, 100, Curve::Linear),
        Ok(SetOutcome::Unchanged)
    );
    store.ramp_many(&[to(0.2)], 600, 0, Curve::Linear).unwrap();
    assert_eq!(reader.read().ramp(KnobId::denoise), None);
    assert_eq!(
        reader.read().value_at(KnobId::denoise, 600),
        f64::from(0.2f32)
    );
    let before = store.current();
    assert!(store.ramp_many(&[to(2.0)], 0, 10, Curve::Linear).is_err());
    assert_eq!(store.current(), before);
}
