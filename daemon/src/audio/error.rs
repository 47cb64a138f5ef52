//! [`AudioError`]: why an output could not be opened, started, linked, run or stopped.
//!
//! One variant per failure that a caller or a user can act on (start a server, pick another
//! client name, run the server at the loop's rate, build with the backend's feature), each
//! with the facts as fields, and one documented catch-all, [`AudioError::Other`], for what
//! cannot be classified. Callers decide by variant, never by the text: the supervisor logs
//! what waiting cannot cure as an error ([`AudioError::retry_may_help`]), the service maps
//! a failure at start to exit status 2 ([`crate::service::ServiceError`]).
//!
//! `Display` is one line, `<backend>: <what happened>`; the texts are those latentd always
//! logged (docs/operations.md quotes the rate mismatch).
//!
//! Threading: plain data, made and read on the main and supervising threads; never in the
//! realtime callback.

use std::fmt;

/// Why an output could not be opened, started, linked, run or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// No server of this kind answered (none running, another user's, its library not
    /// installed): start one, or choose another backend.
    #[error("{backend}: no server reachable: {detail}")]
    ServerUnreachable {
        /// Backend name (`jack`, `pipewire`).
        backend: &'static str,
        /// What the server or its library said.
        detail: String,
    },
    /// This build of latentd was made without the backend's cargo feature: choose another
    /// backend, or build with it.
    #[error("{0}: this build of latentd was made without it")]
    BackendUnavailable(&'static str),
    /// The server runs at another rate than the output plays the loop at (a server that
    /// came back at another rate; the rate is fixed once the loop plays): run the server at
    /// `wanted` Hz.
    #[error("{backend}: unsupported: {}", RateText { server: *server, wanted: *wanted, ring: *ring })]
    RateMismatch {
        /// Backend name.
        backend: &'static str,
        /// The server's rate.
        server: u32,
        /// The rate the output plays at (the ring's, or the one the callback converts to).
        wanted: u32,
        /// The ring's (the engine's) rate; differs from `wanted` when the callback converts.
        ring: u32,
    },
    /// Another client of the server already has the exact name latentd asks for: stop it,
    /// or choose another `client_name`.
    #[error("{backend}: client name {name:?} already taken on this server ({detail})")]
    ClientNameTaken {
        /// Backend name.
        backend: &'static str,
        /// The name asked for.
        name: String,
        /// What the server said.
        detail: String,
    },
    /// The server refused the client for another reason (its client limit, a version
    /// mismatch).
    #[error("{backend}: the server refused client {name:?} ({detail})")]
    ClientRefused {
        /// Backend name.
        backend: &'static str,
        /// The name asked for.
        name: String,
        /// What the server said.
        detail: String,
    },
    /// One of latentd's ports could not be registered (the server's port limit, a name
    /// clash).
    #[error("{backend}: registering port {port}: {detail}")]
    PortRegistration {
        /// Backend name.
        backend: &'static str,
        /// The port's short name (`out_1`, `midi_in`, `in_1`, ...).
        port: String,
        /// What the server said.
        detail: String,
    },
    /// The server would not start the client's processing (JACK activation, PipeWire's
    /// stream connect).
    #[error("{backend}: activating the client: {detail}")]
    Activation {
        /// Backend name.
        backend: &'static str,
        /// What the server said.
        detail: String,
    },
    /// Linking one of latentd's ports with a port of the server's graph failed.
    #[error("{backend}: connecting {port} to {peer}: {detail}")]
    Link {
        /// Backend name.
        backend: &'static str,
        /// Our port's full name.
        port: String,
        /// The other port's full name.
        peer: String,
        /// What the server said.
        detail: String,
    },
    /// A request the output cannot follow, which waiting does not change: a zero rate or
    /// period, too many input ports, a channel it does not have, a name it cannot take, a
    /// period the ring's guard cannot cover, a rate conversion it cannot build.
    #[error("{backend}: unsupported: {what}")]
    Unsupported {
        /// Backend name (`convert` for the callback's rate converter).
        backend: &'static str,
        /// What is unsupported.
        what: String,
    },
    /// The catch-all: a failure no caller can act on beyond reporting it (a thread that
    /// could not start or panicked, a server call that failed unexpectedly, a server gone
    /// mid-request). Its text is for people; nothing matches on it.
    #[error("{backend}: {detail}")]
    Other {
        /// Backend name.
        backend: &'static str,
        /// What failed.
        detail: String,
    },
}

