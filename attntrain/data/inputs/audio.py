"""Audio input: WAV reading (with band-limited resampling) and per-frame features (raw, log-mel, MFCC).

# N samples, T frames, W window samples, F spectrum bins, M mel bands, C cepstral coefficients
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import soundfile
import torch
import torch.nn.functional as F

from attntrain.errors import UserError

FEATURES = ("raw", "logmel", "mfcc")
LOG_FLOOR = 1e-6  # keeps log() finite on digital silence
FSDD_NAME = re.compile(r"(\d)_([^_]+)_(\d+)\.wav")


def read_wav(path: str | Path, sample_rate: int) -> torch.Tensor:
    """Read an audio file as float32 mono (N,) in [-1, 1] at `sample_rate`; channels are averaged."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not an audio file")
    try:
        samples, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (N, channels)
    except (soundfile.SoundFileError, RuntimeError, OSError) as e:
        reason = getattr(e, "error_string", None) or str(e)
        raise UserError(f"{path}: not a readable audio file ({reason})") from None
    if samples.shape[0] == 0:
        raise UserError(f"{path}: empty audio file (0 samples)")
    check_wav_complete(path)
    wave = torch.from_numpy(samples).mean(dim=1)  # (N,)
    check_finite(wave, str(path), file_rate)
    if file_rate != sample_rate:
        wave = resample(wave, file_rate, sample_rate)
    # Float files may exceed full scale and resampling can overshoot (Gibbs); keep the promised range.
    return wave.clamp(-1.0, 1.0).to(torch.float32)


def check_finite(wave: torch.Tensor, where: str, sample_rate: int) -> None:
    """NaN or infinite samples (a float file written from a diverged computation) are an error naming the file:
    they would make every feature of the example NaN, which training would blame on the learning rate."""
    bad = ~torch.isfinite(wave)
    if bad.any():
        first = int(bad.nonzero()[0])
        raise UserError(f"{where}: {int(bad.sum())} of its {wave.shape[0]} samples are NaN or infinite (the first at "
                        f"sample {first}, {first / sample_rate:.3f} s); the audio must hold finite numbers")


def check_wav_complete(path: Path) -> None:
    """A WAV whose RIFF header announces more bytes than the file holds was cut short (a partial copy or
    download); libsndfile would silently read only what is there."""
    with open(path, "rb") as f:
        header = f.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        return
    declared = int.from_bytes(header[4:8], "little") + 8
    actual = path.stat().st_size
    if declared not in (8, 0xFFFFFFFF + 8) and actual < declared:  # 0 / 0xFFFFFFFF: written as a stream
        raise UserError(f"{path}: truncated WAV file ({actual} of the {declared} bytes its header announces); "
                        "copy or download it again")


def resample(wave: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Band-limited resampling of (N,) to round(N * new_rate / orig_rate) samples, as scipy.signal.resample.

    The spectrum is truncated (or zero-padded) to the new length, so nothing above the lower Nyquist
    frequency survives. The signal is treated as periodic: the two ends may ring slightly.
    """
    if orig_rate == new_rate:
        return wave
    n = wave.shape[0]
    m = max(1, round(n * new_rate / orig_rate))
    spectrum = torch.fft.rfft(wave.double())  # (N//2+1,)
    shared = min(n, m)
    out = spectrum.new_zeros(m // 2 + 1)  # (M//2+1,)
    out[: shared // 2 + 1] = spectrum[: shared // 2 + 1]
    if shared % 2 == 0:
        # The bin at shared/2 is a Nyquist bin of the shorter signal only: the irfft counts it once,
        # the longer signal's spectrum holds it twice (bin and its mirror).
        out[shared // 2] *= 2.0 if m < n else 0.5
    return (torch.fft.irfft(out, n=m) * (m / n)).to(wave.dtype)  # (M,)


def _samples(sample_rate: int, ms: float) -> int:
    return int(round(sample_rate * ms / 1000))


def frame_count(num_samples: int, sample_rate: int, window_ms: float, hop_ms: float) -> int:
    """Frames covering the signal with the last partial frame zero-padded; at least 1."""
    window, hop = _samples(sample_rate, window_ms), _samples(sample_rate, hop_ms)
    return 1 + -(-max(num_samples - window, 0) // hop)


def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """HTK mel scale."""
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int) -> torch.Tensor:
    """Triangular filters (F, M), F = n_fft//2+1, peak 1, centres evenly spaced in HTK mel over 0..sr/2."""
    bin_hz = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)  # (F,)
    edges_hz = mel_to_hz(torch.linspace(0, hz_to_mel(torch.tensor(sample_rate / 2.0)).item(), n_mels + 2,
                                        dtype=torch.float64))  # (M+2,)
    lower, centre, upper = edges_hz[:-2], edges_hz[1:-1], edges_hz[2:]  # (M,) each
    rising = (bin_hz[:, None] - lower) / (centre - lower)  # (F, M)
    falling = (upper - bin_hz[:, None]) / (upper - centre)  # (F, M)
    return torch.minimum(rising, falling).clamp(min=0).to(torch.float32)


