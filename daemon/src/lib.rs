//! `latentd` as a library: the daemon's parts (audio outputs, and later config, OSC
//! transport, systemd glue) so integration tests can drive them in-process.

pub mod audio;
pub mod osc;
