//! Model bundles (`latentd-bundle/1`): a folder holding `bundle.toml` and the ONNX graphs
//! of an exported model (DiT, decoder, optional encoder / text / timbre graphs), the format
//! `docs/bundles.md` documents key by key.
//!
//! - [`manifest`]: reads and validates `bundle.toml` into a typed [`BundleManifest`]:
//!   unknown keys, bad values, geometry the loop cannot take and missing or oversized files
//!   are refused with one [`BundleError`] naming the key or the file. Nothing here touches
//!   ONNX Runtime, so a bundle can be checked on a machine without it.
//! - [`onnx`]: [`onnx::OnnxModel`], the bundle run by ONNX Runtime (the `Model` backend).
//! - [`istft`]: [`istft::Istft`], the host's inverse STFT for a decoder with
//!   `output = "stft"`.
//! - [`parity`]: runs the `[parity]` vectors a bundle carries (`latentctl check-bundle`).
//!
//! Threading: [`load`] is plain blocking file I/O (a few small reads and `stat`s plus the
//! vocabulary): call it at start or on the control / encoder thread, never on the engine or
//! audio thread. A [`BundleManifest`] is immutable plain data (`Send + Sync`).

pub mod istft;
pub mod manifest;
pub mod onnx;
pub mod parity;

pub use manifest::{BundleError, BundleManifest, ParityMismatch, load};
