//! [`CudaModel`]: the built-in model on an NVIDIA GPU through cudarc (driver API and NVRTC,
//! both loaded at run time).
//!
//! Latency rules, made structural:
//! - one stream; nothing in [`Model::denoise_batch`] waits for the device: tick times come from
//!   CUDA events read with a non-blocking query one tick later ([`Model::device_times`]);
//! - per-tick host data (one [`SlotStepRecord`] per slot) goes through a pinned staging buffer
//!   (two, alternating) with one async copy; the conditioning target is uploaded only when it
//!   changes (same cache key as the CPU model), curves at the setter ([`Model::upload_curve`]);
//! - no readback decides control flow: which slots are active, which decoder layers run, all
//!   come from host-side values;
//! - every device buffer is allocated once per shape and grown, never shrunk; latents recycle
//!   through a pool;
//! - [`Model::decode_window`] runs its kernels into a device buffer, then ONE device-to-host
//!   copy into a pinned buffer and one wait (the audio has to reach the ring): the only
//!   blocking call per window.
//!
//! Every driver call that may block the host is made through [`Driver`] and counted by phase
//! ([`HostSyncCounts`], `host_sync`): the tick's entry points (`denoise_batch`, `start_slot`,
//! `upload_curve`) and the decode's enter their phase; everything else is charged to the
//! phase its caller is in (`other` unless inside a tick or decode), and a pinned buffer or a
//! latent freed later to the phase it is freed in. The benchmark reports the counts per tick; the GPU test holds the tick's still.
//! `clippy.toml` refuses the blocking cudarc methods everywhere else.
//! A device error is kept ([`CudaModel::fault`]); after one the model does no more device work
//! and [`super::failover::FailoverModel`] moves the engine to the CPU.
//!
//! Threading: `Send + Sync`; device state behind an uncontended mutex (engine thread); the
//! encoder thread only runs the CPU encoders and one upload. The phase a blocking call is
//! charged to is the calling thread's.

use crate::lock::MutexExt;
use std::collections::VecDeque;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};

use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaModule, CudaSlice, CudaStream, CudaView, DevicePtr,
    DeviceRepr, DriverError, LaunchConfig, PinnedHostSlice, PushKernelArg, ValidAsZeroBits, sys,
};
use cudarc::nvrtc::{CompileOptions, Ptx, compile_ptx_with_opts};

use super::host_sync::{HostSyncCounts, HostSyncs, Phase, PhaseGuard};
use super::{DecoderTables, KERNEL_NAMES, KERNEL_SOURCE, SlotStepRecord};
use crate::audio_clip::AudioView;
use crate::conditioning::EncodeError;
use crate::model::builtin::{BuiltinEncoders, BuiltinModel, FRAME_RATE, SAMPLE_RATE};
use crate::model::{
    ChunkPlace, DecodeError, DeviceTimes, Geometry, Model, ModelError, SlotStart, SlotStep,
    StepShared,
};

// SAFETY: plain `repr(C)` data of integers and floats, the layout of `ld_slot_step`.
unsafe impl DeviceRepr for SlotStepRecord {}
// SAFETY: all-zero bytes are a valid record.
unsafe impl ValidAsZeroBits for SlotStepRecord {}

const CHANNELS: usize = 64;
const BLOCK: u32 = 256;
/// Slot records a step staging buffer holds (pipeline depth is far below).
const STEP_CAPACITY: usize = 64;
/// Latent buffers kept for reuse.
const POOL_CAP: usize = 64;

/// Whether the CUDA driver library can be loaded and reports a device (no context made).
pub fn cuda_available() -> bool {
    // SAFETY: only tries to dlopen the driver library.
    if !unsafe { sys::is_culib_present() } {
        return false;
    }
    CudaContext::device_count().is_ok_and(|n| n > 0)
}

/// A driver allocation whose release may block the host (pinned host memory always, device
/// memory where allocation is not stream-ordered): dropped through [`HostSyncs`], so a free
/// is charged to the phase it happens in, wherever the owner is dropped.
struct Counted<R> {
    res: ManuallyDrop<R>,
    /// Whether dropping `res` blocks.
    blocks: bool,
    syncs: Arc<HostSyncs>,
}

/// A device buffer whose free is counted.
type DeviceBuf<T> = Counted<CudaSlice<T>>;
/// Pinned host memory (`cuMemFreeHost` blocks) whose free is counted.
type PinnedBuf<T> = Counted<PinnedHostSlice<T>>;

impl<R> Deref for Counted<R> {
    type Target = R;
    fn deref(&self) -> &R {
        &self.res
    }
}

impl<R> DerefMut for Counted<R> {
    fn deref_mut(&mut self) -> &mut R {
        &mut self.res
    }
}

impl<R> Drop for Counted<R> {
    fn drop(&mut self) {
        // SAFETY: taken once, here, and never touched again.
        let res = unsafe { ManuallyDrop::take(&mut self.res) };
        self.syncs.blocking_if(self.blocks, || drop(res));
    }
}

