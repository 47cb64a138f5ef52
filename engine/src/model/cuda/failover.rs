//! [`FailoverModel`]: runs a device backend (the CUDA model) and moves to the built-in CPU
//! model when the device fails at run time (device lost, out of memory), without stopping the
//! engine: the ring keeps playing what it holds, the next ticks run on the CPU.
//!
//! What carries over at the switch: every latent that still has a host copy (encoded sources
//! keep one) or can still be read back (an out-of-memory fault leaves the device readable);
//! an in-flight slot whose latent is lost with the device is re-noised at its current noise
//! level by the slot-start rule (`x = t * noise + (1 - t) * source`, the step's noise key), so
//! it still finishes on schedule. The switch is one-way and is reported through
//! [`BackendStatus`] (the daemon logs it and shows it in `/status`).
//!
//! [`MockFaultyDevice`] is a **mock of a GPU**, clearly not one: the built-in CPU model behind
//! the [`DeviceBackend`] interface, with a fault injected after a set number of ticks. It
//! exists because CI has no GPU, and it tests the failover path end to end.
//!
//! Threading: as [`Model`]; the status is shared (`Arc`) with whoever reports it.

use crate::lock::MutexExt;
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::audio_clip::AudioView;
use crate::conditioning::EncodeError;
use crate::model::builtin::{BuiltinCond, BuiltinEncoders, BuiltinModel, CpuLatents};
use crate::model::{
    ChunkPlace, DecodeError, DeviceTimes, Geometry, Model, ModelError, SlotStart, SlotStep,
    StepShared,
};
use crate::rng::fill_gaussian;

/// What a device backend offers the failover beyond [`Model`].
pub trait DeviceBackend: Model<Cond = BuiltinCond> {
    /// The backend's name for logs and status ("cuda: NVIDIA H200").
    fn backend_name(&self) -> String;
    /// The first device error, once one happened.
    fn fault(&self) -> Option<String>;
    /// A host copy of `latents` if one exists or the device can still be read.
    fn rescue(&self, latents: &Self::Latents) -> Option<Vec<f32>>;
}

/// Which backend runs, shared with the daemon's status.
#[derive(Debug)]
pub struct BackendStatus {
    primary: String,
    fallback: Mutex<Option<String>>,
    fell_back: AtomicBool,
    rescued: AtomicU64,
    renoised: AtomicU64,
}

impl BackendStatus {
    fn new(primary: String) -> Self {
        Self {
            primary,
            fallback: Mutex::new(None),
            fell_back: AtomicBool::new(false),
            rescued: AtomicU64::new(0),
            renoised: AtomicU64::new(0),
        }
    }

    /// The device backend's name.
    pub fn primary(&self) -> &str {
        &self.primary
    }

    /// Whether the engine runs on the CPU after a device failure.
    pub fn fell_back(&self) -> bool {
        self.fell_back.load(Ordering::Acquire)
    }

    /// The device error that caused the fallback.
    pub fn fallback_reason(&self) -> Option<String> {
        self.fallback.lock_unpoisoned().clone()
    }

    /// The backend running now, in words ("cuda: ..." or "builtin-cpu (fallback: ...)").
    pub fn describe(&self) -> String {
        match self.fallback_reason() {
            Some(r) => format!("builtin-cpu (fallback from {}: {r})", self.primary),
            None => self.primary.clone(),
        }
    }

    /// Latents carried to the CPU with their values, and in-flight slots re-noised.
    pub fn carried(&self) -> (u64, u64) {
        (
            self.rescued.load(Ordering::Relaxed),
            self.renoised.load(Ordering::Relaxed),
        )
    }
}

/// Latents of a [`FailoverModel`]: on the device, or on the host after the switch.
pub enum FailoverLatents<L> {
    /// On the device backend.
    Device(L),
    /// On the host (CPU backend).
    Host(CpuLatents),
}

/// A curve of a [`FailoverModel`]: the device copy (while the device runs) and the host one.
pub struct FailoverCurve<C> {
    device: Option<C>,
    host: Vec<f32>,
}

