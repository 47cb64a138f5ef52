//! Tests with real WAV files written by hound into a private temporary directory.

use std::f64::consts::TAU;
use std::path::Path;

use latentd_tests::hostile_files::{mkfifo, write_wav_claiming};

use super::*;

fn write_int(path: &Path, channels: u16, rate: u32, bits: u16, samples: &[i32]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

fn write_float(path: &Path, channels: u16, rate: u32, samples: &[f32]) {
    write_wav_f32(
        path,
        &LoopAudio {
            samples: samples.to_vec(),
            channels: channels as usize,
            sample_rate: rate,
        },
    )
    .unwrap();
}

/// Samples spread over the full range of a `bits`-bit integer, both signs, both extremes.
fn int_ramp(bits: u16, n: usize) -> Vec<i32> {
    let max = (1i64 << (bits - 1)) - 1;
    let min = -(1i64 << (bits - 1));
    (0..n)
        .map(|i| (min + (i as i64 * (max - min)) / (n as i64 - 1)) as i32)
        .collect()
}

fn check_int_depth(bits: u16) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("int.wav");
    let ramp = int_ramp(bits, 2 * 1000);
    write_int(&path, 2, 48_000, bits, &ramp);
    let audio = load_wav(&path, 48_000, 2).unwrap();
    assert_eq!(audio.frames(), 1000);
    assert_eq!(audio.channels, 2);
    assert_eq!(audio.sample_rate, 48_000);
    let scale = (1i64 << (bits - 1)) as f64;
    for (got, &raw) in audio.samples.iter().zip(&ramp) {
        assert_eq!(*got, (raw as f64 / scale) as f32, "{bits}-bit sample {raw}");
    }
    assert_eq!(audio.samples[0], -1.0);
    assert!(*audio.samples.last().unwrap() <= 1.0);
}

#[test]
fn reads_8_16_24_32_bit_integer_wavs_exactly() {
    for bits in [8, 16, 24, 32] {
        check_int_depth(bits);
    }
}

#[test]
fn reads_float_wav_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("float.wav");
    let samples: Vec<f32> = (0..2000).map(|i| ((i as f32) * 0.37).sin() * 0.9).collect();
    write_float(&path, 2, 48_000, &samples);
    let audio = load_wav(&path, 48_000, 2).unwrap();
    assert_eq!(audio.samples, samples);
}

#[test]
fn mono_is_copied_to_both_channels() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mono.wav");
    let mono = int_ramp(16, 500);
    write_int(&path, 1, 48_000, 16, &mono);
    let audio = load_wav(&path, 48_000, 2).unwrap();
    assert_eq!(audio.frames(), 500);
    for (frame, &raw) in audio.samples.chunks_exact(2).zip(&mono) {
        let want = raw as f32 / 32768.0;
        assert_eq!(frame, [want, want]);
    }
}

#[test]
fn six_channels_downmix_by_averaging_even_and_odd_channels() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("six.wav");
    // Channel j carries the constant 0.1 * (j + 1).
    let frame: Vec<f32> = (0..6).map(|j| 0.1 * (j + 1) as f32).collect();
    let samples: Vec<f32> = frame.iter().cycle().take(6 * 100).copied().collect();
    write_float(&path, 6, 48_000, &samples);
    let audio = load_wav(&path, 48_000, 2).unwrap();
    assert_eq!(audio.frames(), 100);
    let left = (0.1 + 0.3 + 0.5) / 3.0;
    let right = (0.2 + 0.4 + 0.6) / 3.0;
    for f in audio.samples.chunks_exact(2) {
        assert!(
            (f[0] - left).abs() < 1e-6 && (f[1] - right).abs() < 1e-6,
            "{f:?}"
        );
    }
}

/// Frequency from positive-going zero crossings, interpolated between samples.
fn measured_hz(signal: &[f32], rate: f64) -> f64 {
    let mut crossings = Vec::new();
    for i in 1..signal.len() {
        let (a, b) = (signal[i - 1] as f64, signal[i] as f64);
        if a < 0.0 && b >= 0.0 {
            crossings.push((i - 1) as f64 + a / (a - b));
        }
    }
    let (first, last) = (crossings[0], *crossings.last().unwrap());
    (crossings.len() - 1) as f64 * rate / (last - first)
}

