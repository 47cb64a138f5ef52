//! [`Schema`]: the address table instantiated for one knob list (and optionally one media
//! folder), with the limits decode enforces. Built once at start-up, then shared read-only.
//!
//! Threading: immutable after construction; `Send + Sync`, decode from any control thread.

use std::collections::HashMap;

use crate::knobs::ParamSpec;
use crate::media::MediaRoot;
use crate::table::{ADDRESSES, Route};

/// Size limits decode enforces; each breach is a `/fail` naming the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest packet accepted, in bytes (UDP datagram or one TCP frame).
    pub max_packet_bytes: usize,
    /// Longest address (or address pattern), in bytes.
    pub max_address_bytes: usize,
    /// Longest string argument (tags, paths), in bytes.
    pub max_string_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_packet_bytes: 64 * 1024,
            max_address_bytes: 256,
            max_string_bytes: 2048,
        }
    }
}

/// One concrete address and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The concrete address, e.g. `/knob/denoise` or `/status`.
    pub address: String,
    /// What it does.
    pub route: Route,
    /// For `/knob/<name>`: index into [`Schema::knobs`].
    pub knob: Option<usize>,
}

/// The OSC address space for one knob list.
#[derive(Debug, Clone)]
pub struct Schema {
    knobs: Vec<ParamSpec>,
    endpoints: Vec<Endpoint>,
    by_address: HashMap<String, usize>,
    media: Option<MediaRoot>,
    limits: Limits,
}

impl Schema {
    /// Build the address space for `knobs`; fails on a bad knob table (empty or duplicate
    /// name, name outside `[a-z0-9_]`, `min > max`, default outside the range, non-finite
    /// bounds, non-integral bounds on an integer knob).
    pub fn new(knobs: &[ParamSpec]) -> Result<Schema, String> {
        let mut endpoints = Vec::new();
        for (index, knob) in knobs.iter().enumerate() {
            check_knob(knob)?;
            if knobs[..index].iter().any(|k| k.name == knob.name) {
                return Err(format!("knob {:?} appears twice", knob.name));
            }
            endpoints.push(Endpoint {
                address: format!("/knob/{}", knob.name),
                route: Route::Knob,
                knob: Some(index),
            });
        }
        for spec in ADDRESSES.iter().filter(|s| s.route != Route::Knob) {
            endpoints.push(Endpoint {
                address: spec.address.to_string(),
                route: spec.route,
                knob: None,
            });
        }
        let by_address = endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| (e.address.clone(), i))
            .collect();
        Ok(Schema {
            knobs: knobs.to_vec(),
            endpoints,
            by_address,
            media: None,
            limits: Limits::default(),
        })
    }

    /// Resolve `/timbre`, `/structure` and `/source` paths inside `root`; without one those
    /// addresses fail with "no media folder is configured".
    pub fn with_media_root(mut self, root: MediaRoot) -> Schema {
        self.media = Some(root);
        self
    }

    /// Replace the default [`Limits`].
    pub fn with_limits(mut self, limits: Limits) -> Schema {
        self.limits = limits;
        self
    }

    /// The knobs, in table order (the index used by [`crate::Command::SetKnob`]).
    pub fn knobs(&self) -> &[ParamSpec] {
        &self.knobs
    }

    /// A knob's index by name.
    pub fn knob_index(&self, name: &str) -> Option<usize> {
        self.knobs.iter().position(|k| k.name == name)
    }

    /// Every concrete address (knobs first, then the fixed addresses).
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The endpoint for a concrete address.
    pub fn endpoint(&self, address: &str) -> Option<&Endpoint> {
        self.by_address.get(address).map(|&i| &self.endpoints[i])
    }

    /// The media folder, when configured.
    pub fn media_root(&self) -> Option<&MediaRoot> {
        self.media.as_ref()
    }

    /// The limits decode enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }
}

fn check_knob(k: &ParamSpec) -> Result<(), String> {
    let name_ok = !k.name.is_empty()
        && k.name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !name_ok {
        return Err(format!(
            "knob name {:?} must be non-empty and use only a-z, 0-9, _",
            k.name
        ));
    }
    if !(k.min.is_finite() && k.max.is_finite() && k.default.is_finite()) {
        return Err(format!(
            "knob {}: min, max and default must be finite",
            k.name
        ));
    }
    if k.min > k.max || k.default < k.min || k.default > k.max {
        return Err(format!(
            "knob {}: needs min <= default <= max, got {} <= {} <= {}",
            k.name, k.min, k.default, k.max
        ));
    }
    if k.integer && (k.min.fract() != 0.0 || k.max.fract() != 0.0 || k.default.fract() != 0.0) {
        return Err(format!(
            "knob {}: integer knob with non-integral min, max or default",
            k.name
        ));
    }
    Ok(())
}
