"""Synthesize a small Speech Commands-style keyword dataset with espeak-ng, as MFCCs.

No download: every clip is spoken by espeak-ng (apt-get install espeak-ng).

Classes (the 12 of the Speech Commands v0.02 benchmark, in its label order):
``_silence_``, ``_unknown_``, yes, no, up, down, left, right, on, off, stop, go.
``_unknown_`` clips are other Speech Commands words (bed, bird, cat, ...);
``_silence_`` clips are background noise only.

A *voice* is an espeak-ng language voice (``en-us``, ``en-gb-x-rp``, ``de``, ...:
other languages' voices read the English words with their own letter-to-sound
rules, a crude accent) combined with a voice variant (``+m3``, ``+f2``,
``+klatt``, ...).  Each utterance also gets a random pitch (``-p``) and speed
(``-s``).  The train/test split is by voice: the test voices use language voices
AND variants that never occur in the training set.

Every clip is resampled to 16 kHz, trimmed, placed at a random time offset in
a 1 s window, mixed with synthetic background noise (white, pink, brown, mains
hum, band-limited rumble) at a random SNR, and turned into a 49x10 MFCC
matrix by :func:`mfcc` below (numpy only).

    python examples/kws_cnn/make_dataset.py            # -> examples/kws_cnn/data/dataset.npz

The cached .npz (a few MB) is not committed; train.py makes it when missing.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "data" / "dataset.npz"

WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
LABELS = ["_silence_", "_unknown_"] + WORDS
UNKNOWN_WORDS = ["bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house",
                 "marvin", "nine", "one", "seven", "sheila", "six", "three", "tree", "two",
                 "wow", "zero", "backward", "forward", "follow", "learn", "visual"]

# Language voices: the test ones never occur in training.
TRAIN_LANGS = ["en-us", "en-gb", "en-029", "en-gb-x-rp", "en-gb-x-gbclan", "de", "fr-fr",
               "es", "it", "pt", "pl", "sv", "fi", "cs", "af", "eo", "ro", "sk"]
TEST_LANGS = ["en-gb-scotland", "en-us-nyc", "en-gb-x-gbcwmd", "nl", "nb"]
# Voice variants (espeak-ng --voices=variant): again disjoint between train and test.
TRAIN_VARIANTS = ["", "m1", "m2", "m3", "m5", "m7", "f1", "f3", "f4", "klatt", "klatt3",
                  "adam", "Alex", "Andy", "aunty", "belinda", "boris", "david", "ed",
                  "Gene", "iven", "john", "linda", "max", "Michael", "paul", "quincy",
                  "rob", "steph", "travis", "zac", "grandma", "norbert", "shelby"]
TEST_VARIANTS = ["m4", "m6", "f2", "f5", "klatt2", "Alicia", "Annie", "benjamin", "caleb",
                 "edward", "gustave", "Hugo", "michel", "robert", "sandro", "victor",
                 "grandpa", "Mike"]

# ---------------------------------------------------------------------------
# MFCC features
#
#   16 kHz mono, 1 s (16000 samples)
#   frames:  30 ms window (480 samples), 20 ms hop (320 samples), no padding
#            -> 1 + (16000 - 480) // 320 = 49 frames
#   window:  periodic Hann of 480 samples
#   spectrum: |rfft| of each windowed frame zero-padded to 512 points (257 bins),
#            magnitude (not power), as in the MLPerf Tiny KWS front end
#   mel:     40 triangular filters whose edges are equally spaced on the HTK mel
#            scale mel(f) = 2595 log10(1 + f / 700) between 20 Hz and 4000 Hz;
#            each FFT bin's weight is computed from its own mel value (triangles
#            are exact in the mel domain), filters are not area-normalised
#   log:     natural log of (mel energy + 1e-6)
#   cepstrum: orthonormal DCT-II over the 40 log-mel values, first 10 kept
#            c[k] = s(k) * sum_m logmel[m] cos(pi k (2m + 1) / 80),
#            s(0) = sqrt(1/40), s(k>0) = sqrt(2/40)
#   result:  float32 [49, 10] (frames x coefficients); the model input is [49, 10, 1]

SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000
WINDOW = 480
HOP = 320
NFFT = 512
NUM_MEL = 40
NUM_CEPS = 10
MEL_LOW_HZ = 20.0
MEL_HIGH_HZ = 4000.0
LOG_OFFSET = 1e-6
NUM_FRAMES = 1 + (CLIP_SAMPLES - WINDOW) // HOP      # 49


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


def hann_window(n: int = WINDOW) -> np.ndarray:
    """Periodic Hann window (the DFT-even one used for spectral analysis)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def mel_filterbank(num_mel: int = NUM_MEL, nfft: int = NFFT, sr: int = SAMPLE_RATE,
                   low: float = MEL_LOW_HZ, high: float = MEL_HIGH_HZ) -> np.ndarray:
    """[nfft//2 + 1, num_mel] weights; column m is a triangle over mel edges m, m+1, m+2."""
    edges = np.linspace(hz_to_mel(low), hz_to_mel(high), num_mel + 2)
    bin_mel = hz_to_mel(np.arange(nfft // 2 + 1) * sr / nfft)[:, None]
    lower, center, upper = edges[:-2][None], edges[1:-1][None], edges[2:][None]
    rising = (bin_mel - lower) / (center - lower)
    falling = (upper - bin_mel) / (upper - center)
    return np.maximum(0.0, np.minimum(rising, falling))


def dct_matrix(num_in: int = NUM_MEL, num_out: int = NUM_CEPS) -> np.ndarray:
    """[num_in, num_out] orthonormal DCT-II basis (columns are cepstral coefficients)."""
    m = np.arange(num_in)[:, None]
    k = np.arange(num_out)[None]
    basis = np.cos(np.pi * k * (2 * m + 1) / (2 * num_in)) * np.sqrt(2.0 / num_in)
    basis[:, 0] *= np.sqrt(0.5)
    return basis


_MEL = mel_filterbank()
_DCT = dct_matrix()
_WIN = hann_window()


def frames(audio: np.ndarray) -> np.ndarray:
    """[49, 480] overlapping frames of a 16000-sample clip (shorter clips are zero-padded)."""
    audio = np.asarray(audio, np.float64).reshape(-1)[:CLIP_SAMPLES]
    audio = np.pad(audio, (0, CLIP_SAMPLES - audio.size))
    idx = np.arange(NUM_FRAMES)[:, None] * HOP + np.arange(WINDOW)[None]
    return audio[idx]


def magnitude_spectrogram(audio: np.ndarray) -> np.ndarray:
    """[49, 257] |FFT| of the Hann-windowed frames."""
    return np.abs(np.fft.rfft(frames(audio) * _WIN, n=NFFT, axis=-1))


def log_mel(audio: np.ndarray) -> np.ndarray:
    """[49, 40] log mel energies."""
    return np.log(magnitude_spectrogram(audio) @ _MEL + LOG_OFFSET)


def mfcc(audio: np.ndarray) -> np.ndarray:
    """[49, 10] float32 MFCCs of a 1 s, 16 kHz clip with samples in [-1, 1]."""
    return (log_mel(audio) @ _DCT).astype(np.float32)


# ---------------------------------------------------------------------------
# speech synthesis and augmentation


def _seed(*parts) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


def voice_name(lang: str, variant: str) -> str:
    return f"{lang}+{variant}" if variant else lang


def speak(word: str, voice: str, pitch: int, speed: int) -> np.ndarray:
    """espeak-ng output resampled to 16 kHz float in [-1, 1]."""
    out = subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed),
                          "--stdout", word], capture_output=True, check=False)
    wav = out.stdout
    if out.returncode != 0 or len(wav) <= 44 or wav[:4] != b"RIFF":
        raise RuntimeError(f"espeak-ng -v {voice} failed: "
                           f"{out.stderr.decode(errors='replace').strip()}")
    # espeak-ng writes a 44-byte header with a placeholder length to stdout; the
    # samples are 16-bit mono at 22050 Hz.
    rate = int.from_bytes(wav[24:28], "little")
    pcm = np.frombuffer(wav[44:44 + (len(wav) - 44) // 2 * 2], dtype="<i2").astype(np.float64)
    pcm /= 32768.0
    if rate != SAMPLE_RATE:
        g = np.gcd(rate, SAMPLE_RATE)
        pcm = resample_poly(pcm, SAMPLE_RATE // g, rate // g)
    return pcm


def trim(audio: np.ndarray, rel: float = 0.02) -> np.ndarray:
    """Drop leading/trailing near-silence; keep at most one second around the loud part."""
    if audio.size == 0 or np.max(np.abs(audio)) == 0:
        return audio[:0]
    loud = np.flatnonzero(np.abs(audio) > rel * np.max(np.abs(audio)))
    audio = audio[max(0, loud[0] - 160): loud[-1] + 160]
    if audio.size > CLIP_SAMPLES:
        start = (audio.size - CLIP_SAMPLES) // 2
        audio = audio[start:start + CLIP_SAMPLES]
    return audio


def noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS synthetic background noise of a random colour."""
    kind = rng.integers(5)
    if kind == 0:                                   # white
        x = rng.standard_normal(n)
    elif kind in (1, 2):                            # pink (1/f) or brown (1/f^2) power
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.arange(spec.size, dtype=np.float64)
        f[0] = 1.0
        spec /= f ** (0.5 if kind == 1 else 1.0)
        x = np.fft.irfft(spec, n)
    elif kind == 3:                                 # mains hum with harmonics + hiss
        t = np.arange(n) / SAMPLE_RATE
        base = rng.choice([50.0, 60.0])
        x = sum(rng.uniform(0.2, 1.0) / h * np.sin(2 * np.pi * base * h * t + rng.uniform(0, 6.3))
                for h in range(1, 8))
        x = x + 0.1 * rng.standard_normal(n)
    else:                                           # band-limited rumble (fan, traffic)
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        lo, hi = sorted(rng.uniform(80, 3000, 2))
        spec *= np.exp(-0.5 * ((f - (lo + hi) / 2) / max(hi - lo, 100.0)) ** 2)
        x = np.fft.irfft(spec, n)
    rms = np.sqrt(np.mean(x ** 2))
    return x / rms if rms > 0 else x


def place(utterance: np.ndarray, rng: np.random.Generator, snr_db: float | None) -> np.ndarray:
    """The utterance at a random offset in 1 s, at a random level, with noise at snr_db."""
    clip = np.zeros(CLIP_SAMPLES)
    if utterance.size:
        offset = rng.integers(0, CLIP_SAMPLES - utterance.size + 1)
        clip[offset:offset + utterance.size] = utterance
        peak = np.max(np.abs(utterance))
        clip *= rng.uniform(0.1, 0.9) / peak
    if snr_db is not None:
        speech_rms = np.sqrt(np.mean(utterance ** 2)) * (np.max(np.abs(clip)) /
                                                        max(np.max(np.abs(utterance)), 1e-12))
        clip += noise(CLIP_SAMPLES, rng) * speech_rms * 10 ** (-snr_db / 20)
    clip += rng.standard_normal(CLIP_SAMPLES) * 1e-4          # microphone floor
    return np.clip(clip, -1.0, 1.0)


def silence_clip(rng: np.random.Generator) -> np.ndarray:
    level = 10 ** rng.uniform(-4.0, -1.0)
    clip = noise(CLIP_SAMPLES, rng) * level + rng.standard_normal(CLIP_SAMPLES) * 1e-4
    return np.clip(clip, -1.0, 1.0)


def _utterance_clips(word: str, lang: str, variant: str, copies: int, split: str):
    rng = np.random.default_rng(_seed(split, lang, variant, word))
    pitch, speed = int(rng.integers(25, 76)), int(rng.integers(130, 211))
    utt = trim(speak(word, voice_name(lang, variant), pitch, speed))
    clips = []
    for c in range(copies):
        crng = np.random.default_rng(_seed(split, lang, variant, word, c))
        snr = None if crng.random() < 0.15 else crng.uniform(5.0, 30.0)
        clips.append(mfcc(place(utt, crng, snr)))
    return clips


def make_split(voices: list[tuple[str, str]], words: list[str], unknown_words: list[str],
               unknown_per_voice: int, silence_per_voice: int, copies: int, split: str,
               workers: int = 4):
    """Features, labels and voice names for every (voice, word) pair plus extras."""
    jobs = []                                   # (label index, word, lang, variant)
    for lang, variant in voices:
        for w in words:
            jobs.append((LABELS.index(w), w, lang, variant))
        urng = np.random.default_rng(_seed(split, "unknown", lang, variant))
        for w in urng.choice(unknown_words, size=min(unknown_per_voice, len(unknown_words)),
                             replace=False):
            jobs.append((LABELS.index("_unknown_"), str(w), lang, variant))
    xs, ys, vs = [], [], []
    with cf.ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(_utterance_clips, w, lang, var, copies, split)
                   for _, w, lang, var in jobs]
        for (label, _, lang, var), fut in zip(jobs, futures):
            for feat in fut.result():
                xs.append(feat)
                ys.append(label)
                vs.append(voice_name(lang, var))
    for lang, variant in voices:
        srng = np.random.default_rng(_seed(split, "silence", lang, variant))
        for _ in range(silence_per_voice * copies):
            xs.append(mfcc(silence_clip(srng)))
            ys.append(LABELS.index("_silence_"))
            vs.append(voice_name(lang, variant))
    if not xs:
        empty = np.zeros((0, NUM_FRAMES, NUM_CEPS, 1), np.float32)
        return empty, np.zeros(0, np.int64), np.array([], dtype=str)
    x = np.stack(xs)[..., None].astype(np.float32)
    return x, np.array(ys, np.int64), np.array(vs)


def pick_voices(langs: list[str], variants: list[str], per_lang: int, seed: int):
    rng = np.random.default_rng(seed)
    return [(lang, str(v)) for lang in langs
            for v in rng.choice(variants, size=min(per_lang, len(variants)), replace=False)]


def make_dataset(words=WORDS, unknown_words=UNKNOWN_WORDS, train_voices=None, test_voices=None,
                 unknown_per_voice: int = 2, silence_per_voice: int = 1, train_copies: int = 1,
                 test_copies: int = 1, workers: int = 4) -> dict[str, np.ndarray]:
    """The whole dataset as a dict of arrays (the keys of the cached .npz)."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed (apt-get install espeak-ng)")
    train_voices = train_voices or pick_voices(TRAIN_LANGS, TRAIN_VARIANTS, 12, seed=1)
    test_voices = test_voices or pick_voices(TEST_LANGS, TEST_VARIANTS, 5, seed=2)
    overlap = {voice_name(*v) for v in train_voices} & {voice_name(*v) for v in test_voices}
    if overlap:
        raise ValueError(f"voices in both train and test: {sorted(overlap)}")
    xtr, ytr, vtr = make_split(train_voices, list(words), list(unknown_words), unknown_per_voice,
                               silence_per_voice, train_copies, "train", workers)
    xte, yte, vte = make_split(test_voices, list(words), list(unknown_words), unknown_per_voice,
                               silence_per_voice, test_copies, "test", workers)
    return {"x_train": xtr, "y_train": ytr, "voice_train": vtr,
            "x_test": xte, "y_test": yte, "voice_test": vte, "labels": np.array(LABELS)}


def load_or_make(path: Path = DEFAULT_OUT) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.exists():
        t0 = time.time()
        data = make_dataset()
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **data)
        print(f"dataset: {len(data['y_train'])} train + {len(data['y_test'])} test clips "
              f"in {time.time() - t0:.0f} s -> {path}")
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .npz")
    ap.add_argument("--force", action="store_true", help="regenerate even if the file exists")
    args = ap.parse_args(argv)
    if args.force and args.out.exists():
        args.out.unlink()
    data = load_or_make(args.out)
    for split in ("train", "test"):
        y = data[f"y_{split}"]
        voices = sorted(set(data[f"voice_{split}"]))
        counts = np.bincount(y, minlength=len(LABELS))
        print(f"{split}: {len(y)} clips, {len(voices)} voices, per class {counts.tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
