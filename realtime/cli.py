"""Command line of `run_live.py`: the flags of ARCHITECTURE.md, parsed in one place."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.device import DEVICE_CHOICES

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "models" / "default"
DEFAULT_SPEAKERS = Path("~/.local/share/mlsan-live/speakers.json").expanduser()

# Options whose implementation has not landed yet, with where it will come from.
NOT_YET = {
    "camera": "live capture (issue 4)",
    "no_camera": "live capture (issue 4)",
    "mic": "live capture (issue 4)",
    "audio": "recording replay (issue 4)",
    "video": "recording replay (issue 4)",
    "enroll": "speaker enrollment (issue 4)",
    "report": "the emotion timeline report (issue 4)",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_live.py",
        description="Real-time, speaker-adaptive multimodal emotion recognition for live conversations (ML-SAN).",
        epilog="Example: python run_live.py --camera 0   (default microphone + camera 0)",
    )
    src = p.add_argument_group("inputs")
    src.add_argument("--camera", metavar="INDEX|PATH|URL", help="camera index, video file or stream URL")
    src.add_argument("--no-camera", action="store_true", help="audio only")
    src.add_argument("--mic", metavar="NAME|INDEX", help="microphone by name or index (default: system default)")
    src.add_argument("--list-devices", action="store_true", help="list audio input devices and exit")
    src.add_argument("--audio", metavar="FILE", help="replay an audio recording as a live stream")
    src.add_argument("--video", metavar="FILE", help="replay a video recording as a live camera")
    src.add_argument("--fast", action="store_true", help="replay as fast as possible instead of in real time")
    out = p.add_argument_group("outputs")
    out.add_argument("--headless", action="store_true", help="no live display (for scripts)")
    out.add_argument("--events", metavar="PATH", help="write events as JSON lines to PATH")
    out.add_argument("--report", metavar="FILE.png", help="on exit, write an emotion timeline per speaker")
    spk = p.add_argument_group("speakers")
    spk.add_argument("--enroll", metavar="NAME", help="record a voiceprint for NAME, then continue")
    spk.add_argument("--speakers", metavar="PATH", type=Path, default=DEFAULT_SPEAKERS,
                     help=f"speaker registry (default: {DEFAULT_SPEAKERS})")
    mdl = p.add_argument_group("model")
    mdl.add_argument("--checkpoint", metavar="PATH", type=Path, default=DEFAULT_CHECKPOINT,
                     help="ML-SAN checkpoint directory (default: the shipped model)")
    mdl.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="where the model runs")
    mdl.add_argument("--asr-model", default="base", help="faster-whisper model (default: bundled Whisper base, offline)")
    p.add_argument("--demo", action="store_true", help="run the bundled demo (what `make demo` runs)")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    return p


def list_devices() -> int:
    try:
        import sounddevice as sd
    except OSError as e:  # PortAudio missing
        print(f"run_live.py: cannot load the audio library ({e}); install libportaudio2", file=sys.stderr)
        return 2
    devices = [d for d in sd.query_devices() if d["max_input_channels"] > 0]
    if not devices:
        print("no audio input devices found")
        return 0
    for d in devices:
        print(f"{d['index']:>3}  {d['name']}  ({d['max_input_channels']} ch, {int(d['default_samplerate'])} Hz)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_devices:
        return list_devices()
    if args.demo:
        from core.demo import main as demo_main

        return demo_main([])
    asked = [k for k in NOT_YET if getattr(args, k) not in (None, False)]
    what = NOT_YET[asked[0]] if asked else "the live pipeline (issue 4)"
    print(f"run_live.py: {what} is not implemented in this version yet; "
          "`make demo` runs the model-core demo, `python bench/step.py` the step benchmark", file=sys.stderr)
    return 2
