"""Evaluate a checkpoint: `python -m core.evaluate --dataset meld --split test`.

Prints `<dataset> <split> weighted_f1=NN.NN` (and UAR, per-class F1, the confusion matrix) and
saves the confusion matrix as a PNG. The features the checkpoint was trained on (audio feature
set, text encoder) are read from it, and their extractor versions must match.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from core.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from core.device import resolve_device
from core.metrics import format_table, plot_confusion, score
from core.training import predict

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "models" / "default"


def check_versions(ck: Checkpoint, name: str, version: str) -> None:
    want = ck.feature_versions.get(name)
    if want is not None and want != version:
        raise CheckpointError(f"the checkpoint's {name} features are {want!r} but this installation extracts "
                              f"{version!r}; reinstall the pinned packages (make install) or retrain")


def conversations(ck: Checkpoint, dataset: str, split: str, data: str | None, cache_dir: str | None, k: int | None):
    from core.features.cache import FeatureCache
    from core.features.text import TextEmbedder

    cache = FeatureCache(cache_dir)
    adapter = ck.extra.get("text_adapter")
    embedder = TextEmbedder(ck.extra.get("text_encoder", "all-MiniLM-L6-v2"),
                            adapter=ck.directory / adapter if adapter else None)
    check_versions(ck, "text", embedder.version)
    root = Path(data) if data else None
    if dataset == "meld":
        from core.datasets import meld_conversations

        return meld_conversations(split, embedder, cache, root and root / "meld")
    from core.datasets import ravdess_enrolled, ravdess_table
    from core.features.audio import AudioFeatures
    from speakers.voiceprint import VoiceprintExtractor

    audio = AudioFeatures(ck.extra.get("audio_features", "egemaps"))
    check_versions(ck, "audio", audio.version)
    vp = VoiceprintExtractor("cpu")
    table = ravdess_table(audio, vp, embedder, cache, root and root / "ravdess")
    actors = sorted({c.actor for c in table.clips})
    seen = set(ck.extra.get("ravdess_train_actors", []))
    if seen & set(actors):
        print(f"note: actors {sorted(seen & set(actors))} were in this checkpoint's training data", file=sys.stderr)
    return ravdess_enrolled(table, actors, k=k, use_text=bool(ck.extra.get("ravdess_text", False)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=("meld", "ravdess"), default="meld")
    ap.add_argument("--split", default="test", help="meld: train | dev | test")
    ap.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    ap.add_argument("--k", type=int, default=None, help="ravdess: enrollment clips per actor (default: all)")
    ap.add_argument("--data", help="data root holding meld/ and ravdess/")
    ap.add_argument("--cache", help="feature cache directory")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out-dir", type=Path, default=Path("runs/eval"), help="where the confusion-matrix PNG goes")
    args = ap.parse_args(argv)
    console = Console()
    try:
        device = resolve_device(args.device)
        ck = load_checkpoint(args.checkpoint, device)
        convs = conversations(ck, args.dataset, args.split, args.data, args.cache, args.k)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"core.evaluate: {e}", file=sys.stderr)
        return 2
    y, p, _ = predict(ck.model, convs, device)
    s = score(y, p, ck.model.cfg.labels)
    split = args.split if args.dataset == "meld" else f"k={'all' if args.k is None else args.k}"
    console.print(format_table(s, ck.model.cfg.labels))
    png = plot_confusion(s, args.out_dir / f"{args.dataset}_{split}_confusion.png", f"{args.dataset} {split}",
                         ck.model.cfg.labels)
    console.print(f"confusion matrix saved to {png}")
    print(f"{args.dataset} {split} weighted_f1={s.weighted_f1:.2f} uar={s.uar:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