/// The context, its one stream and the blocking-call counts. Every cudarc call that may block
/// the host is a method here, made through [`HostSyncs`]: synchronizes and event waits,
/// pinned host allocations (and, through [`Counted`], their frees), device allocations and
/// frees where they are not stream-ordered, copies from or to pageable memory, the context
/// and module loads. The rest of the backend makes only calls that never block: launches,
/// event records and queries, async copies between the device and pinned memory.
///
/// Pinned memory: cudarc's `PinnedHostSlice` accessors synchronize on the slice's own event,
/// which cudarc records only while it tracks events; the backend turns tracking off
/// ([`CudaContext::disable_event_tracking`]), so those accessors never wait, and the waits
/// that keep a copy and the host apart are on the backend's own events, through
/// [`Driver::wait`].
struct Driver {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    syncs: Arc<HostSyncs>,
    /// Allocations and frees are stream-ordered (`cuMemAllocAsync` / `cuMemFreeAsync`, the
    /// device has memory pools): they do not block.
    async_alloc: bool,
}

// The one place the blocking cudarc methods are called (clippy.toml refuses them elsewhere).
#[allow(clippy::disallowed_methods)]
impl Driver {
    /// A context on device `ordinal` (blocks: driver initialisation) and its one stream.
    fn new(ordinal: usize, syncs: Arc<HostSyncs>) -> Result<Self, DriverError> {
        let ctx = syncs.blocking(|| CudaContext::new(ordinal))?;
        // One stream: ordering is the stream's, cudarc's per-buffer events are not needed.
        // SAFETY: no buffer of this context is shared between streams.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream()?;
        Ok(Self {
            async_alloc: ctx.has_async_alloc(),
            ctx,
            stream,
            syncs,
        })
    }

    fn counted<R>(&self, res: R, blocks: bool) -> Counted<R> {
        Counted {
            res: ManuallyDrop::new(res),
            blocks,
            syncs: Arc::clone(&self.syncs),
        }
    }

    /// Loads compiled kernels (blocks).
    fn load_module(&self, ptx: Ptx) -> Result<Arc<CudaModule>, DriverError> {
        self.syncs.blocking(|| self.ctx.load_module(ptx))
    }

    /// `len` zeros on the device (the memset is async; the allocation blocks unless it is
    /// stream-ordered). For buffers that live as long as the model.
    fn alloc_zeros<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        len: usize,
    ) -> Result<CudaSlice<T>, DriverError> {
        self.syncs
            .blocking_if(!self.async_alloc, || self.stream.alloc_zeros(len))
    }

    /// `len` zeros on the device, freed through [`Counted`] wherever it is dropped.
    fn device_buf<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        len: usize,
    ) -> Result<DeviceBuf<T>, DriverError> {
        let buf = self.alloc_zeros(len)?;
        Ok(self.counted(buf, !self.async_alloc))
    }

    /// An empty device buffer (an allocation of 0 bytes).
    fn null<T>(&self) -> Result<DeviceBuf<T>, DriverError> {
        let buf = self
            .syncs
            .blocking_if(!self.async_alloc, || self.stream.null())?;
        Ok(self.counted(buf, !self.async_alloc))
    }

    /// Makes `buf` hold at least `len` elements (a new zeroed buffer; the old one is freed).
    fn grow<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        buf: &mut CudaSlice<T>,
        len: usize,
    ) -> Result<(), DriverError> {
        if buf.len() < len {
            let old = std::mem::replace(buf, self.alloc_zeros(len)?);
            self.syncs.blocking_if(!self.async_alloc, || drop(old));
        }
        Ok(())
    }

    /// A device copy of pageable host data (blocks: pageable memory is staged by the
    /// driver). For buffers that live as long as the model.
    fn upload<T: DeviceRepr>(&self, host: &[T]) -> Result<CudaSlice<T>, DriverError> {
        self.syncs.blocking(|| self.stream.clone_htod(host))
    }

    /// [`Driver::upload`], freed through [`Counted`] wherever it is dropped.
    fn upload_buf<T: DeviceRepr>(&self, host: &[T]) -> Result<DeviceBuf<T>, DriverError> {
        let buf = self.upload(host)?;
        Ok(self.counted(buf, !self.async_alloc))
    }

    /// A host copy of a device buffer (blocks until the stream has run up to the copy).
    fn download<T: DeviceRepr>(&self, buf: &CudaSlice<T>) -> Result<Vec<T>, DriverError> {
        self.syncs.blocking(|| self.stream.clone_dtoh(buf))
    }

    /// Pinned host memory (blocks; so does its free).
    ///
    /// # Safety
    /// The contents are uninitialised: write before reading.
    unsafe fn alloc_pinned<T: DeviceRepr>(
        &self,
        len: usize,
        flags: u32,
    ) -> Result<PinnedBuf<T>, DriverError> {
        // SAFETY: passed on to the caller.
        let host = self
            .syncs
            .blocking(|| unsafe { self.ctx.alloc_pinned_with_flags(len, flags) })?;
        Ok(self.counted(host, true))
    }

    /// Pinned memory to write into; never waits (see the type's doc).
    fn pinned_mut<'a, T: ValidAsZeroBits>(
        &self,
        host: &'a mut PinnedHostSlice<T>,
    ) -> Result<&'a mut [T], DriverError> {
        host.as_mut_slice()
    }

    /// Pinned memory to read; never waits (see the type's doc): wait for the copy into it
    /// first ([`Driver::wait`]).
    fn pinned<'a, T: ValidAsZeroBits>(
        &self,
        host: &'a PinnedHostSlice<T>,
    ) -> Result<&'a [T], DriverError> {
        host.as_slice()
    }

    /// Async copy from pinned memory to the device (the host must leave `src` alone until
    /// the copy is done: record an event after it).
    fn copy_from_pinned<T: DeviceRepr>(
        &self,
        src: &PinnedHostSlice<T>,
        dst: &mut CudaSlice<T>,
    ) -> Result<(), DriverError> {
        self.stream.memcpy_htod(src, dst)
    }

    /// Async copy from the device to pinned memory (wait on an event recorded after it
    /// before reading `dst`).
    fn copy_to_pinned<T: DeviceRepr>(
        &self,
        src: &CudaView<'_, T>,
        dst: &mut PinnedHostSlice<T>,
    ) -> Result<(), DriverError> {
        self.stream.memcpy_dtoh(src, dst)
    }

    /// Waits until the work before `event`'s record is done (blocks).
    fn wait(&self, event: &CudaEvent) -> Result<(), DriverError> {
        self.syncs.blocking(|| event.synchronize())
    }

    /// Waits until the stream is idle (blocks).
    fn synchronize(&self) -> Result<(), DriverError> {
        self.syncs.blocking(|| self.stream.synchronize())
    }

    /// Milliseconds from `start` to `end` once `end` is complete, `None` before: a query,
    /// never a wait (cudarc's `elapsed_ms` synchronizes both events, which returns at once
    /// when both are complete: `start` was recorded before `end` on the one stream).
    fn elapsed_if_done(
        &self,
        start: &CudaEvent,
        end: &CudaEvent,
    ) -> Result<Option<f32>, DriverError> {
        if !end.try_is_complete()? {
            return Ok(None);
        }
        start.elapsed_ms(end).map(Some)
    }
}

