"""Writes the torch.istft parity fixtures the istft unit tests read (run once; committed).

Each `torch_<n_fft>_<hop>_<channels>x<frames>.f32` holds, little-endian f32: the STFT
`[A, N, n_fft/2+1, 2]` (the STFT of random audio plus noise, so that it is not a consistent
spectrogram), then `torch.istft(..., center=True, length=N*hop)` of it, `[A, N*hop]`.
"""
import numpy as np
import torch

for n_fft, hop, a, n in [(16, 4, 2, 6), (1920, 480, 2, 4)]:
    g = torch.Generator().manual_seed(n_fft)
    x = torch.randn(a, n * hop, generator=g, dtype=torch.float64)
    w = torch.hann_window(n_fft, dtype=torch.float64)
    spec = torch.stft(x, n_fft, hop, window=w, center=True, normalized=False,
                      onesided=True, return_complex=True)[..., :n]  # frames 0..N-1
    spec = spec + 0.1 * torch.complex(torch.randn(spec.shape, generator=g, dtype=torch.float64),
                                      torch.randn(spec.shape, generator=g, dtype=torch.float64))
    spec = spec.to(torch.complex64)
    y = torch.istft(spec, n_fft, hop, window=torch.hann_window(n_fft), center=True,
                    length=n * hop)
    # [A, F, N] complex -> [A, N, F, 2]
    layout = torch.view_as_real(spec.permute(0, 2, 1)).contiguous()
    data = np.concatenate([layout.numpy().ravel(), y.numpy().ravel()]).astype("<f4")
    data.tofile(f"torch_{n_fft}_{hop}_{a}x{n}.f32")