fn device_latents<L>(l: &FailoverLatents<L>) -> Option<&L> {
    match l {
        FailoverLatents::Device(d) => Some(d),
        FailoverLatents::Host(_) => None,
    }
}

/// A device backend with a CPU fallback (see the module doc).
pub struct FailoverModel<D: DeviceBackend> {
    /// `None`: CPU only (the daemon's `--engine builtin-cpu` in a CUDA build).
    device: Option<D>,
    cpu: BuiltinModel,
    status: Arc<BackendStatus>,
}

impl<D: DeviceBackend> FailoverModel<D> {
    /// Runs `device`, falling back to the built-in CPU model.
    pub fn new(device: D) -> Self {
        let status = Arc::new(BackendStatus::new(device.backend_name()));
        Self {
            device: Some(device),
            cpu: BuiltinModel::new(),
            status,
        }
    }

    /// The built-in CPU model alone, behind the same type.
    pub fn cpu_only() -> Self {
        Self {
            device: None,
            cpu: BuiltinModel::new(),
            status: Arc::new(BackendStatus::new("builtin-cpu".into())),
        }
    }

    /// The shared status.
    pub fn status(&self) -> Arc<BackendStatus> {
        Arc::clone(&self.status)
    }

    /// The device backend (`None` when CPU only).
    pub fn device(&self) -> Option<&D> {
        self.device.as_ref()
    }

    fn dev(&self) -> &D {
        self.device.as_ref().expect("on_device() checked")
    }

    /// Whether the device still runs; switches (once) when it reports a fault.
    fn on_device(&self) -> bool {
        let Some(device) = &self.device else {
            return false;
        };
        if self.status.fell_back() {
            return false;
        }
        match device.fault() {
            None => true,
            Some(reason) => {
                let mut f = self.status.fallback.lock_unpoisoned();
                if f.is_none() {
                    *f = Some(reason);
                }
                self.status.fell_back.store(true, Ordering::Release);
                false
            }
        }
    }

    /// Host latents: borrowed when already on the host, rescued from the device otherwise.
    fn to_host<'a>(&self, l: &'a FailoverLatents<D::Latents>) -> Option<Cow<'a, CpuLatents>> {
        match l {
            FailoverLatents::Host(h) => Some(Cow::Borrowed(h)),
            FailoverLatents::Device(d) => self.dev().rescue(d).map(|v| {
                self.status.rescued.fetch_add(1, Ordering::Relaxed);
                Cow::Owned(CpuLatents::from_host(v))
            }),
        }
    }
}

impl<D: DeviceBackend> BuiltinEncoders for FailoverModel<D> {
    fn builtin_encoders(&self) -> &BuiltinModel {
        &self.cpu
    }
}

impl<D: DeviceBackend> Model for FailoverModel<D> {
    type Latents = FailoverLatents<D::Latents>;
    type Curve = FailoverCurve<D::Curve>;

    fn geometry(&self) -> Geometry {
        self.cpu.geometry()
    }

    fn encode_source(&self, audio: AudioView<'_>) -> Result<Self::Latents, EncodeError> {
        if self.on_device() {
            match self.dev().encode_source(audio) {
                Ok(l) => return Ok(FailoverLatents::Device(l)),
                Err(e) if self.on_device() => return Err(e),
                Err(_) => {} // the device failed: encode on the CPU
            }
        }
        self.cpu.encode_source(audio).map(FailoverLatents::Host)
    }

    fn latent_frames(&self, latents: &Self::Latents) -> usize {
        match latents {
            FailoverLatents::Device(d) => self.dev().latent_frames(d),
            FailoverLatents::Host(h) => self.cpu.latent_frames(h),
        }
    }

    fn slice_latents(&self, latents: &Self::Latents, start: usize, frames: usize) -> Self::Latents {
        match latents {
            FailoverLatents::Device(d) => {
                FailoverLatents::Device(self.dev().slice_latents(d, start, frames))
            }
            FailoverLatents::Host(h) => {
                FailoverLatents::Host(self.cpu.slice_latents(h, start, frames))
            }
        }
    }