#[test]
fn resampling_44k1_to_48k_keeps_length_ratio_and_pitch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tone.wav");
    let frames = 44_100 + 22_050 + 7;
    let tone: Vec<f32> = (0..frames)
        .map(|i| (0.5 * (TAU * 1000.0 * i as f64 / 44_100.0).sin()) as f32)
        .collect();
    write_float(&path, 1, 44_100, &tone);
    let audio = load_wav(&path, 48_000, 2).unwrap();
    let want = (frames as f64 * 48_000.0 / 44_100.0).round() as usize;
    assert_eq!(audio.frames(), want);
    assert_eq!(audio.sample_rate, 48_000);
    let left: Vec<f32> = audio.samples.iter().step_by(2).copied().collect();
    let hz = measured_hz(&left[4800..want - 4800], 48_000.0);
    assert!((hz - 1000.0).abs() < 0.1, "measured {hz} Hz");
    let peak = left.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!((peak - 0.5).abs() < 0.01, "peak {peak}");
}

#[test]
fn resampling_treats_the_loop_as_periodic() {
    // A 441 Hz cosine fits 441 whole cycles into one second, so the loop is seamless, but it
    // starts and ends at its peak: padding with silence instead of the loop's other end
    // would leave a 0.5 step at the seam. The resampler may shift the whole loop by a
    // fraction of a sample, but the seam must be no worse than the middle.
    let tone: Vec<f32> = (0..44_100)
        .map(|i| (0.5 * (TAU * 441.0 * i as f64 / 44_100.0).cos()) as f32)
        .collect();
    let audio = LoopAudio {
        samples: tone,
        channels: 1,
        sample_rate: 44_100,
    };
    let out = resample_loop(&audio, 48_000).unwrap();
    assert_eq!(out.frames(), 48_000);
    let err: Vec<f64> = out
        .samples
        .iter()
        .enumerate()
        .map(|(i, &v)| (v as f64 - 0.5 * (TAU * 441.0 * i as f64 / 48_000.0).cos()).abs())
        .collect();
    let worst = |r: std::ops::Range<usize>| err[r].iter().copied().fold(0.0, f64::max);
    let middle = worst(4_000..44_000);
    let seam = worst(0..500).max(worst(47_500..48_000));
    assert!(middle < 0.02, "middle deviates by {middle}");
    assert!(
        seam <= middle * 1.05 + 1e-4,
        "seam {seam} vs middle {middle}"
    );
}

fn err_text(path: &Path) -> String {
    load_wav(path, 48_000, 2).unwrap_err().to_string()
}

