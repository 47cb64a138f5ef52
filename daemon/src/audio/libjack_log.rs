//! Where libjack's own messages go: into `log` under the target `libjack`, at their level
//! (error, info), except those printed while this thread is opening a client
//! ([`opening`]), which go at debug level. A failed open already returns a precise
//! [`AudioError`](super::AudioError); without this, every probe of an absent server (`auto`
//! selection, each retry of a lost output, once a second) would add five libjack errors
//! to the journal.
//!
//! Threading: libjack calls the handlers on whichever thread prints: the opening thread
//! (synchronously, inside `jack_client_open`) or its own notification and process threads.
//! "Opening" is a thread-local flag, so only the opening thread's messages are demoted.
//! The handlers catch any panic; they never run inside our realtime callback.

use std::cell::Cell;
use std::ffi::{CStr, c_char};
use std::sync::Once;

thread_local! {
    /// True while this thread is inside [`opening`].
    static OPENING: Cell<bool> = const { Cell::new(false) };
}

/// Run `open` (which opens a JACK client) with libjack's messages on this thread demoted
/// to debug level. Installs the handlers on first use.
pub(crate) fn opening<T>(open: impl FnOnce() -> T) -> T {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        ::jack::set_logger(::jack::LoggerType::Custom {
            info: libjack_info,
            error: libjack_error,
        })
    });
    /// Clears the flag even if `open` unwinds.
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            OPENING.with(|o| o.set(false));
        }
    }
    OPENING.with(|o| o.set(true));
    let _reset = Reset;
    open()
}

unsafe extern "C" fn libjack_error(message: *const c_char) {
    // SAFETY: libjack passes a NUL-terminated string valid for the call (or null).
    unsafe { forward(message, log::Level::Error) }
}

unsafe extern "C" fn libjack_info(message: *const c_char) {
    // SAFETY: as above.
    unsafe { forward(message, log::Level::Info) }
}

/// # Safety
/// `message` is null or a NUL-terminated string valid for the call.
unsafe fn forward(message: *const c_char, level: log::Level) {
    if message.is_null() {
        return;
    }
    // SAFETY: see the function's contract.
    let text = unsafe { CStr::from_ptr(message) };
    let _ = std::panic::catch_unwind(|| {
        // `try_with`: libjack may print from a thread whose locals are being torn down.
        let level = match OPENING.try_with(Cell::get) {
            Ok(true) => log::Level::Debug,
            _ => level,
        };
        log::log!(target: "libjack", level, "{}", text.to_string_lossy());
    });
}