/// Latents on the device (and, for encoded sources, their host copy).
pub struct CudaLatents {
    buf: Option<DeviceBuf<f32>>,
    frames: usize,
    host: Option<Arc<Vec<f32>>>,
    pool: Arc<Mutex<Vec<DeviceBuf<f32>>>>,
}

impl CudaLatents {
    fn ptr(&self, stream: &CudaStream) -> u64 {
        let buf = self.buf.as_ref().expect("latents present until dropped");
        let (p, _guard) = buf.device_ptr(stream);
        p
    }

    /// The host copy kept for encoded sources (`None` for latents made on the device).
    pub fn host_copy(&self) -> Option<&Arc<Vec<f32>>> {
        self.host.as_ref()
    }

    /// Latent frames.
    pub fn frames(&self) -> usize {
        self.frames
    }
}

impl Drop for CudaLatents {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            let mut pool = self.pool.lock_unpoisoned();
            if pool.len() < POOL_CAP {
                pool.push(buf);
            }
            // Else `buf` is freed here (counted where that blocks).
        }
    }
}

/// A per-frame curve on the device, with the host values it came from.
pub struct CudaCurve {
    buf: DeviceBuf<f32>,
    host: Vec<f32>,
}

impl CudaCurve {
    /// The host values.
    pub fn host(&self) -> &[f32] {
        &self.host
    }
}

/// A pinned host buffer for uploads, with the event that marks its last copy done.
struct Staged<T> {
    host: PinnedBuf<T>,
    done: CudaEvent,
    used: bool,
}

impl<T: DeviceRepr + ValidAsZeroBits> Staged<T> {
    fn new(driver: &Driver, len: usize) -> Result<Self, DriverError> {
        Ok(Self {
            // SAFETY: every element is written before it is copied.
            host: unsafe { driver.alloc_pinned(len.max(1), sys::CU_MEMHOSTALLOC_WRITECOMBINED) }?,
            done: driver.ctx.new_event(None)?,
            used: false,
        })
    }

    /// Fills the buffer's first `len` elements with `data` and copies the whole buffer to
    /// `dst` (async; `dst` holds at least the buffer's length). Waits (counted) only if the
    /// previous copy from this buffer has not finished: the host never writes memory a copy
    /// is still reading.
    fn upload(
        &mut self,
        driver: &Driver,
        data: impl FnOnce(&mut [T]),
        len: usize,
        dst: &mut CudaSlice<T>,
    ) -> Result<(), DriverError> {
        if self.used && !self.done.try_is_complete()? {
            driver.wait(&self.done)?;
        }
        data(&mut driver.pinned_mut(&mut self.host)?[..len]);
        driver.copy_from_pinned(&self.host, dst)?;
        self.done.record(&driver.stream)?;
        self.used = true;
        Ok(())
    }
}

struct Kernels {
    start: CudaFunction,
    denoise: CudaFunction,
    env_spectrum: CudaFunction,
    env_grains: CudaFunction,
    voice_phases: CudaFunction,
    mix: CudaFunction,
}

struct Tables {
    n: usize,
    bin_band: CudaSlice<u8>,
    phase_sin: CudaSlice<f32>,
    phase_cos: CudaSlice<f32>,
    twiddle_cos: CudaSlice<f32>,
    twiddle_sin: CudaSlice<f32>,
    window: CudaSlice<f32>,
}

/// A conditioning target on the device, for one slot seed.
struct DeviceTarget {
    seed: u32,
    host: Arc<Vec<f32>>,
    dev: DeviceBuf<f32>,
    stage: Staged<f32>,
    last_tick: u64,
}

/// Targets kept on the device (distinct seeds in flight; the oldest is replaced).
const TARGET_CACHE: usize = 8;

