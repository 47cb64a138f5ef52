//! A MIDI controller for the tests: a JACK client with one `midi_out` port whose process
//! callback writes the messages the test queued, each in the next period.
//!
//! Threading: the test thread queues ([`MidiController::send`]); JACK's process thread of
//! this client writes. The queue is a mutex the callback only try-locks (a test client, not
//! latentd's callback).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The controller's client name on the server.
pub const CLIENT: &str = "midi-ctl";

type Queue = Arc<Mutex<Vec<Vec<u8>>>>;

/// A running controller (see the module doc).
pub struct MidiController {
    active: jack::AsyncClient<(), jack::contrib::ClosureProcessHandler<(), Box<ProcessFn>>>,
    queue: Queue,
}

type ProcessFn = dyn FnMut(&jack::Client, &jack::ProcessScope) -> jack::Control + Send;

impl MidiController {
    /// Opens the controller on the session's server and connects its port to `to` (waiting
    /// up to 10 s for that port to appear).
    pub fn connect(to: &str) -> MidiController {
        let controller = MidiController::open();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match controller
                .active
                .as_client()
                .connect_ports_by_name(&format!("{CLIENT}:midi_out"), to)
            {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => panic!("connecting to {to}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        // The graph takes the new link (and reorders the clients: the controller before its
        // reader) within a few cycles; a message written before that could be lost.
        std::thread::sleep(Duration::from_millis(200));
        controller
    }

    /// Opens the controller on the session's server, its port linked to nothing (someone
    /// else links it: latentd restoring a link it remembers).
    pub fn open() -> MidiController {
        let (client, _) = jack::Client::new(CLIENT, jack::ClientOptions::NO_START_SERVER)
            .expect("controller client");
        let mut port = client
            .register_port("midi_out", jack::MidiOut::default())
            .expect("midi_out port");
        let queue: Queue = Arc::default();
        let from_test = Arc::clone(&queue);
        let process: Box<ProcessFn> = Box::new(move |_, scope| {
            let mut writer = port.writer(scope);
            if let Ok(mut queued) = from_test.try_lock() {
                let n = scope.n_frames().max(1);
                for (i, bytes) in queued.drain(..).enumerate() {
                    let time = (i as u32).min(n - 1);
                    // A full port buffer drops the rest: the flood test wants that.
                    let _ = writer.write(&jack::RawMidi {
                        time,
                        bytes: &bytes,
                    });
                }
            }
            jack::Control::Continue
        });
        let active = client
            .activate_async((), jack::contrib::ClosureProcessHandler::new(process))
            .expect("activate the controller");
        MidiController { active, queue }
    }

    /// Queue raw messages for the next period.
    pub fn send_raw(&self, messages: &[&[u8]]) {
        let mut queue = self.queue.lock().unwrap();
        queue.extend(messages.iter().map(|m| m.to_vec()));
    }

    /// A Control Change on `channel` (1 to 16).
    pub fn cc(&self, channel: u8, cc: u8, value: u8) {
        self.send_raw(&[&[0xB0 | (channel - 1), cc, value]]);
    }

    /// A Program Change on `channel` (1 to 16).
    pub fn program(&self, channel: u8, program: u8) {
        self.send_raw(&[&[0xC0 | (channel - 1), program]]);
    }

    /// Closes the client.
    pub fn close(self) {
        let _ = self.active.deactivate();
    }
}