    fn latents_to_host(&self, latents: &Self::Latents) -> Vec<f32> {
        match latents {
            FailoverLatents::Device(d) => self.dev().latents_to_host(d),
            FailoverLatents::Host(h) => h.as_slice().to_vec(),
        }
    }

    fn upload_curve(&self, host: &[f32]) -> Self::Curve {
        FailoverCurve {
            device: self.on_device().then(|| self.dev().upload_curve(host)),
            host: host.to_vec(),
        }
    }

    fn start_slot(&self, start: SlotStart<'_, Self::Latents>) -> Self::Latents {
        let all_device = start
            .source
            .is_none_or(|s| matches!(s, FailoverLatents::Device(_)))
            && start
                .feedback
                .is_none_or(|(p, _)| matches!(p, FailoverLatents::Device(_)));
        if self.on_device() && all_device {
            let x = self.dev().start_slot(SlotStart {
                frames: start.frames,
                source: start.source.and_then(device_latents),
                feedback: start
                    .feedback
                    .and_then(|(p, w)| device_latents(p).map(|d| (d, w))),
                t_start: start.t_start,
                noise: start.noise,
            });
            if self.on_device() {
                return FailoverLatents::Device(x);
            }
        }
        let source = start.source.and_then(|s| self.to_host(s));
        let feedback = start
            .feedback
            .and_then(|(p, w)| self.to_host(p).map(|h| (h, w)));
        FailoverLatents::Host(self.cpu.start_slot(SlotStart {
            frames: start.frames,
            source: source.as_deref(),
            feedback: feedback.as_ref().map(|(h, w)| (&**h, *w)),
            t_start: start.t_start,
            noise: start.noise,
        }))
    }

