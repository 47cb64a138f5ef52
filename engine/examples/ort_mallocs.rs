//! Heap allocation calls inside ONNX Runtime per engine tick: one batched DiT step (B = 4
//! slots) and one windowed decode (9 kept frames + the bundle's context), the calls the
//! engine thread makes every tick. Run by `scripts/bench-ort-mallocs.sh`, which preloads
//! `scripts/count-mallocs.c`: its counters are read through `count_mallocs_read` right
//! before and after each call. The calls run under `assert_no_alloc`, so latentd's own code
//! allocates nothing inside them (a Rust allocation aborts): every counted call is ONNX
//! Runtime's (or the C++ runtime's on its behalf).
//!
//! Usage: `ort_mallocs BUNDLE_DIR [FRAMES=250] [TICKS=50]` with `ORT_DYLIB_PATH` set.
//!
//! Threading: one thread; ORT runs on it (one intra-op thread, the default).

use std::ffi::{c_char, c_void};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use latentd_engine::conditioning::{ConditionEncoder, Conditioning};
use latentd_engine::knobs::KnobStore;
use latentd_engine::model::bundle::onnx::{OnnxLatents, OnnxModel, OnnxOptions};
use latentd_engine::model::{Model, SlotStart, SlotStep, StepShared};
use latentd_engine::rng::NoiseKey;

#[global_allocator]
static ALLOC: assert_no_alloc::AllocDisabler = assert_no_alloc::AllocDisabler;

type ReadCounts = unsafe extern "C" fn(*mut u64);

unsafe extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// The preloaded shim's reader, or `None` when it is not preloaded.
fn shim() -> Option<ReadCounts> {
    // SAFETY: RTLD_DEFAULT (null on glibc) and a NUL-terminated name; the symbol, when
    // present, has the signature `void count_mallocs_read(uint64_t out[3])`.
    let f = unsafe { dlsym(std::ptr::null_mut(), c"count_mallocs_read".as_ptr()) };
    (!f.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, ReadCounts>(f) })
}

/// (calls, bytes, µs) the shim counted while `f` ran; with `forbid`, Rust allocation aborts.
fn counted(read: ReadCounts, forbid: bool, f: impl FnOnce()) -> (u64, u64, u64) {
    let (mut a, mut b) = ([0u64; 3], [0u64; 3]);
    let mut took = Duration::ZERO;
    let run = || {
        // SAFETY: `a` / `b` hold the three counters the shim writes.
        unsafe { read(a.as_mut_ptr()) };
        let t0 = Instant::now();
        f();
        took = t0.elapsed();
        unsafe { read(b.as_mut_ptr()) };
    };
    if forbid {
        assert_no_alloc::assert_no_alloc(run);
    } else {
        run();
    }
    (b[0] - a[0], b[1] - a[1], took.as_micros() as u64)
}

fn summary(what: &str, v: &[(u64, u64, u64)]) {
    let sorted = |f: fn(&(u64, u64, u64)) -> u64| {
        let mut x: Vec<u64> = v.iter().map(f).collect();
        x.sort_unstable();
        x
    };
    let (calls, us) = (sorted(|c| c.0), sorted(|c| c.2));
    let bytes: u64 = v.iter().map(|c| c.1).sum::<u64>() / v.len() as u64;
    println!(
        "{what}: malloc calls per call: min {} median {} max {}; mean bytes {bytes}; \
         time p50 {:.2} ms, max {:.2} ms",
        calls[0],
        calls[calls.len() / 2],
        calls[calls.len() - 1],
        us[us.len() / 2] as f64 / 1e3,
        us[us.len() - 1] as f64 / 1e3
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!("usage: ort_mallocs BUNDLE_DIR [FRAMES=250] [TICKS=50]");
        std::process::exit(2);
    };
    let number = |i: usize, default: usize| {
        args.get(i).map_or(default, |s| {
            s.parse().unwrap_or_else(|_| {
                eprintln!("ort_mallocs: {s:?} is not a count");
                std::process::exit(2)
            })
        })
    };
    let (frames, ticks) = (number(1, 250), number(2, 50));
    let Some(read) = shim() else {
        eprintln!(
            "ort_mallocs: count_mallocs_read not found: run with LD_PRELOAD=<count-mallocs.so>"
        );
        std::process::exit(2);
    };
    let model = OnnxModel::load(&dir, OnnxOptions::default()).unwrap_or_else(|e| {
        eprintln!("ort_mallocs: {}: {e}", dir.display());
        std::process::exit(2)
    });
    println!("bundle: {}", model.describe());
    let tags = "calm strings";
    let a = model.encode_prompt(tags).expect("prompt");
    let cond = Conditioning::prompt_only(1, tags, a);
    let (store, _reader) = KnobStore::new();
    let knobs = store.current();
    let start = |window: u32| {
        model.start_slot(SlotStart {
            frames,
            source: None,
            feedback: None,
            t_start: 1.0,
            noise: NoiseKey {
                seed: 1,
                window,
                step: 0,
            },
        })
    };
    let shared = StepShared {
        cond: &cond,
        knobs: &knobs,
        source: None,
        sde_curve: None,
    };
    let mut xs: Vec<OnnxLatents> = (0..4).map(start).collect();
    let mut out = vec![0.0f32; 9 * model.geometry().samples_per_latent_frame() * 2];
    let (mut steps, mut decodes) = (Vec::new(), Vec::new());
    for tick in 0..=ticks {
        let mut batch: Vec<SlotStep<'_, OnnxLatents>> = xs
            .iter_mut()
            .enumerate()
            .map(|(i, x)| SlotStep {
                x,
                t_curr: 0.7,
                t_next: 0.6,
                t_start: 1.0,
                sde: false,
                x0_lock: 0.0,
                noise: NoiseKey {
                    seed: 1,
                    window: i as u32,
                    step: 1,
                },
            })
            .collect();
        // The first call at a shape allocates and binds latentd's tensors: not forbidden.
        let warm = tick > 0;
        let step = counted(read, warm, || {
            model.denoise_batch(&mut batch, &shared).expect("step")
        });
        let decode = counted(read, warm, || {
            model
                .decode_window(batch[0].x, &[1.0; 8], false, 3, 9, &mut out)
                .expect("decode")
        });
        if tick == 0 {
            println!(
                "first tick (binds the tensors): DiT step {} calls, decode {} calls",
                step.0, decode.0
            );
        } else {
            steps.push(step);
            decodes.push(decode);
        }
    }
    println!("{ticks} ticks, B = 4, T = {frames}, decode window 9 + 2 x context frames");
    summary("DiT step", &steps);
    summary("decode", &decodes);
}
