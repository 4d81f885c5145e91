"""Audio reading, resampling and frame features: real FSDD files, synthetic tones, user errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile
import torch

from attntrain.data.inputs import audio
from attntrain.errors import UserError
from tests.conftest import shared_data

RATE = 8000
NAMES = ("7_jackson_32.wav", "0_george_0.wav", "9_yweweler_49.wav")


def fsdd(name: str):
    return shared_data() / "fsdd" / "recordings" / name


def tone(hz: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * math.pi * hz * t)).astype(np.float32)


def peak_hz(wave: torch.Tensor, rate: int) -> float:
    return torch.fft.rfft(wave.double()).abs().argmax().item() * rate / wave.shape[0]


# frame_count

@pytest.mark.parametrize("samples, expected", [
    (8000, 99),    # 1 s: 1 + ceil(7800 / 80)
    (150, 1),      # shorter than one 200-sample window
    (0, 1),
    (200, 1),      # exactly one window
    (280, 2),      # window + one hop
    (200 + 80 * 10, 11),
    (281, 3),      # one sample past a whole frame starts a padded one
])
def test_frame_count_at_8khz_25ms_10ms(samples, expected):
    assert audio.frame_count(samples, RATE, 25.0, 10.0) == expected


def test_frame_count_rounds_window_and_hop_to_samples():
    assert audio.frame_count(16000, 16000, 25.0, 10.0) == 1 + math.ceil((16000 - 400) / 160)
    assert audio.frame_count(1000, 22050, 25.0, 10.0) == 1 + math.ceil((1000 - 551) / 220)


@pytest.mark.parametrize("kind", audio.FEATURES)
@pytest.mark.parametrize("samples", [1, 199, 200, 201, 280, 281, 1234, 8000])
def test_feature_length_matches_frame_count_on_synthetic_lengths(kind, samples):
    features = audio.FrameFeatures(kind, sample_rate=RATE)
    out = features(torch.randn(samples) * 0.1)
    assert out.shape == (audio.frame_count(samples, RATE, 25.0, 10.0), features.dim)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


# reading

@pytest.mark.parametrize("name", NAMES)
def test_real_fsdd_file_reads_as_8khz_float_with_all_samples(name):
    info = soundfile.info(str(fsdd(name)))
    assert info.samplerate == RATE and info.channels == 1
    wave = audio.read_wav(fsdd(name), RATE)
    assert wave.shape == (info.frames,)
    assert wave.dtype == torch.float32
    assert wave.abs().max() <= 1.0 and wave.abs().max() > 0.01
    pcm, _ = soundfile.read(str(fsdd(name)), dtype="int16")
    torch.testing.assert_close(wave, torch.from_numpy(pcm.astype(np.float32) / 32768))


@pytest.mark.parametrize("kind, dim", [("raw", 200), ("logmel", 40), ("mfcc", 13)])
def test_features_of_a_real_file_have_frame_count_rows(kind, dim):
    wave = audio.read_wav(fsdd(NAMES[0]), RATE)
    out = audio.FrameFeatures(kind, sample_rate=RATE)(wave)
    assert out.shape == (audio.frame_count(wave.shape[0], RATE, 25.0, 10.0), dim)
    assert torch.isfinite(out).all()


def test_stereo_is_averaged(tmp_path):
    left, right = tone(440, 0.1, RATE, 0.4), tone(440, 0.1, RATE, 0.2)
    path = tmp_path / "stereo.wav"
    soundfile.write(str(path), np.stack([left, right], axis=1), RATE, subtype="FLOAT")
    wave = audio.read_wav(path, RATE)
    torch.testing.assert_close(wave, torch.from_numpy((left + right) / 2))


# resampling

def test_16khz_tone_resampled_to_8khz_keeps_its_frequency(tmp_path):
    path = tmp_path / "tone16k.wav"
    soundfile.write(str(path), tone(440, 1.0, 16000), 16000)
    wave = audio.read_wav(path, RATE)
    assert wave.shape == (8000,)
    assert peak_hz(wave, RATE) == pytest.approx(440, abs=1)
    # Same amplitude away from the (periodic-extension) edges.
    torch.testing.assert_close(wave[100:-100], torch.from_numpy(tone(440, 1.0, RATE))[100:-100], atol=2e-3, rtol=0)


def test_resampling_removes_content_above_the_new_nyquist(tmp_path):
    path = tmp_path / "mix16k.wav"
    soundfile.write(str(path), tone(500, 1.0, 16000, 0.3) + tone(5000, 1.0, 16000, 0.3), 16000)
    wave = audio.read_wav(path, RATE)
    spectrum = torch.fft.rfft(wave.double()).abs()  # 1 Hz bins
    assert spectrum.argmax().item() == 500
    assert spectrum[3000] < 1e-3 * spectrum[500]  # 5000 Hz would alias to 3000 Hz


def test_non_integer_ratio_gives_rounded_length_and_same_frequency(tmp_path):
    path = tmp_path / "tone22k.wav"
    soundfile.write(str(path), tone(1000, 0.5, 22050), 22050)
    wave = audio.read_wav(path, RATE)
    assert wave.shape == (round(11025 * RATE / 22050),)
    assert peak_hz(wave, RATE) == pytest.approx(1000, abs=2)
    assert wave.abs().max() <= 1.0


def test_upsampling_keeps_frequency_and_amplitude():
    wave = torch.from_numpy(tone(300, 0.5, 4000))
    up = audio.resample(wave, 4000, RATE)
    assert up.shape == (4000,)
    torch.testing.assert_close(up, torch.from_numpy(tone(300, 0.5, RATE)), atol=1e-4, rtol=0)


# features

def test_raw_frames_are_the_wave_slices_with_zero_padded_tail():
    wave = torch.randn(1234)
    features = audio.FrameFeatures("raw", sample_rate=RATE)
    frames = features(wave)
    count = frames.shape[0]
    padded = torch.cat([wave, torch.zeros(200 + (count - 1) * 80 - 1234)])
    index = torch.arange(count)[:, None] * 80 + torch.arange(200)[None, :]  # (T, W)
    assert torch.equal(frames, padded[index])
    assert features.dim == 200


def test_logmel_of_a_1khz_tone_peaks_in_the_band_containing_1khz():
    features = audio.FrameFeatures("logmel", sample_rate=RATE, n_mels=40)
    logmel = features(torch.from_numpy(tone(1000, 0.5, RATE)))  # (T, 40)
    # HTK band centres, computed here independently of the module.
    top = 2595 * math.log10(1 + 4000 / 700)
    centres = [700 * (10 ** (top * (i + 1) / 41 / 2595) - 1) for i in range(40)]
    expected = min(range(40), key=lambda i: abs(centres[i] - 1000))
    mean = logmel.mean(dim=0)
    assert mean.argmax().item() == expected
    assert (mean[expected] - mean[-1]).item() > 5  # far bands hold orders of magnitude less power


def test_mfcc_shape_and_first_coefficient_is_scaled_logmel_sum():
    wave = audio.read_wav(fsdd(NAMES[1]), RATE)
    logmel = audio.FrameFeatures("logmel", sample_rate=RATE)(wave)
    mfcc = audio.FrameFeatures("mfcc", sample_rate=RATE)(wave)
    assert mfcc.shape == (logmel.shape[0], 13)
    # Orthonormal DCT-II: c0 = sum / sqrt(M), and the full transform preserves the norm.
    torch.testing.assert_close(mfcc[:, 0], logmel.sum(dim=1) / math.sqrt(40), rtol=1e-5, atol=1e-4)
    full = audio.FrameFeatures("mfcc", sample_rate=RATE, n_mfcc=40)(wave)
    torch.testing.assert_close(full.norm(dim=1), logmel.norm(dim=1), rtol=1e-5, atol=1e-4)


def test_mel_filterbank_covers_the_spectrum_with_unit_peaks():
    bank = audio.mel_filterbank(40, 256, RATE)  # (129, 40)
    assert bank.shape == (129, 40)
    assert (bank >= 0).all() and (bank.max(dim=0).values > 0.5).all()
    assert (bank.sum(dim=1)[1:-1] > 0).all()  # every bin strictly inside 0..Nyquist falls in a band


# errors

def test_unknown_feature_kind_names_the_key_and_choices():
    with pytest.raises(UserError, match=r"data\.audio\.features.*'spectro'.*raw, logmel, mfcc"):
        audio.FrameFeatures("spectro", sample_rate=RATE)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"nothere\.wav: file not found"):
        audio.read_wav(tmp_path / "nothere.wav", RATE)


@pytest.mark.parametrize("name, content", [
    ("x.wav", b"this is plain text, not audio\n" * 10),
    ("picture.wav", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200)),
    ("zero.wav", b""),
])
def test_unreadable_files(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError, match=rf"{name}: not a readable audio file \(.+\)"):
        audio.read_wav(path, RATE)


def test_wav_with_no_samples(tmp_path):
    path = tmp_path / "silent.wav"
    soundfile.write(str(path), np.zeros(0, dtype=np.float32), RATE)
    with pytest.raises(UserError, match=r"silent\.wav: empty audio file"):
        audio.read_wav(path, RATE)


# FSDD names

def test_parse_fsdd_name_on_real_files():
    assert audio.parse_fsdd_name(fsdd("7_jackson_32.wav")) == (7, "jackson", 32)
    assert audio.parse_fsdd_name("0_george_0.wav") == (0, "george", 0)
    parsed = [audio.parse_fsdd_name(p) for p in (shared_data() / "fsdd" / "recordings").glob("*.wav")]
    assert len(parsed) == 3000
    assert {d for d, _, _ in parsed} == set(range(10))
    assert {s for _, s, _ in parsed} == {"george", "jackson", "lucas", "nicolas", "theo", "yweweler"}
    assert {i for _, _, i in parsed} == set(range(50))


@pytest.mark.parametrize("name", ["jackson_7_32.wav", "12_jackson_3.wav", "7_jackson_32.flac", "7-jackson-32.wav"])
def test_bad_fsdd_name(name):
    with pytest.raises(UserError, match=rf"{name}: file name does not match the FSDD pattern"):
        audio.parse_fsdd_name(f"/some/dir/{name}")
