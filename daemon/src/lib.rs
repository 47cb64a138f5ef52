//! `latentd` as a library: the daemon's parts (audio outputs, the record tap, the command
//! line and config file, and later OSC transport and systemd glue) so integration tests can
//! drive them in-process.

pub mod atomic_file;
pub mod audio;
pub mod capture;
pub mod cli;
pub mod config;
pub mod control;
pub mod discovery;
pub mod engine_select;
pub mod health;
pub mod knobs;
pub mod load;
pub mod logging;
pub mod metrics;
pub mod midi;
pub mod nsm;
pub mod osc;
pub mod preflight;
pub mod presets;
pub mod record;
pub mod reload;
pub mod schedule;
pub mod service;
pub mod settings;
pub mod signals;
pub mod state;
pub mod stoppable;
pub mod systemd;
pub mod unique_file;

/// The lib's unit tests run the realtime path under `assert_no_alloc`, as the binary does.
#[cfg(all(test, debug_assertions))]
#[global_allocator]
static TEST_ALLOCATOR: assert_no_alloc::AllocDisabler = assert_no_alloc::AllocDisabler;
