"""The geometry gm-tiny is trained at, declared once.

It is ACE-Step v1.5's latent geometry (48 kHz stereo, 64 channels at 25 fps) plus the STFT the
decoder predicts (n_fft 1920, hop 480: four STFT frames per latent frame). The exported
`bundle.toml` is written from these constants.
"""

SAMPLE_RATE = 48_000
AUDIO_CHANNELS = 2
LATENT_CHANNELS = 64
LATENT_FPS = 25
SAMPLES_PER_LATENT = SAMPLE_RATE // LATENT_FPS  # 1920

# The decoder's STFT (what latentd's inverse STFT undoes).
N_FFT = 1920
HOP = 480
BINS = N_FFT // 2 + 1  # 961
FRAMES_PER_LATENT = SAMPLES_PER_LATENT // HOP  # 4

# The encoder's analysis STFT (its own, cheaper: it runs only when a source is loaded).
ENC_N_FFT = 960
ENC_HOP = 480
ENC_BINS = ENC_N_FFT // 2 + 1  # 481
# The encoder's optional fine view (`Encoder(hires_bins=...)`): 12.5 Hz bins, same frame centres.
ENC_HIRES_N_FFT = 3840

assert SAMPLES_PER_LATENT % HOP == 0 and N_FFT >= 2 * HOP

# The latent lengths the DiT is trained on (2 to 8 s); the longest is the bundle's
# `[dit] chunk_frames` (smoke.CHUNK_FRAMES): latentd generates longer loops in chunks of it.
DIT_CROP_FRAMES = (50, 100, 150, 200)