#[test]
fn missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.wav");
    let err = load_wav(&path, 48_000, 2).unwrap_err();
    assert!(matches!(err, AudioFileError::Missing { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("{}: no such file", path.display()));
}

#[test]
fn text_file_is_not_a_wav() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.wav");
    std::fs::write(&path, "these are not samples, just some text\n").unwrap();
    let err = load_wav(&path, 48_000, 2).unwrap_err();
    assert!(matches!(err, AudioFileError::NotWav { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{}: not a WAV file", path.display())),
        "{text}"
    );
    assert!(text.contains("RIFF"), "{text}");
}

#[test]
fn directory_is_not_a_wav() {
    let dir = tempfile::tempdir().unwrap();
    let text = err_text(dir.path());
    assert!(
        text.ends_with("is a directory, not a regular file"),
        "{text}"
    );
}

#[test]
fn truncated_header_and_truncated_data_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.wav");
    write_int(&path, 2, 48_000, 16, &int_ramp(16, 2000));
    let bytes = std::fs::read(&path).unwrap();

    let head = dir.path().join("head.wav");
    std::fs::write(&head, &bytes[..20]).unwrap();
    let err = load_wav(&head, 48_000, 2).unwrap_err();
    assert!(matches!(err, AudioFileError::NotWav { .. }), "{err:?}");

    let data = dir.path().join("data.wav");
    std::fs::write(&data, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_wav(&data, 48_000, 2).unwrap_err();
    assert!(matches!(err, AudioFileError::CorruptData { .. }), "{err:?}");
    assert!(err.to_string().starts_with(&data.display().to_string()));
}

#[test]
fn zero_frames_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.wav");
    write_int(&path, 2, 48_000, 16, &[]);
    let err = load_wav(&path, 48_000, 2).unwrap_err();
    assert!(matches!(err, AudioFileError::Empty { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{}: holds zero audio frames", path.display())
    );
    assert!(probe_wav(&path).is_err());
}

#[test]
fn probe_reports_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe.wav");
    write_int(&path, 1, 44_100, 24, &int_ramp(24, 300));
    let info = probe_wav(&path).unwrap();
    assert_eq!(
        info,
        WavInfo {
            channels: 1,
            sample_rate: 44_100,
            frames: 300,
            bits: 24,
            float: false
        }
    );
}

#[test]
fn float_wav_round_trips_through_write_wav_f32() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("round.wav");
    let audio = test_signal(48_000, 2, 0.5);
    write_wav_f32(&path, &audio).unwrap();
    assert_eq!(load_wav(&path, 48_000, 2).unwrap(), audio);
}

#[test]
fn test_signal_is_audible_bounded_and_seamless() {
    let audio = test_signal(48_000, 2, 2.0);
    assert_eq!(audio.frames(), 96_000);
    let peak = audio.samples.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(peak <= 0.5 && peak > 0.2, "peak {peak}");
    let rms = (audio.samples.iter().map(|v| (v * v) as f64).sum::<f64>()
        / audio.samples.len() as f64)
        .sqrt();
    assert!(rms > 0.03, "rms {rms}");
    // Seamless: both ends of the loop sit at (almost) zero, so the wrap cannot click.
    assert!(audio.samples[..2].iter().all(|v| v.abs() < 1e-3));
    assert!(
        audio.samples[audio.samples.len() - 2..]
            .iter()
            .all(|v| v.abs() < 1e-3)
    );
    // The notes differ: the first and second quarter seconds have different pitches.
    let left: Vec<f32> = audio.samples.iter().step_by(2).copied().collect();
    let a = measured_hz(&left[600..11_000], 48_000.0);
    let c = measured_hz(&left[12_600..23_000], 48_000.0);
    assert!(
        (a - 220.0).abs() < 2.0 && (c - 261.63).abs() < 2.0,
        "{a} {c}"
    );
}

fn assert_limit(err: AudioFileError, path: &Path, needle: &str) {
    let text = err.to_string();
    assert!(text.starts_with(&path.display().to_string()), "{text}");
    assert!(text.contains(needle), "{text}");
}

#[test]
fn a_header_claiming_more_than_600_s_is_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    // 601 s of 8-bit mono at 8 kHz: a few MB, sparse.
    let small = dir.path().join("601s.wav");
    write_wav_claiming(&small, 1, 8_000, 8, 601 * 8_000, 0, true);
    assert_limit(probe_wav(&small).unwrap_err(), &small, "up to 600 s");
    assert_limit(
        load_wav(&small, 48_000, 2).unwrap_err(),
        &small,
        "up to 600 s",
    );

    // The report's file: a 2 GB sparse 16-bit stereo 48 kHz WAV (~10417 s). Refused from
    // the header alone, so in well under a second and without allocating its samples.
    let big = dir.path().join("2GB.wav");
    write_wav_claiming(&big, 2, 48_000, 16, 2_000_000_000, 0, true);
    let started = std::time::Instant::now();
    assert_limit(probe_wav(&big).unwrap_err(), &big, "10416.7 s");
    assert_limit(load_wav(&big, 48_000, 2).unwrap_err(), &big, "up to 600 s");
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

#[test]
fn a_truncated_data_chunk_is_refused_by_the_probe() {
    let dir = tempfile::tempdir().unwrap();
    // The header promises 1000 frames; 400 are there.
    let path = dir.path().join("cut.wav");
    write_wav_claiming(&path, 2, 48_000, 16, 4_000, 1_600, false);
    for err in [probe_wav(&path).unwrap_err(), err_of(&path)] {
        assert!(matches!(err, AudioFileError::CorruptData { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.starts_with(&path.display().to_string()), "{text}");
        assert!(text.contains("truncated"), "{text}");
    }
}

fn err_of(path: &Path) -> AudioFileError {
    load_wav(path, 48_000, 2).unwrap_err()
}

#[test]
fn a_1_hz_wav_is_refused_before_resampling() {
    let dir = tempfile::tempdir().unwrap();
    // The report's 52-byte file: 16-bit mono at 1 Hz, 4 frames (4 s).
    let path = dir.path().join("1hz.wav");
    write_wav_claiming(&path, 1, 1, 16, 8, 8, false);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 52);
    assert_limit(
        probe_wav(&path).unwrap_err(),
        &path,
        "1 Hz (accepted: 8000 to 384000 Hz)",
    );
    let started = std::time::Instant::now();
    assert_limit(err_of(&path), &path, "sample rate 1 Hz");
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

#[test]
fn resampling_cost_is_bounded_before_allocating() {
    let long = LoopAudio {
        samples: vec![0.0; 601 * 8_000],
        channels: 1,
        sample_rate: 8_000,
    };
    let err = resample_loop(&long, 16_000).unwrap_err();
    assert!(
        err.contains("601.0 s long (accepted: up to 600 s)"),
        "{err}"
    );
    let one_hz = LoopAudio {
        samples: vec![0.0; 4],
        channels: 1,
        sample_rate: 1,
    };
    let err = resample_loop(&one_hz, 48_000).unwrap_err();
    assert!(err.contains("sample rate 1 Hz"), "{err}");
}

#[test]
fn more_than_8_channels_are_refused_from_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nine.wav");
    write_wav_claiming(&path, 9, 48_000, 16, 9 * 2 * 100, 9 * 2 * 100, false);
    assert_limit(
        probe_wav(&path).unwrap_err(),
        &path,
        "9 channels (accepted: 1 to 8)",
    );
}

/// Run `f` on another thread; panics if it has not returned within 5 s (it blocked).
fn within_5_s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(5))
        .expect("the call blocked for 5 s")
}

