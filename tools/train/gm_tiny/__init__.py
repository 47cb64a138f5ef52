"""gm-tiny: latentd's own small latent-diffusion music model (training side, PyTorch).

Modules:
- `geometry`: the one place the audio/latent/STFT geometry is declared.
- `autoencoder`: audio 48 kHz stereo <-> 64 latent channels at 25 fps; the decoder predicts
  a complex STFT that latentd inverts in Rust (`[decoder] output = "stft"`).
- `dit`: the flow-matching denoiser with ACE-Step v1.5's tensor interface.
- `data`: loading the rendered dataset (tools/train/make_dataset.py) for training.
- `losses`: multi-resolution spectral losses and the log-mel metric.

PyTorch is a training-time dependency only; the daemon never loads it.
"""