struct State {
    steps: [Option<Staged<SlotStepRecord>>; 2],
    steps_next: usize,
    steps_dev: CudaSlice<SlotStepRecord>,
    targets: Vec<DeviceTarget>,
    tick_serial: u64,
    curve_stage: Option<Staged<f32>>,
    gains_stage: Staged<f32>,
    gains_dev: CudaSlice<f32>,
    re: CudaSlice<f32>,
    im: CudaSlice<f32>,
    grain: CudaSlice<f32>,
    phases: CudaSlice<f64>,
    out_dev: CudaSlice<f32>,
    out_host: Option<PinnedBuf<f32>>,
    /// Recorded after the copy into `out_host`; the decode waits on it.
    out_ready: CudaEvent,
    tick_events: VecDeque<(CudaEvent, CudaEvent)>,
    decode_events: VecDeque<(CudaEvent, CudaEvent)>,
    spare_events: Vec<CudaEvent>,
    times: DeviceTimes,
}

/// The built-in model on a CUDA device (see the module doc).
pub struct CudaModel {
    cpu: BuiltinModel,
    driver: Driver,
    kernels: Kernels,
    tables: Tables,
    name: String,
    state: Mutex<State>,
    pool: Arc<Mutex<Vec<DeviceBuf<f32>>>>,
    fault: Mutex<Option<String>>,
}