#[test]
fn a_fifo_and_dev_zero_are_refused_without_blocking_or_reading() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("loop.wav");
    mkfifo(&fifo);
    for path in [fifo, std::path::PathBuf::from("/dev/zero")] {
        let probed = path.clone();
        let err = within_5_s(move || probe_wav(&probed).unwrap_err());
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let loaded = path.clone();
        let err = within_5_s(move || load_wav(&loaded, 48_000, 2).unwrap_err());
        let text = err.to_string();
        assert!(text.starts_with(&path.display().to_string()), "{text}");
        assert!(text.contains("not a regular file"), "{text}");
    }
}

#[test]
fn a_data_chunk_hidden_behind_a_huge_chunk_is_refused_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.wav");
    // RIFF, a 64 MiB "junk" chunk (sparse), then a valid fmt and data chunk.
    let junk = 64u32 << 20;
    let mut head = Vec::new();
    head.extend_from_slice(b"RIFF");
    head.extend_from_slice(&(4 + 8 + junk + 24 + 8 + 4).to_le_bytes());
    head.extend_from_slice(b"WAVEjunk");
    head.extend_from_slice(&junk.to_le_bytes());
    let mut tail = Vec::new();
    tail.extend_from_slice(b"fmt ");
    tail.extend_from_slice(&16u32.to_le_bytes());
    for v in [1u16, 1] {
        tail.extend_from_slice(&v.to_le_bytes());
    }
    tail.extend_from_slice(&48_000u32.to_le_bytes());
    tail.extend_from_slice(&96_000u32.to_le_bytes());
    for v in [2u16, 16] {
        tail.extend_from_slice(&v.to_le_bytes());
    }
    tail.extend_from_slice(b"data");
    tail.extend_from_slice(&4u32.to_le_bytes());
    tail.extend_from_slice(&[0, 0, 0, 0]);
    std::fs::write(&path, &head).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(head.len() as u64 + u64::from(junk)).unwrap();
    drop(file);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut file, &tail).unwrap();
    drop(file);
    assert_limit(
        probe_wav(&path).unwrap_err(),
        &path,
        "no data chunk in its first 16777216 bytes",
    );
}