impl AudioError {
    /// The backend the failure is about (`convert` for the rate converter).
    pub fn backend(&self) -> &'static str {
        match self {
            Self::BackendUnavailable(backend) => backend,
            Self::ServerUnreachable { backend, .. }
            | Self::RateMismatch { backend, .. }
            | Self::ClientNameTaken { backend, .. }
            | Self::ClientRefused { backend, .. }
            | Self::PortRegistration { backend, .. }
            | Self::Activation { backend, .. }
            | Self::Link { backend, .. }
            | Self::Unsupported { backend, .. }
            | Self::Other { backend, .. } => backend,
        }
    }

    /// Whether trying again later may succeed without anyone changing the configuration or
    /// the server's rate: false for a missing feature, a rate mismatch and an unsupported
    /// request (the supervisor logs those as errors, the rest as warnings).
    pub fn retry_may_help(&self) -> bool {
        !matches!(
            self,
            Self::BackendUnavailable(_) | Self::RateMismatch { .. } | Self::Unsupported { .. }
        )
    }
}

/// The text of [`AudioError::RateMismatch`], which says what a server must run at.
struct RateText {
    server: u32,
    wanted: u32,
    ring: u32,
}

impl fmt::Display for RateText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            server,
            wanted,
            ring,
        } = *self;
        if wanted == ring {
            write!(
                f,
                "the server runs at {server} Hz but the loop is at {ring} Hz; waiting for a \
                 server at {ring} Hz"
            )
        } else {
            write!(
                f,
                "the server runs at {server} Hz but the {ring} Hz loop is converted to \
                 {wanted} Hz (a rate change while running is not followed); waiting for a \
                 server at {wanted} Hz"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_mismatch_says_what_rate_to_run_the_server_at() {
        let plain = AudioError::RateMismatch {
            backend: "jack",
            server: 44_100,
            wanted: 48_000,
            ring: 48_000,
        };
        assert_eq!(
            plain.to_string(),
            "jack: unsupported: the server runs at 44100 Hz but the loop is at 48000 Hz; \
             waiting for a server at 48000 Hz"
        );
        let converted = AudioError::RateMismatch {
            backend: "jack",
            server: 48_000,
            wanted: 44_100,
            ring: 48_000,
        };
        // docs/operations.md quotes this line.
        assert!(
            converted.to_string().contains(
                "the server runs at 48000 Hz but the 48000 Hz loop is converted to 44100 Hz"
            ),
            "{converted}"
        );
        assert!(!plain.retry_may_help() && !converted.retry_may_help());
    }

    #[test]
    fn every_variant_is_one_line_naming_its_backend() {
        let detail = || "why".to_owned();
        let all = [
            AudioError::ServerUnreachable {
                backend: "jack",
                detail: detail(),
            },
            AudioError::BackendUnavailable("pipewire"),
            AudioError::RateMismatch {
                backend: "null",
                server: 1,
                wanted: 2,
                ring: 2,
            },
            AudioError::ClientNameTaken {
                backend: "jack",
                name: "latentd".into(),
                detail: detail(),
            },
            AudioError::ClientRefused {
                backend: "jack",
                name: "latentd".into(),
                detail: detail(),
            },
            AudioError::PortRegistration {
                backend: "jack",
                port: "out_1".into(),
                detail: detail(),
            },
            AudioError::Activation {
                backend: "pipewire",
                detail: detail(),
            },
            AudioError::Link {
                backend: "jack",
                port: "latentd:out_1".into(),
                peer: "system:playback_1".into(),
                detail: detail(),
            },
            AudioError::Unsupported {
                backend: "convert",
                what: "0 Hz".into(),
            },
            AudioError::Other {
                backend: "null",
                detail: detail(),
            },
        ];
        for e in &all {
            let text = e.to_string();
            assert!(text.starts_with(&format!("{}: ", e.backend())), "{text}");
            assert!(!text.contains('\n'), "{text}");
        }
        assert_eq!(
            all[0].to_string(),
            "jack: no server reachable: why",
            "the start failure users see most"
        );
        assert_eq!(
            all[1].to_string(),
            "pipewire: this build of latentd was made without it"
        );
        let waits: Vec<bool> = all.iter().map(AudioError::retry_may_help).collect();
        assert_eq!(
            waits,
            [
                true, false, false, true, true, true, true, true, false, true
            ]
        );
    }
}
