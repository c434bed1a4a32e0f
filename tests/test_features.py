"""Feature extractors on real material: openSMILE, MediaPipe faces, MiniLM text, GE2E voiceprints,
the feature cache and audio file reading. Offline, CPU. Tests needing ../shared/data (or
$MLSAN_DATA) skip when it is absent."""

from __future__ import annotations

import hashlib
import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest

from core.features.audio import AudioFeatures
from core.features.audio_io import SAMPLE_RATE, load_audio, resample
from core.features.cache import CACHE_ENV, FeatureCache, default_cache_root, file_sha256

DATA = Path(os.environ.get("MLSAN_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
F0_MEAN = "F0semitoneFrom27.5Hz_sma3nz_amean"  # eGeMAPS: mean F0 in semitones above 27.5 Hz
CREMA_HAPPY = "crema-d/1001_DFA_HAP_XX.flv"
CREMA_NEUTRAL = "crema-d/1001_DFA_NEU_XX.flv"
CREMA_MP3 = "crema-d/1002_DFA_HAP_XX.mp3"
RAV1 = ("ravdess/Actor_01/03-01-01-01-01-01-01.flac", "ravdess/Actor_01/03-01-02-01-01-02-01.flac")
RAV2 = ("ravdess/Actor_02/03-01-01-01-01-01-02.flac", "ravdess/Actor_02/03-01-02-01-01-02-02.flac")


def data_file(rel: str) -> Path:
    path = DATA / rel
    if not path.is_file():
        pytest.skip(f"test data {path} not available (set MLSAN_DATA to the shared data folder)")
    return path


def sine(freq: float, seconds: float = 1.0, rate: int = SAMPLE_RATE, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def vowel(rate: int, seconds: float = 1.5) -> np.ndarray:
    """A band-limited (< 3.5 kHz) voiced sound with vibrato and a 2 Hz envelope, synthesized at `rate`."""
    t = np.arange(int(rate * seconds)) / rate
    phase = 2 * np.pi * np.cumsum(150 + 10 * np.sin(2 * np.pi * 3 * t)) / rate
    x = sum((0.5 / k) * np.sin(k * phase) for k in range(1, 21) if 150 * k < 3500)
    return (0.3 * x * 0.5 * (1 + np.sin(2 * np.pi * 2 * t))).astype(np.float32)


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---------------------------------------------------------------- acoustic (openSMILE)


@pytest.fixture(scope="module")
def egemaps() -> AudioFeatures:
    return AudioFeatures("egemaps")


def test_egemaps_tracks_pitch_of_sines(egemaps):
    f0 = egemaps.feature_names.index(F0_MEAN)
    low, high = egemaps(sine(220.0)), egemaps(sine(440.0))
    for v in (low, high):
        assert v.shape == (88,) and v.dtype == np.float32 and np.all(np.isfinite(v))
    assert egemaps.dim == 88
    assert low[f0] == pytest.approx(12 * math.log2(220 / 27.5), abs=0.3)  # 36 semitones
    assert high[f0] == pytest.approx(12 * math.log2(440 / 27.5), abs=0.3)  # 48 semitones


def test_egemaps_input_forms_agree(egemaps):
    x = vowel(SAMPLE_RATE)
    ref = egemaps(x)
    q = np.round(x * 32767).astype(np.int16)
    np.testing.assert_allclose(egemaps(q), egemaps(q.astype(np.float32) / 32768), rtol=1e-6, atol=1e-6)
    stereo = egemaps(np.stack([x, x], axis=1))
    np.testing.assert_allclose(stereo, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_egemaps_other_rates_match_16k(egemaps, rate):
    f0 = egemaps.feature_names.index(F0_MEAN)
    ref, other = egemaps(vowel(SAMPLE_RATE), SAMPLE_RATE), egemaps(vowel(rate), rate)
    assert other[f0] == pytest.approx(ref[f0], abs=0.2)
    rel = np.abs(other - ref) / (np.abs(ref) + 1e-3)
    assert np.median(rel) < 0.02
    assert np.corrcoef(other, ref)[0, 1] > 0.999


def test_egemaps_real_voices_female_higher(egemaps):
    f0 = egemaps.feature_names.index(F0_MEAN)
    male = egemaps(load_audio(data_file(RAV1[0])))[f0]
    female = egemaps(load_audio(data_file(RAV2[0])))[f0]
    assert female > male + 6  # Actor_02 (female) speaks at least half an octave higher


def test_audio_features_refuse_bad_input(egemaps):
    with pytest.raises(ValueError, match="at least 0.1 s"):
        egemaps(sine(220.0, seconds=0.05))
    with pytest.raises(ValueError, match="NaN"):
        egemaps(np.full(16000, np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="channels-first"):
        egemaps(np.zeros((2, 16000), dtype=np.float32))
    with pytest.raises(ValueError, match="unknown audio feature set"):
        AudioFeatures("mfcc")
    silence = egemaps(np.zeros(16000, dtype=np.float32))
    assert silence.shape == (88,) and np.all(np.isfinite(silence))


def test_compare_functionals(egemaps):
    compare = AudioFeatures("compare")
    v = compare(sine(220.0))
    assert compare.dim == 6373 and v.shape == (6373,) and v.dtype == np.float32 and np.all(np.isfinite(v))
    assert compare.version != egemaps.version and "ComParE_2016" in compare.version
    assert np.abs(v - compare(sine(440.0))).max() > 0


# ---------------------------------------------------------------- faces (MediaPipe)


def video_frames(path: Path, step: int = 3) -> list[tuple[np.ndarray, int]]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    frames, i = [], 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i % step == 0:
            frames.append((frame, int(round(i * 1000 / fps))))
        i += 1
    cap.release()
    assert frames, f"OpenCV read no frames from {path}"
    return frames


def smile_track(path: Path) -> tuple[np.ndarray, list]:
    from core.features.visual import BLENDSHAPE_NAMES, FaceTracker

    left, right = BLENDSHAPE_NAMES.index("mouthSmileLeft"), BLENDSHAPE_NAMES.index("mouthSmileRight")
    observations = []
    with FaceTracker() as tracker:
        for frame, ts in video_frames(path):
            faces = tracker.process(frame, ts)
            assert len(faces) == 1, f"expected exactly one face at {ts} ms, got {len(faces)}"
            observations.append(faces[0])
    smile = np.array([(o.blendshapes[left] + o.blendshapes[right]) / 2 for o in observations])
    return smile, observations


def test_face_tracker_on_real_video():
    from core.features.visual import VISUAL_DIM, pool_faces

    happy, obs = smile_track(data_file(CREMA_HAPPY))
    neutral, _ = smile_track(data_file(CREMA_NEUTRAL))
    o = obs[0]
    assert o.blendshapes.shape == (52,) and o.blendshapes.dtype == np.float32
    assert np.all((o.blendshapes >= 0) & (o.blendshapes <= 1))
    x0, y0, x1, y1 = o.bbox
    assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 and 0.1 < x1 - x0 < 0.6  # one face, mid-size
    assert np.all(np.abs(o.pose[:3]) < 0.5)  # frontal: yaw, pitch, roll within ~30 degrees
    assert o.pose[5] < 0  # the face is in front of the camera (negative z)
    assert happy.max() > 0.85 and happy.mean() > 0.5
    assert neutral.mean() < 0.3 and happy.mean() > neutral.mean() + 0.3
    assert all(0 <= f.mouth_open < 0.5 for f in obs) and max(f.mouth_open for f in obs) > 0.05  # speaking
    pooled = pool_faces(obs)
    assert pooled is not None and pooled.shape == (VISUAL_DIM,) and pooled.dtype == np.float32
    assert np.all(np.isfinite(pooled))
    stack = np.stack([np.concatenate([f.blendshapes, f.pose]) for f in obs])
    np.testing.assert_allclose(pooled[:58], stack.mean(axis=0), rtol=1e-5, atol=1e-5)


def test_face_tracker_blank_frames_and_timestamps():
    from core.features.visual import FaceTracker, pool_faces

    blank = np.zeros((480, 640, 3), dtype=np.uint8)
    with FaceTracker() as tracker:
        assert tracker.process(blank, 100) == []
        assert tracker.process(blank, 100) == []  # equal timestamp: bumped, not a MediaPipe error
        assert tracker.process(blank, 50) == []  # earlier timestamp: bumped too
        assert tracker.process(blank[:, :, 0], 200) == []  # grayscale accepted
        with pytest.raises(ValueError, match="uint8"):
            tracker.process(blank.astype(np.float32), 300)
        assert "mediapipe-" in tracker.version and tracker.dim == 119
    assert pool_faces([]) is None


def test_pose_from_matrix_recovers_angles():
    from core.features.visual import pose_from_matrix

    yaw, pitch, roll = 0.3, -0.2, 0.1
    cx, sx = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    cz, sz = math.cos(roll), math.sin(roll)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = 2.0 * (rz @ ry @ rx)  # a scale must not change the angles
    m[:3, 3] = (1.0, -2.0, -40.0)
    np.testing.assert_allclose(pose_from_matrix(m), [yaw, pitch, roll, 1.0, -2.0, -40.0], atol=1e-5)


# ---------------------------------------------------------------- text (MiniLM)


@pytest.fixture(scope="module")
def text_embedder():
    from core.features.text import TextEmbedder

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    embedder = TextEmbedder()
    with pytest.MonkeyPatch.context() as mp:  # loading the packaged model must not open any connection
        mp.setattr(socket.socket, "connect", no_network)
        mp.setattr(socket, "getaddrinfo", no_network)
        embedder.load()
    return embedder


def test_text_embeddings_rank_meaning(text_embedder):
    e = text_embedder.embed(
        [
            "I am so happy today, this is wonderful!",
            "I feel really glad and cheerful right now.",
            "The train to Boston leaves at seven from platform four.",
        ]
    )
    assert e.shape == (3, 384) and e.dtype == np.float32 and text_embedder.dim == 384
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert cos(e[0], e[1]) > cos(e[0], e[2]) + 0.2
    alone, batched = text_embedder.embed(["same words"]), text_embedder.embed(["same words", "other"], batch_size=1)
    np.testing.assert_allclose(alone[0], batched[0], atol=1e-5)
    assert "all-MiniLM-L6-v2" in text_embedder.version


def test_text_embedder_edge_cases(text_embedder):
    empty = text_embedder.embed([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    with pytest.raises(ValueError, match="list of strings"):
        text_embedder.embed("a sentence")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs strings"):
        text_embedder.embed(["ok", None])  # type: ignore[list-item]


def test_offline_env_respects_user_settings(monkeypatch):
    from core.features.text import _offline_env

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    with _offline_env():
        assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "0"
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["TRANSFORMERS_OFFLINE"] == "0"


# ---------------------------------------------------------------- voiceprints (resemblyzer)


@pytest.fixture
def one_torch_thread():
    """resemblyzer's LSTM is erratic with 2 threads on a busy 2-core machine (see OFFLINE.md)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_voiceprints_separate_real_speakers(one_torch_thread):
    from speakers.voiceprint import VoiceprintExtractor

    vp = VoiceprintExtractor("cpu")
    a1, a2 = (vp(load_audio(data_file(r))) for r in RAV1)
    b1, b2 = (vp(load_audio(data_file(r))) for r in RAV2)
    for e in (a1, a2, b1, b2):
        assert e.shape == (256,) and e.dtype == np.float32 and abs(float(np.linalg.norm(e)) - 1) < 1e-5
    same = min(cos(a1, a2), cos(b1, b2))
    across = max(cos(a1, b1), cos(a1, b2), cos(a2, b1), cos(a2, b2))
    assert same > across + 0.1, (same, across)
    # 48 kHz stereo int16 input of the same clip gives (nearly) the same voiceprint
    x = load_audio(data_file(RAV1[0]))
    pcm48 = np.round(resample(x, SAMPLE_RATE, 48000) * 32767).astype(np.int16)
    assert cos(vp(np.stack([pcm48, pcm48], axis=1), 48000), a1) > 0.98
    assert vp.dim == 256 and vp.version.startswith("resemblyzer-0.1.4/")


def test_voiceprint_refuses_short_or_silent_audio(one_torch_thread):
    from speakers.voiceprint import VoiceprintExtractor

    vp = VoiceprintExtractor("cpu")
    with pytest.raises(ValueError, match="silent"):
        vp(np.zeros(SAMPLE_RATE, dtype=np.float32))
    with pytest.raises(ValueError, match="needs >= 0.5 s"):
        vp(sine(150.0, seconds=0.3))
    faint_noise = 1e-3 * np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32)
    with pytest.raises(ValueError, match="of speech after removing silence"):
        vp(faint_noise)


# ---------------------------------------------------------------- feature cache


def test_cache_computes_once_per_content_and_version(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    src = tmp_path / "clip.wav"
    src.write_bytes(b"RIFF fake audio bytes")
    calls: list[int] = []

    def compute() -> np.ndarray:
        calls.append(1)
        return np.arange(5, dtype=np.float32) * len(calls)

    first = cache.get_or_compute(src, "egemaps/v1", compute)
    second = cache.get_or_compute(src, "egemaps/v1", compute)
    assert len(calls) == 1 and np.array_equal(first, second) and second.dtype == np.float32
    assert (cache.hits, cache.misses) == (1, 1)
    # a copy with the same bytes elsewhere is the same entry (the key is the content hash)
    copy = tmp_path / "copy.wav"
    copy.write_bytes(src.read_bytes())
    assert np.array_equal(cache.get_or_compute(copy, "egemaps/v1", compute), first) and len(calls) == 1
    # another version, other params or other content -> another entry
    other = cache.get_or_compute(src, "egemaps/v2", compute)
    assert len(calls) == 2 and not np.array_equal(other, first)
    cache.get_or_compute(src, "egemaps/v1", compute, params={"start": 1.5})
    src.write_bytes(b"RIFF other audio bytes")
    cache.get_or_compute(src, "egemaps/v1", compute)
    assert len(calls) == 4
    files = sorted(p.relative_to(cache.root) for p in cache.root.rglob("*.npy"))
    assert len(files) == 4 and {p.parts[0] for p in files} == {"egemaps_v1", "egemaps_v2"}
    assert all(len(p.parts) == 3 and p.parts[1] == p.stem[:2] for p in files)
    assert not list(cache.root.rglob("*.tmp"))


def test_cache_recomputes_corrupt_entries(tmp_path):
    cache = FeatureCache(tmp_path)
    key = ("meld", "train", "dia3_utt1")
    value = np.linspace(0, 1, 7, dtype=np.float32)
    cache.get_or_compute(key, "text/v1", lambda: value)
    path = cache.path_for(cache.key(key, "text/v1"), "text/v1")
    for junk in (b"not a numpy file", path.read_bytes()[:40]):  # garbage, then a truncated file
        path.write_bytes(junk)
        again = cache.get_or_compute(key, "text/v1", lambda: value * 2)
        np.testing.assert_array_equal(again, value * 2)
        np.testing.assert_array_equal(np.load(path, allow_pickle=False), value * 2)
    with pytest.raises(ValueError, match="Path"):
        cache.get_or_compute("a/str/path.wav", "v", lambda: value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a file"):
        cache.get_or_compute(tmp_path / "missing.wav", "v", lambda: value)


def test_cache_root_and_file_hash(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "elsewhere"))
    assert default_cache_root() == tmp_path / "elsewhere" and FeatureCache().root == tmp_path / "elsewhere"
    monkeypatch.delenv(CACHE_ENV)
    assert default_cache_root() == Path.home() / ".cache" / "mlsan-live" / "features"
    blob = os.urandom(3 << 20)
    (tmp_path / "f.bin").write_bytes(blob)
    assert file_sha256(tmp_path / "f.bin") == hashlib.sha256(blob).hexdigest()


# ---------------------------------------------------------------- audio files


def test_load_audio_formats():
    import soundfile as sf

    flac = data_file(RAV1[0])
    x = load_audio(flac)
    raw, rate = sf.read(str(flac), dtype="float32")
    assert rate == SAMPLE_RATE and x.dtype == np.float32 and x.ndim == 1
    np.testing.assert_array_equal(x, raw)  # already 16 kHz mono: untouched
    mp3 = load_audio(data_file(CREMA_MP3))
    assert mp3.dtype == np.float32 and 2.0 < mp3.size / SAMPLE_RATE < 2.5 and 0.05 < np.abs(mp3).max() <= 1.0
    assert abs(load_audio(data_file(CREMA_MP3), sample_rate=8000).size * 2 - mp3.size) <= 2
    flv = load_audio(data_file(CREMA_HAPPY))  # MP3 audio inside an FLV container (PyAV)
    assert 1.5 < flv.size / SAMPLE_RATE < 2.5 and np.sqrt(np.mean(flv**2)) > 0.01


def test_load_audio_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="not found.*nope.wav"):
        load_audio(tmp_path / "nope.wav")
    empty = tmp_path / "empty.wav"
    empty.touch()
    with pytest.raises(ValueError, match="empty.wav is empty"):
        load_audio(empty)
    noise = tmp_path / "noise.mp3"
    noise.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="cannot decode .*noise.mp3"):
        load_audio(noise)
    with pytest.raises(ValueError, match="not a file"):
        load_audio(tmp_path)