    fn denoise_batch(
        &self,
        batch: &mut [SlotStep<'_, Self::Latents>],
        shared: &StepShared<'_, Self>,
    ) -> Result<(), ModelError> {
        let device_source = match shared.source {
            Some(FailoverLatents::Device(d)) => Some(Some(d)),
            Some(FailoverLatents::Host(_)) => None,
            None => Some(None),
        };
        let all_device = batch
            .iter()
            .all(|s| matches!(s.x, FailoverLatents::Device(_)));
        if self.on_device()
            && all_device
            && let Some(source) = device_source
        {
            let mut steps: Vec<SlotStep<'_, D::Latents>> = batch
                .iter_mut()
                .filter_map(|s| {
                    s.map_x(|x| match x {
                        FailoverLatents::Device(x) => Some(x),
                        FailoverLatents::Host(_) => None,
                    })
                })
                .collect();
            let shared_dev = StepShared::<D> {
                cond: shared.cond,
                knobs: shared.knobs,
                source,
                sde_curve: shared.sde_curve.and_then(|c| c.device.as_ref()),
            };
            let on_device = self.dev().denoise_batch(&mut steps, &shared_dev);
            if on_device.is_ok() && self.on_device() {
                return Ok(());
            }
            // The device failed during this step: redo it on the CPU from what survives.
        }
        let source = shared.source.and_then(|s| self.to_host(s));
        for slot in batch.iter_mut() {
            if let FailoverLatents::Device(_) = slot.x {
                let host = self
                    .to_host(slot.x)
                    .map(Cow::into_owned)
                    .unwrap_or_else(|| {
                        self.status.renoised.fetch_add(1, Ordering::Relaxed);
                        let frames = self.latent_frames(slot.x);
                        let mut x = vec![0.0f32; frames * 64];
                        fill_gaussian(slot.noise, 0, &mut x);
                        if let Some(src) = source.as_ref().filter(|s| s.as_slice().len() == x.len())
                        {
                            let t = slot.t_curr;
                            for (v, s) in x.iter_mut().zip(src.as_slice()) {
                                *v = t * *v + (1.0 - t) * s;
                            }
                        }
                        CpuLatents::from_host(x)
                    });
                *slot.x = FailoverLatents::Host(host);
            }
        }
        let mut steps: Vec<SlotStep<'_, CpuLatents>> = batch
            .iter_mut()
            .filter_map(|s| {
                s.map_x(|x| match x {
                    FailoverLatents::Host(x) => Some(x),
                    FailoverLatents::Device(_) => None,
                })
            })
            .collect();
        let shared_cpu = StepShared::<BuiltinModel> {
            cond: shared.cond,
            knobs: shared.knobs,
            source: source.as_deref(),
            sde_curve: shared.sde_curve.map(|c| &c.host),
        };
        self.cpu.denoise_batch(&mut steps, &shared_cpu)
    }

    fn decode_context_frames(&self) -> usize {
        0
    }

    fn decode_chunk_window(
        &self,
        latents: &Self::Latents,
        place: Option<&ChunkPlace<'_, Self::Latents>>,
        gains: &[f32; 8],
        all_zero: bool,
        start_frame: usize,
        frames: usize,
        out: &mut [f32],
    ) -> Result<(), DecodeError> {
        let on_device = |l: &Self::Latents| matches!(l, FailoverLatents::Device(_));
        if let FailoverLatents::Device(d) = latents
            && self.on_device()
            && place.is_none_or(|p| on_device(p.before) && on_device(p.after))
        {
            let dev_place = place.map(|p| p.map(|l| device_latents(l).expect("checked above")));
            match self.dev().decode_chunk_window(
                d,
                dev_place.as_ref(),
                gains,
                all_zero,
                start_frame,
                frames,
                out,
            ) {
                Err(DecodeError::Backend(_)) if !self.on_device() => {}
                other => return other,
            }
        }
        let lost = || DecodeError::Backend("the latent was lost with the device".into());
        let host = self.to_host(latents).ok_or_else(lost)?;
        let around = match place {
            Some(p) => Some((
                self.to_host(p.before).ok_or_else(lost)?,
                self.to_host(p.after).ok_or_else(lost)?,
                p.loop_offset,
                p.loop_frames,
            )),
            None => None,
        };
        let host_place = around.as_ref().map(|(b, a, o, n)| ChunkPlace {
            before: b.as_ref(),
            after: a.as_ref(),
            loop_offset: *o,
            loop_frames: *n,
        });
        self.cpu.decode_chunk_window(
            &host,
            host_place.as_ref(),
            gains,
            all_zero,
            start_frame,
            frames,
            out,
        )
    }

    fn device_times(&self) -> Option<DeviceTimes> {
        if self.on_device() {
            self.dev().device_times()
        } else {
            None
        }
    }
}

/// A MOCK of a GPU device for tests (CI has none): the built-in CPU model behind
/// [`DeviceBackend`], which reports "device lost" after `fail_after_ticks` denoise calls. Its
/// "device memory" is lost with it: only latents with a host copy (encoded sources) survive.
pub struct MockFaultyDevice {
    cpu: BuiltinModel,
    fail_after_ticks: u64,
    ticks: AtomicU64,
    lost: AtomicBool,
}

/// Latents of the [`MockFaultyDevice`].
pub struct MockDeviceLatents {
    data: CpuLatents,
    host_copy: bool,
}

impl MockFaultyDevice {
    /// A mock device that fails after `fail_after_ticks` ticks.
    pub fn new(fail_after_ticks: u64) -> Self {
        Self {
            cpu: BuiltinModel::new(),
            fail_after_ticks,
            ticks: AtomicU64::new(0),
            lost: AtomicBool::new(false),
        }
    }

    fn failed(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }
}

impl BuiltinEncoders for MockFaultyDevice {
    fn builtin_encoders(&self) -> &BuiltinModel {
        &self.cpu
    }
}

impl Model for MockFaultyDevice {
    type Latents = MockDeviceLatents;
    type Curve = Vec<f32>;

