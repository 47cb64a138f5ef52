//! Files a careless or hostile user hands the daemon: a FIFO, a WAV whose header claims more
//! than the file holds (optionally a sparse file that really is that long), for the file-limit
//! tests of the engine and the daemon.
//!
//! Threading: plain functions, called from the test's thread.

use std::path::Path;

/// Make a FIFO at `path`.
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// A canonical PCM WAV header claiming `data_bytes` of samples, then `written` bytes of
/// silence; extended (sparse) to the claimed length when `sparse`.
pub fn write_wav_claiming(
    path: &Path,
    channels: u16,
    rate: u32,
    bits: u16,
    data_bytes: u32,
    written: usize,
    sparse: bool,
) {
    let block = channels * bits.div_ceil(8);
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&36u32.wrapping_add(data_bytes).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    b.extend_from_slice(&block.to_le_bytes());
    b.extend_from_slice(&bits.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_bytes.to_le_bytes());
    b.resize(44 + written, 0);
    std::fs::write(path, &b).unwrap();
    if sparse {
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.set_len(44 + u64::from(data_bytes)).unwrap();
    }
}