def dct_matrix(size: int) -> torch.Tensor:
    """Orthonormal DCT-II as a (size, size) matrix D, applied as x @ D (row vectors x)."""
    n = torch.arange(size, dtype=torch.float64)
    basis = torch.cos(math.pi / size * (n[:, None] + 0.5) * n[None, :])  # (n, k)
    scale = torch.full((size,), math.sqrt(2.0 / size), dtype=torch.float64)
    scale[0] = math.sqrt(1.0 / size)
    return (basis * scale).to(torch.float32)


class FrameFeatures:
    """Per-frame features of a mono wave: (N,) -> (T, dim) float32, T = frame_count(N, ...).

    raw: the W window samples; logmel: log(Hann power spectrum @ mel filterbank + 1e-6), dim M;
    mfcc: orthonormal DCT-II of the log-mel, first C coefficients.
    """

    def __init__(self, kind: str, *, sample_rate: int, window_ms: float = 25.0, hop_ms: float = 10.0,
                 n_mels: int = 40, n_mfcc: int = 13):
        if kind not in FEATURES:
            raise UserError(f"data.audio.features: unknown feature kind '{kind}' (valid: {', '.join(FEATURES)})")
        self.kind, self.sample_rate = kind, sample_rate
        self.window_ms, self.hop_ms = window_ms, hop_ms
        self.window, self.hop = _samples(sample_rate, window_ms), _samples(sample_rate, hop_ms)
        if self.window < 1 or self.hop < 1:
            raise UserError(f"data.audio.window_ms={window_ms}, data.audio.hop_ms={hop_ms}: each must span at "
                            f"least one sample at {sample_rate} Hz")
        if kind != "raw" and n_mels < 1:
            raise UserError(f"data.audio.n_mels={n_mels}: must be at least 1")
        if kind == "mfcc" and not 1 <= n_mfcc <= n_mels:
            raise UserError(f"data.audio.n_mfcc={n_mfcc}: must be between 1 and n_mels={n_mels}")
        self.n_fft = 1 << (self.window - 1).bit_length()  # next power of two >= window
        if kind != "raw":
            self.hann = torch.hann_window(self.window, periodic=True)  # (W,)
            self.filterbank = mel_filterbank(n_mels, self.n_fft, sample_rate)  # (F, M)
        if kind == "mfcc":
            self.dct = dct_matrix(n_mels)[:, :n_mfcc]  # (M, C)
        self.dim = {"raw": self.window, "logmel": n_mels, "mfcc": n_mfcc}[kind]

    def frames(self, wave: torch.Tensor) -> torch.Tensor:
        """(N,) -> (T, W) overlapping windows, the end zero-padded to a whole frame."""
        count = frame_count(wave.shape[0], self.sample_rate, self.window_ms, self.hop_ms)
        needed = self.window + (count - 1) * self.hop
        padded = F.pad(wave, (0, needed - wave.shape[0]))  # (needed,)
        return padded.unfold(0, self.window, self.hop)  # (T, W)

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() != 1:
            raise ValueError(f"expected a mono wave of shape (N,), got {tuple(wave.shape)}")
        frames = self.frames(wave.to(torch.float32))  # (T, W)
        if self.kind == "raw":
            return frames.contiguous()
        spectrum = torch.fft.rfft(frames * self.hann.to(wave.device), n=self.n_fft)  # (T, F)
        power = spectrum.real ** 2 + spectrum.imag ** 2  # (T, F)
        logmel = torch.log(power @ self.filterbank.to(wave.device) + LOG_FLOOR)  # (T, M)
        if self.kind == "logmel":
            return logmel
        return logmel @ self.dct.to(wave.device)  # (T, C)


def parse_fsdd_name(path: str | Path) -> tuple[int, str, int]:
    """(digit, speaker, index) from an FSDD file name such as 7_jackson_32.wav."""
    match = FSDD_NAME.fullmatch(Path(path).name)
    if match is None:
        raise UserError(f"{path}: file name does not match the FSDD pattern {{digit}}_{{speaker}}_{{index}}.wav "
                        "(e.g. 7_jackson_32.wav)")
    digit, speaker, index = match.groups()
    return int(digit), speaker, int(index)