    fn geometry(&self) -> Geometry {
        self.cpu.geometry()
    }
    fn encode_source(&self, audio: AudioView<'_>) -> Result<MockDeviceLatents, EncodeError> {
        Ok(MockDeviceLatents {
            data: self.cpu.encode_source(audio)?,
            host_copy: true,
        })
    }
    fn latent_frames(&self, l: &MockDeviceLatents) -> usize {
        self.cpu.latent_frames(&l.data)
    }
    fn latents_to_host(&self, l: &MockDeviceLatents) -> Vec<f32> {
        l.data.as_slice().to_vec()
    }
    fn slice_latents(
        &self,
        l: &MockDeviceLatents,
        start: usize,
        frames: usize,
    ) -> MockDeviceLatents {
        MockDeviceLatents {
            data: self.cpu.slice_latents(&l.data, start, frames),
            host_copy: l.host_copy,
        }
    }
    fn upload_curve(&self, host: &[f32]) -> Vec<f32> {
        host.to_vec()
    }
    fn start_slot(&self, s: SlotStart<'_, MockDeviceLatents>) -> MockDeviceLatents {
        let data = self.cpu.start_slot(SlotStart {
            frames: s.frames,
            source: s.source.map(|l| &l.data),
            feedback: s.feedback.map(|(l, w)| (&l.data, w)),
            t_start: s.t_start,
            noise: s.noise,
        });
        MockDeviceLatents {
            data,
            host_copy: false,
        }
    }
    fn denoise_batch(
        &self,
        batch: &mut [SlotStep<'_, MockDeviceLatents>],
        shared: &StepShared<'_, Self>,
    ) -> Result<(), ModelError> {
        if self.failed() || self.ticks.fetch_add(1, Ordering::Relaxed) >= self.fail_after_ticks {
            self.lost.store(true, Ordering::Relaxed);
            // The injected fault: the step never happens.
            return Err(ModelError::Run {
                file: "mock",
                reason: "injected device loss".into(),
            });
        }
        let mut steps: Vec<SlotStep<'_, CpuLatents>> = batch
            .iter_mut()
            .filter_map(|s| s.map_x(|x| Some(&mut x.data)))
            .collect();
        let cpu_shared = StepShared::<BuiltinModel> {
            cond: shared.cond,
            knobs: shared.knobs,
            source: shared.source.map(|l| &l.data),
            sde_curve: shared.sde_curve,
        };
        self.cpu.denoise_batch(&mut steps, &cpu_shared)
    }
    fn decode_context_frames(&self) -> usize {
        0
    }
    fn decode_chunk_window(
        &self,
        l: &MockDeviceLatents,
        place: Option<&ChunkPlace<'_, MockDeviceLatents>>,
        gains: &[f32; 8],
        all_zero: bool,
        start_frame: usize,
        frames: usize,
        out: &mut [f32],
    ) -> Result<(), DecodeError> {
        if self.failed() {
            return Err(DecodeError::Backend("mock device lost".into()));
        }
        let place = place.map(|p| p.map(|l| &l.data));
        self.cpu.decode_chunk_window(
            &l.data,
            place.as_ref(),
            gains,
            all_zero,
            start_frame,
            frames,
            out,
        )
    }
    fn device_times(&self) -> Option<DeviceTimes> {
        Some(DeviceTimes::default())
    }
}

impl DeviceBackend for MockFaultyDevice {
    fn backend_name(&self) -> String {
        "mock-faulty-device (a CPU mock of a GPU, for tests)".into()
    }
    fn fault(&self) -> Option<String> {
        self.failed().then(|| {
            format!(
                "mock: device lost after {} ticks (injected)",
                self.fail_after_ticks
            )
        })
    }
    fn rescue(&self, l: &MockDeviceLatents) -> Option<Vec<f32>> {
        (l.host_copy || !self.failed()).then(|| l.data.as_slice().to_vec())
    }
}

#[cfg(feature = "cuda")]
impl DeviceBackend for super::CudaModel {
    fn backend_name(&self) -> String {
        format!("builtin-cuda ({})", self.device_name())
    }
    fn fault(&self) -> Option<String> {
        super::CudaModel::fault(self)
    }
    fn rescue(&self, l: &super::CudaLatents) -> Option<Vec<f32>> {
        self.try_latents_to_host(l).ok()
    }
}

#[cfg(test)]
#[path = "failover_tests.rs"]
mod tests;