fn launch_cfg(n: usize) -> LaunchConfig {
    let blocks = (n as u64).div_ceil(u64::from(BLOCK)).clamp(1, 65_535) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Makes sure `staged` holds exactly `len` elements (reallocated only when a shape changes:
/// the loop length for targets and curves).
fn ensure_staged<T: DeviceRepr + ValidAsZeroBits>(
    driver: &Driver,
    staged: &mut Option<Staged<T>>,
    len: usize,
) -> Result<(), DriverError> {
    if staged.as_ref().is_none_or(|s| s.host.len() != len.max(1)) {
        *staged = Some(Staged::new(driver, len)?);
    }
    Ok(())
}

impl CudaModel {
    /// The model on device `ordinal`: checks the driver is present, makes a context and one
    /// stream, compiles the kernels with NVRTC and uploads the decoder tables.
    pub fn new(ordinal: usize) -> Result<Self, String> {
        // SAFETY: only tries to dlopen the driver library.
        if !unsafe { sys::is_culib_present() } {
            return Err("the CUDA driver library (libcuda) is not present".into());
        }
        Self::build(ordinal).map_err(|e| format!("CUDA: {e}"))
    }

    fn build(ordinal: usize) -> Result<Self, Box<dyn std::error::Error>> {
        let driver = Driver::new(ordinal, Arc::new(HostSyncs::default()))?;
        let name = driver.ctx.name()?;
        let ptx = compile_ptx_with_opts(
            KERNEL_SOURCE,
            CompileOptions {
                // No FMA contraction and IEEE division / sqrt: closest to the CPU, and
                // bit-stable run to run.
                fmad: Some(false),
                prec_div: Some(true),
                prec_sqrt: Some(true),
                ftz: Some(false),
                name: Some("latentd_kernels.cu".into()),
                ..Default::default()
            },
        )?;
        let module = driver.load_module(ptx)?;
        let f = |name: &str| module.load_function(name);
        debug_assert_eq!(KERNEL_NAMES[1], "ld_start_slot");
        let kernels = Kernels {
            start: f("ld_start_slot")?,
            denoise: f("ld_denoise_batch")?,
            env_spectrum: f("ld_envelope_spectrum")?,
            env_grains: f("ld_envelope_grains")?,
            voice_phases: f("ld_voice_phases")?,
            mix: f("ld_mix_window")?,
        };
        let t = DecoderTables::new(SAMPLE_RATE, FRAME_RATE);
        let tables = Tables {
            n: t.n,
            bin_band: driver.upload(&t.bin_band)?,
            phase_sin: driver.upload(&t.phase_sin)?,
            phase_cos: driver.upload(&t.phase_cos)?,
            twiddle_cos: driver.upload(&t.twiddle_cos)?,
            twiddle_sin: driver.upload(&t.twiddle_sin)?,
            window: driver.upload(&t.window)?,
        };
        let state = State {
            steps: [None, None],
            steps_next: 0,
            steps_dev: driver.alloc_zeros(STEP_CAPACITY)?,
            targets: Vec::new(),
            tick_serial: 0,
            curve_stage: None,
            gains_stage: Staged::new(&driver, 8)?,
            gains_dev: driver.alloc_zeros(8)?,
            re: driver.alloc_zeros(1)?,
            im: driver.alloc_zeros(1)?,
            grain: driver.alloc_zeros(1)?,
            phases: driver.alloc_zeros(1)?,
            out_dev: driver.alloc_zeros(1)?,
            out_host: None,
            out_ready: driver.ctx.new_event(None)?,
            tick_events: VecDeque::new(),
            decode_events: VecDeque::new(),
            spare_events: Vec::new(),
            times: DeviceTimes::default(),
        };
        driver.synchronize()?;
        Ok(Self {
            cpu: BuiltinModel::new(),
            driver,
            kernels,
            tables,
            name,
            state: Mutex::new(state),
            pool: Arc::new(Mutex::new(Vec::new())),
            fault: Mutex::new(None),
        })
    }

    /// The device's name.
    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// The first device error, if one happened (the model then does no more device work).
    pub fn fault(&self) -> Option<String> {
        self.fault.lock_unpoisoned().clone()
    }

    /// Blocking calls so far (see [`HostSyncCounts`]).
    pub fn host_syncs(&self) -> HostSyncCounts {
        self.driver.syncs.counts()
    }

    fn faulted(&self) -> bool {
        self.fault.lock_unpoisoned().is_some()
    }

    fn record_fault(&self, what: &str, e: impl std::fmt::Display) {
        let mut f = self.fault.lock_unpoisoned();
        if f.is_none() {
            *f = Some(format!("{what}: {e}"));
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock_unpoisoned()
    }

    fn alloc_latents(&self, frames: usize) -> Result<CudaLatents, DriverError> {
        let len = frames * CHANNELS;
        let reused = {
            let mut pool = self.pool.lock_unpoisoned();
            pool.iter()
                .position(|b| b.len() == len)
                .map(|i| pool.swap_remove(i))
        };
        let buf = match reused {
            Some(b) => b,
            // Stream-ordered where the device has memory pools: then it does not wait.
            None => self.driver.device_buf(len)?,
        };
        Ok(CudaLatents {
            buf: Some(buf),
            frames,
            host: None,
            pool: Arc::clone(&self.pool),
        })
    }

    fn event(&self, state: &mut State) -> Result<CudaEvent, DriverError> {
        match state.spare_events.pop() {
            Some(e) => Ok(e),
            None => self
                .driver
                .ctx
                .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT)),
        }
    }

    /// Resolves finished event pairs into `times` (non-blocking queries only).
    fn resolve_times(&self, state: &mut State) -> Result<(), DriverError> {
        for which in 0..2 {
            loop {
                let queue = if which == 0 {
                    &mut state.tick_events
                } else {
                    &mut state.decode_events
                };
                let Some((a, b)) = queue.front() else { break };
                let Some(ms) = self.driver.elapsed_if_done(a, b)? else {
                    break;
                };
                let s = f64::from(ms) / 1e3;
                let (a, b) = queue.pop_front().expect("front");
                if which == 0 {
                    state.times.tick_s = Some(s);
                } else {
                    state.times.decode_s = Some(s);
                }
                state.spare_events.extend([a, b]);
            }
        }
        // Unresolved pairs beyond a few are dropped, not waited for.
        while state.tick_events.len() > 8 {
            state.tick_events.pop_front();
        }
        while state.decode_events.len() > 8 {
            state.decode_events.pop_front();
        }
        Ok(())
    }

    fn denoise_on_device(
        &self,
        batch: &mut [SlotStep<'_, CudaLatents>],
        shared: &StepShared<'_, Self>,
    ) -> Result<(), DriverError> {
        let Some(frames) = batch.first().map(|s| s.x.frames) else {
            return Ok(());
        };
        let len = frames * CHANNELS;
        let stream = &self.driver.stream;
        let mut guard = self.state();
        let st = &mut *guard;
        self.resolve_times(st)?;
        // Targets, one per slot seed: built on the host by the CPU model's cache (only when
        // the conditioning, knobs or seed change), uploaded only when their values change.
        st.tick_serial += 1;
        let mut target_ptrs: Vec<(u32, u64)> = Vec::with_capacity(batch.len());
        for slot in batch.iter() {
            let seed = slot.noise.seed;
            if target_ptrs.iter().any(|(s, _)| *s == seed) {
                continue;
            }
            let host = self
                .cpu
                .target_for_seed(shared.cond, shared.knobs, frames, seed);
            let ptr = self.device_target(st, seed, host)?;
            target_ptrs.push((seed, ptr));
        }
        let source = shared.source.filter(|s| s.frames == frames);
        let records: Vec<SlotStepRecord> = batch
            .iter()
            .map(|s| SlotStepRecord {
                x: s.x.ptr(stream),
                target: target_ptrs
                    .iter()
                    .find(|(seed, _)| *seed == s.noise.seed)
                    .map_or(0, |(_, p)| *p),
                t_curr: s.t_curr,
                t_next: s.t_next,
                t_start: s.t_start,
                x0_lock: if source.is_some() { s.x0_lock } else { 0.0 },
                sde: u32::from(s.sde),
                seed: s.noise.seed,
                window: s.noise.window,
                step: s.noise.step,
                active: u32::from(s.t_curr > 0.0 && s.x.frames == frames),
                pad: 0,
            })
            .collect();
        let i = st.steps_next;
        st.steps_next = 1 - i;
        // Step staging holds STEP_CAPACITY records (more only if a batch ever needs it).
        let cap = records.len().max(STEP_CAPACITY);
        if st.steps[i]
            .as_ref()
            .is_none_or(|s| s.host.len() < records.len())
        {
            st.steps[i] = Some(Staged::new(&self.driver, cap)?);
        }
        let staged_len = st.steps[i].as_ref().expect("staged").host.len();
        self.driver.grow(&mut st.steps_dev, staged_len)?;
        let stage = st.steps[i].as_mut().expect("staged");
        stage.upload(
            &self.driver,
            |h| h.copy_from_slice(&records),
            records.len(),
            &mut st.steps_dev,
        )?;
        let (start_ev, end_ev) = (self.event(st)?, self.event(st)?);
        start_ev.record(stream)?;
        let src_ptr = source.map_or(0, |s| s.ptr(stream));
        let (curve_ptr, curve_len) = match shared.sde_curve {
            Some(c) if !c.host.is_empty() => (c.buf.device_ptr(stream).0, c.host.len() as i64),
            _ => (0u64, 0i64),
        };
        let slots = records.len() as i32;
        let len_arg = len as i64;
        let mut launch = stream.launch_builder(&self.kernels.denoise);
        launch
            .arg(&st.steps_dev)
            .arg(&slots)
            .arg(&len_arg)
            .arg(&src_ptr)
            .arg(&curve_ptr)
            .arg(&curve_len);
        // SAFETY: the argument list matches `ld_denoise_batch`; every address is a live
        // buffer of `len` floats (the slots' latents, their targets, the source) or 0.
        unsafe { launch.launch(launch_cfg(records.len() * len)) }?;
        end_ev.record(stream)?;
        st.tick_events.push_back((start_ev, end_ev));
        Ok(())
    }

    /// The device address of `seed`'s target with values `host`, uploading only on change.
    fn device_target(
        &self,
        st: &mut State,
        seed: u32,
        host: Arc<Vec<f32>>,
    ) -> Result<u64, DriverError> {
        let len = host.len();
        let tick = st.tick_serial;
        let at = match st
            .targets
            .iter()
            .position(|t| t.seed == seed && t.dev.len() == len)
        {
            Some(i) => i,
            None => {
                let entry = DeviceTarget {
                    seed,
                    host: Arc::new(Vec::new()),
                    dev: self.driver.device_buf(len.max(1))?,
                    stage: Staged::new(&self.driver, len)?,
                    last_tick: tick,
                };
                if st.targets.len() < TARGET_CACHE {
                    st.targets.push(entry);
                    st.targets.len() - 1
                } else {
                    let oldest = (0..st.targets.len())
                        .min_by_key(|&i| st.targets[i].last_tick)
                        .expect("full cache");
                    st.targets[oldest] = entry;
                    oldest
                }
            }
        };
        let t = &mut st.targets[at];
        t.last_tick = tick;
        if !Arc::ptr_eq(&t.host, &host) && *t.host != *host {
            t.stage
                .upload(&self.driver, |h| h.copy_from_slice(&host), len, &mut t.dev)?;
        }
        t.host = host;
        Ok(t.dev.device_ptr(&self.driver.stream).0)
    }

    fn start_on_device(
        &self,
        start: SlotStart<'_, CudaLatents>,
    ) -> Result<CudaLatents, DriverError> {
        let x = self.alloc_latents(start.frames)?;
        let n = (start.frames * CHANNELS) as i64;
        let stream = &self.driver.stream;
        let fits = |l: &CudaLatents| l.frames == start.frames;
        let src = start
            .source
            .filter(|s| fits(s))
            .map_or(0, |s| s.ptr(stream));
        let (fb, w) = match start.feedback {
            Some((p, w)) if fits(p) => (p.ptr(stream), w),
            _ => (0, 0.0),
        };
        let mut launch = stream.launch_builder(&self.kernels.start);
        let xp = x.buf.as_deref().expect("fresh");
        launch
            .arg(xp)
            .arg(&n)
            .arg(&src)
            .arg(&fb)
            .arg(&w)
            .arg(&start.t_start)
            .arg(&start.noise.seed)
            .arg(&start.noise.window)
            .arg(&start.noise.step);
        // SAFETY: matches `ld_start_slot`; addresses are live buffers of n floats or 0.
        unsafe { launch.launch(launch_cfg(n as usize)) }?;
        Ok(x)
    }

    #[allow(clippy::too_many_arguments)]
    fn decode_on_device(
        &self,
        latents: &CudaLatents,
        place: Option<&ChunkPlace<'_, CudaLatents>>,
        gains: &[f32; 8],
        start_frame: usize,
        frames: usize,
        out: &mut [f32],
    ) -> Result<(), DriverError> {
        let stream = &self.driver.stream;
        let hop = (SAMPLE_RATE / FRAME_RATE) as usize;
        let total = latents.frames;
        let n = self.tables.n;
        let bins = n / 2 + 1;
        let grains = frames + 2;
        let mut guard = self.state();
        let st = &mut *guard;
        self.resolve_times(st)?;
        let (start_ev, end_ev) = (self.event(st)?, self.event(st)?);
        start_ev.record(stream)?;
        st.gains_stage.upload(
            &self.driver,
            |h| h.copy_from_slice(gains),
            8,
            &mut st.gains_dev,
        )?;
        let lat = latents.buf.as_deref().expect("latents present");
        let (total_a, start_a, frames_a) =
            (total as i64, (start_frame % total) as i64, frames as i64);
        // The chunk's neighbours (`ld_chunk_frame`): a whole loop is its own.
        let lat_ptr = lat.device_ptr(stream).0;
        let (before, after) = match place {
            Some(p) => (p.before, p.after),
            None => (latents, latents),
        };
        let neighbour_ptr =
            |l: &CudaLatents| l.buf.as_ref().map_or(lat_ptr, |b| b.device_ptr(stream).0);
        let (before_ptr, after_ptr) = (neighbour_ptr(before), neighbour_ptr(after));
        let (before_total, after_total) = (before.frames as i64, after.frames as i64);
        let (loop_offset, loop_total) = place.map_or((0, total_a), |p| {
            (p.loop_offset as i64, p.loop_frames as i64)
        });
        let (hop_a, n_a, sr) = (hop as i32, n as i32, SAMPLE_RATE as f32);
        let mut grain_ptr = 0u64;
        if gains[..4].iter().any(|&g| g > 0.0) {
            self.driver.grow(&mut st.re, grains * 2 * bins)?;
            self.driver.grow(&mut st.im, grains * 2 * bins)?;
            self.driver.grow(&mut st.grain, grains * 2 * n)?;
            let grains_a = grains as i32;
            let mut l = stream.launch_builder(&self.kernels.env_spectrum);
            l.arg(&mut st.re)
                .arg(&mut st.im)
                .arg(&grains_a)
                .arg(&n_a)
                .arg(lat)
                .arg(&total_a)
                .arg(&start_a)
                .arg(&before_ptr)
                .arg(&before_total)
                .arg(&after_ptr)
                .arg(&after_total)
                .arg(&loop_offset)
                .arg(&loop_total)
                .arg(&st.gains_dev)
                .arg(&self.tables.bin_band)
                .arg(&self.tables.phase_sin)
                .arg(&self.tables.phase_cos);
            // SAFETY: matches `ld_envelope_spectrum`; buffers sized above.
            unsafe { l.launch(launch_cfg(grains * 2 * bins)) }?;
            let mut l = stream.launch_builder(&self.kernels.env_grains);
            l.arg(&mut st.grain)
                .arg(&grains_a)
                .arg(&n_a)
                .arg(&st.re)
                .arg(&st.im)
                .arg(&self.tables.twiddle_cos)
                .arg(&self.tables.twiddle_sin)
                .arg(&self.tables.window);
            // SAFETY: matches `ld_envelope_grains`; buffers sized above.
            unsafe { l.launch(launch_cfg(grains * 2 * n)) }?;
            grain_ptr = st.grain.device_ptr(stream).0;
        }
        let mut phases_ptr = 0u64;
        if gains[4] > 0.0 || gains[5] > 0.0 {
            self.driver.grow(&mut st.phases, 2 * (total + 2))?;
            let mut l = stream.launch_builder(&self.kernels.voice_phases);
            l.arg(&mut st.phases)
                .arg(lat)
                .arg(&total_a)
                .arg(&hop_a)
                .arg(&sr);
            // SAFETY: matches `ld_voice_phases`; two threads, one per voice.
            unsafe {
                l.launch(LaunchConfig {
                    grid_dim: (1, 1, 1),
                    block_dim: (32, 1, 1),
                    shared_mem_bytes: 0,
                })
            }?;
            phases_ptr = st.phases.device_ptr(stream).0;
        }
        let want = frames * hop * 2;
        self.driver.grow(&mut st.out_dev, want)?;
        let mut l = stream.launch_builder(&self.kernels.mix);
        l.arg(&mut st.out_dev)
            .arg(&frames_a)
            .arg(&hop_a)
            .arg(&sr)
            .arg(lat)
            .arg(&total_a)
            .arg(&start_a)
            .arg(&before_ptr)
            .arg(&before_total)
            .arg(&after_ptr)
            .arg(&after_total)
            .arg(&loop_offset)
            .arg(&loop_total)
            .arg(&st.gains_dev)
            .arg(&grain_ptr)
            .arg(&n_a)
            .arg(&phases_ptr);
        // SAFETY: matches `ld_mix_window`; out_dev holds `want` floats.
        unsafe { l.launch(launch_cfg(want)) }?;
        end_ev.record(stream)?;
        if st.out_host.as_ref().is_none_or(|h| h.len() != want) {
            // Plain pinned memory (not write-combined): the host reads it.
            // SAFETY: fully written by the copy below before it is read.
            st.out_host = Some(unsafe { self.driver.alloc_pinned(want, 0) }?);
        }
        let host = st.out_host.as_mut().expect("allocated");
        self.driver
            .copy_to_pinned(&st.out_dev.slice(..want), host)?;
        st.out_ready.record(stream)?;
        // The one blocking call per window: the audio must be on the host for the ring.
        self.driver.wait(&st.out_ready)?;
        out.copy_from_slice(self.driver.pinned(host)?);
        st.decode_events.push_back((start_ev, end_ev));
        Ok(())
    }

    fn upload_host_latents(
        &self,
        data: Vec<f32>,
        frames: usize,
    ) -> Result<CudaLatents, DriverError> {
        let buf = self.driver.upload_buf(&data)?;
        Ok(CudaLatents {
            buf: Some(buf),
            frames,
            host: Some(Arc::new(data)),
            pool: Arc::clone(&self.pool),
        })
    }

    /// Latents made from host values (an uploaded copy; the host copy is kept).
    pub fn latents_from_host(&self, data: Vec<f32>) -> Result<CudaLatents, String> {
        let frames = data.len() / CHANNELS;
        self.upload_host_latents(data, frames)
            .map_err(|e| e.to_string())
    }

    /// Copies latents to the host, or the error (used by the failover to rescue slots).
    pub fn try_latents_to_host(&self, latents: &CudaLatents) -> Result<Vec<f32>, String> {
        if let Some(h) = &latents.host {
            return Ok(h.to_vec());
        }
        let buf = latents.buf.as_deref().expect("latents present");
        self.driver.download(buf).map_err(|e| e.to_string())
    }
}

impl BuiltinEncoders for CudaModel {
    fn builtin_encoders(&self) -> &BuiltinModel {
        &self.cpu
    }
}

impl Model for CudaModel {
    type Latents = CudaLatents;
    type Curve = CudaCurve;

    fn geometry(&self) -> Geometry {
        self.cpu.geometry()
    }

    fn encode_source(&self, audio: AudioView<'_>) -> Result<CudaLatents, EncodeError> {
        let host = self.cpu.encode_source(audio)?;
        let frames = self.cpu.latent_frames(&host);
        self.upload_host_latents(host.as_slice().to_vec(), frames)
            .map_err(|e| {
                self.record_fault("source upload", e);
                EncodeError::Refused {
                    field: "source",
                    reason: format!("CUDA upload failed: {e}"),
                }
            })
    }

    fn latent_frames(&self, latents: &CudaLatents) -> usize {
        latents.frames
    }

    fn slice_latents(
        &self,
        latents: &CudaLatents,
        start_frame: usize,
        frames: usize,
    ) -> CudaLatents {
        // Called when a source arrives (walk-mode chunks), not per tick: cut on the host and
        // upload the chunk, keeping its host copy like any encoded source.
        let host = self.latents_to_host(latents);
        let data = crate::model::slice_host_frames(&host, CHANNELS, start_frame, frames);
        match self.upload_host_latents(data.clone(), frames) {
            Ok(chunk) => chunk,
            Err(e) => {
                self.record_fault("walk chunk upload", e);
                CudaLatents {
                    buf: None,
                    frames,
                    host: Some(Arc::new(data)),
                    pool: Arc::clone(&self.pool),
                }
            }
        }
    }

    fn latents_to_host(&self, latents: &CudaLatents) -> Vec<f32> {
        self.try_latents_to_host(latents).unwrap_or_else(|e| {
            self.record_fault("latents to host", &e);
            vec![0.0; latents.frames * CHANNELS]
        })
    }

    fn upload_curve(&self, host: &[f32]) -> CudaCurve {
        // The pipeline uploads a new curve inside its tick, when the knobs change it.
        let _phase = PhaseGuard::enter(Phase::Tick);
        let upload = || -> Result<DeviceBuf<f32>, DriverError> {
            let mut buf = self.driver.device_buf(host.len().max(1))?;
            if !host.is_empty() {
                let mut st = self.state();
                ensure_staged(&self.driver, &mut st.curve_stage, host.len())?;
                let stage = st.curve_stage.as_mut().expect("staged");
                stage.upload(
                    &self.driver,
                    |h| h.copy_from_slice(host),
                    host.len(),
                    &mut buf,
                )?;
            }
            Ok(buf)
        };
        let buf = if self.faulted() {
            None
        } else {
            upload()
                .map_err(|e| self.record_fault("curve upload", e))
                .ok()
        };
        CudaCurve {
            // After a fault the curve keeps its host values only; a zero-length slice would
            // need the device, so the failover never passes such a curve to the device.
            buf: buf
                .unwrap_or_else(|| self.driver.null().expect("null slice needs no device work")),
            host: host.to_vec(),
        }
    }

    fn start_slot(&self, start: SlotStart<'_, CudaLatents>) -> CudaLatents {
        let _phase = PhaseGuard::enter(Phase::Tick);
        let frames = start.frames;
        if !self.faulted() {
            match self.start_on_device(start) {
                Ok(x) => return x,
                Err(e) => self.record_fault("start slot", e),
            }
        }
        CudaLatents {
            buf: None,
            frames,
            host: None,
            pool: Arc::clone(&self.pool),
        }
    }

    fn denoise_batch(
        &self,
        batch: &mut [SlotStep<'_, CudaLatents>],
        shared: &StepShared<'_, Self>,
    ) -> Result<(), ModelError> {
        let _phase = PhaseGuard::enter(Phase::Tick);
        if self.faulted() || batch.iter().any(|s| s.x.buf.is_none()) {
            return Err(ModelError::Run {
                file: "cuda",
                reason: "the device has failed".into(),
            });
        }
        self.denoise_on_device(batch, shared).map_err(|e| {
            let reason = e.to_string();
            self.record_fault("denoise", e);
            ModelError::Run {
                file: "cuda",
                reason,
            }
        })
    }

    fn decode_context_frames(&self) -> usize {
        0
    }

    fn decode_chunk_window(
        &self,
        latents: &CudaLatents,
        place: Option<&ChunkPlace<'_, CudaLatents>>,
        gains: &[f32; 8],
        all_zero: bool,
        start_frame: usize,
        frames: usize,
        out: &mut [f32],
    ) -> Result<(), DecodeError> {
        let _phase = PhaseGuard::enter(Phase::Decode);
        let hop = (SAMPLE_RATE / FRAME_RATE) as usize;
        crate::model::check_decode_request(latents.frames, frames, hop * 2, out.len())?;
        if all_zero {
            out.fill(0.0);
            return Ok(());
        }
        if let Some(f) = self.fault() {
            return Err(DecodeError::Backend(f));
        }
        let made = |l: &CudaLatents| l.buf.is_some() && l.frames > 0;
        if !made(latents) || place.is_some_and(|p| !made(p.before) || !made(p.after)) {
            return Err(DecodeError::Backend(
                "latents were never made on the device".into(),
            ));
        }
        self.decode_on_device(latents, place, gains, start_frame, frames, out)
            .map_err(|e| {
                self.record_fault("decode", e);
                DecodeError::Backend(format!("CUDA decode: {e}"))
            })
    }

    fn device_times(&self) -> Option<DeviceTimes> {
        let mut st = self.state();
        if let Err(e) = self.resolve_times(&mut st) {
            drop(st);
            self.record_fault("event query", e);
            return None;
        }
        Some(st.times)
    }
}
