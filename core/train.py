"""Train and compare ML-SAN variants: `python -m core.train --dataset meld|ravdess|default ...`.

  meld     text + speakers, causal context; model selection on dev; test scored once per run.
  ravdess  audio + speakers, speaker-independent k-fold over actors (2 training actors held out
           as dev for model selection); each held-out clip is scored after the model has seen
           k = 0, 5, 10, 20 or all other clips of that actor (enrollment protocol).
  default  the shipped model: MELD (text) + RAVDESS (audio), saved with --save.

Several --ablation values and --seeds give a table of mean +- std over seeds and a paired t-test
of each variant against `full`. Results are written as JSON to --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from core.device import resolve_device
from core.metrics import mean_std, paired_p, score
from core.model import MLSANConfig
from core.training import TrainOptions, evaluate, fit, init_distributed, predict

ABLATIONS: dict[str, dict] = {
    "full": {},
    "no_film": {"use_film": False},
    "no_gating": {"use_gating": False},
    "no_speaker_loss": {"use_speaker_loss": False},
    "no_speaker": {"use_film": False, "use_gating": False, "use_speaker_loss": False, "speaker_aware_context": False},
    "no_context": {"context_window": 1},
}
ENROLL_KS = (0, 5, 10, 20, None)  # None: all other clips of the actor

# Per-dataset settings (model config, training options), tuned on dev data only: MELD dev for
# meld; for ravdess the two dev actors held out of the training actors of each fold, never the
# fold's test actors (see docs/RESULTS.md for the sweep).
PRESETS: dict[str, tuple[dict, dict]] = {
    "meld": (dict(d_model=64, dropout=0.3), dict(lr=3e-4, weight_decay=0.05, epochs=20)),
    "ravdess": (dict(d_model=64, input_dropout=0.5), dict(lr=3e-4, weight_decay=0.05, epochs=40)),
    "default": (dict(d_model=64, dropout=0.3, input_dropout=0.5), dict(lr=3e-4, weight_decay=0.05, epochs=30)),
}


class InfoColumn(ProgressColumn):
    """The task's `info` field (e.g. the latest dev score), empty when it has none."""

    def render(self, task) -> Text:
        return Text(str(task.fields.get("info", "")))


def progress_bar(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    InfoColumn(), console=console)


def feature_stack(args, console: Console, need_audio: bool):
    """Extractors and the cache, built once."""
    from core.features.cache import FeatureCache
    from core.features.text import TextEmbedder

    cache = FeatureCache(args.cache)
    embedder = TextEmbedder(args.text_encoder, adapter=args.text_adapter)
    audio = vp = None
    if need_audio:
        from core.features.audio import AudioFeatures
        from speakers.voiceprint import VoiceprintExtractor

        audio, vp = AudioFeatures(args.audio_features), VoiceprintExtractor("cpu")
    return cache, embedder, audio, vp


def make_config(base: dict, ablation: str, lam: float | None) -> MLSANConfig:
    over = dict(ABLATIONS[ablation])
    if lam is not None:
        over["speaker_loss_weight"] = lam
    return MLSANConfig(**{**base, **over})


def run_meld(args, opts: TrainOptions, device, console: Console) -> dict:
    from core.datasets import meld_conversations

    cache, embedder, _, _ = feature_stack(args, console, need_audio=False)
    ids: dict[str, int] = {}
    data = {s: meld_conversations(s, embedder, cache, args.data and Path(args.data) / "meld", ids, args.limit)
            for s in ("train", "dev", "test")}
    base = dict(PRESETS["meld"][0], text_dim=embedder.dim, context_window=args.window)
    results: dict[str, list[dict]] = {}
    with progress_bar(console) as prog:
        for ab in args.ablation:
            for seed in args.seeds:
                cfg = make_config(base, ab, args.lam)
                task = prog.add_task(f"meld {ab} seed {seed}", total=opts.epochs)
                model, hist = fit(cfg, data["train"], data["dev"], dataclasses.replace(opts, seed=seed), device,
                                  on_epoch=lambda e, r, t=task: prog.update(t, advance=1, info=f"dev wF1 {r.get('dev_weighted_f1', 0):.2f}"))
                s = evaluate(model, data["test"], device)
                results.setdefault(ab, []).append(dict(seed=seed, weighted_f1=s.weighted_f1, uar=s.uar,
                                                       per_class_f1=s.per_class_f1, epochs=len(hist),
                                                       best_dev=max(h["dev_weighted_f1"] for h in hist)))
                console.print(s.summary(f"meld test ({ab}, seed {seed})"))
    return {"dataset": "meld", "results": results}


def run_ravdess(args, opts: TrainOptions, device, console: Console) -> dict:
    from core.data.ravdess import actor_folds
    from core.datasets import ravdess_enrolled, ravdess_sampler, ravdess_table

    cache, embedder, audio, vp = feature_stack(args, console, need_audio=True)
    with progress_bar(console) as prog:
        table = ravdess_table(audio, vp, embedder, cache, args.data and Path(args.data) / "ravdess", prog)
    actors = sorted({c.actor for c in table.clips})
    folds = actor_folds(actors, k=args.folds, seed=0)
    base = dict(PRESETS["ravdess"][0], audio_dim=table.audio.shape[1], text_dim=embedder.dim, context_window=1)
    results: dict[str, list[dict]] = {}
    opts = dataclasses.replace(opts, select_metric="uar")
    with progress_bar(console) as prog:
        for ab in args.ablation:
            for seed in args.seeds:
                preds = {k: ([], []) for k in ENROLL_KS}
                for f, test_actors in enumerate(folds):
                    rest = [a for a in actors if a not in test_actors]
                    rng = np.random.default_rng(1000 * seed + f)
                    dev_actors = [int(rng.choice([a for a in rest if a % 2])), int(rng.choice([a for a in rest if not a % 2]))]
                    train_actors = [a for a in rest if a not in dev_actors]
                    sampler = ravdess_sampler(table, train_actors)
                    train_ref = sampler(np.random.default_rng(0))
                    dev = ravdess_enrolled(table, dev_actors, k=10, seed=seed)
                    cfg = make_config(base, ab, args.lam)
                    task = prog.add_task(f"ravdess {ab} seed {seed} fold {f + 1}/{len(folds)}", total=opts.epochs)
                    model, _ = fit(cfg, train_ref, dev, dataclasses.replace(opts, seed=seed), device,
                                   on_epoch=lambda e, r, t=task: prog.update(t, advance=1, info=f"dev UAR {r.get('dev_uar', 0):.1f}"),
                                   train_sampler=sampler)
                    for k in ENROLL_KS:
                        y, p, _ = predict(model, ravdess_enrolled(table, test_actors, k=k, seed=seed), device)
                        preds[k][0].append(y)
                        preds[k][1].append(p)
                row = {"seed": seed}
                for k in ENROLL_KS:
                    s = score(np.concatenate(preds[k][0]), np.concatenate(preds[k][1]))
                    row[f"k={'all' if k is None else k}"] = dict(uar=s.uar, weighted_f1=s.weighted_f1, per_class_f1=s.per_class_f1)
                results.setdefault(ab, []).append(row)
                console.print(f"ravdess ({ab}, seed {seed}) " + " ".join(
                    f"{k}: UAR {v['uar']:.1f}" for k, v in row.items() if k != "seed"))
    return {"dataset": "ravdess", "audio_features": args.audio_features, "folds": folds, "results": results}


def summarize(res: dict, console: Console) -> None:
    """Mean +- std over seeds, and paired t-tests against `full` (seeds paired)."""
    results = res["results"]
    metrics = (["weighted_f1", "uar"] if res["dataset"] == "meld"
               else [f"k={'all' if k is None else k}/uar" for k in ENROLL_KS] + ["k=all/weighted_f1"])

    def values(rows, m):
        out = []
        for r in rows:
            v = r
            for part in m.split("/"):
                v = v[part]
            out.append(v)
        return np.array(out)

    t = Table(title=f"{res['dataset']}: mean ± std over seeds (paired t-test p vs full)")
    t.add_column("variant")
    for m in metrics:
        t.add_column(m)
    if res["dataset"] == "meld":
        t.add_column("fear F1")
        t.add_column("disgust F1")
    for ab, rows in results.items():
        cells = []
        for m in metrics:
            v = values(rows, m)
            cell = mean_std(v)
            if ab != "full" and "full" in results:
                cell += f" (p={paired_p(values(results['full'], m), v)})"
            cells.append(cell)
        if res["dataset"] == "meld":
            for lab in ("fear", "disgust"):
                cells.append(mean_std([r["per_class_f1"][lab] for r in rows]))
        t.add_row(ab, *cells)
    console.print(t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--dataset", choices=("meld", "ravdess", "default"), required=True)
    ap.add_argument("--ablation", nargs="+", default=["full"], choices=list(ABLATIONS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--lambda", dest="lam", type=float, default=None, help="speaker-loss weight (default: config's)")
    ap.add_argument("--epochs", type=int, help="default: the dataset's preset")
    ap.add_argument("--lr", type=float, help="default: the dataset's preset")
    ap.add_argument("--batch-size", type=int, default=TrainOptions.batch_size)
    ap.add_argument("--window", type=int, default=MLSANConfig.context_window, help="context window (turns)")
    ap.add_argument("--folds", type=int, default=5, help="RAVDESS: folds over actors")
    ap.add_argument("--limit", type=int, help="meld: only the first N dialogues of each split (quick checks)")
    ap.add_argument("--audio-features", default="compare", help="egemaps | compare")
    ap.add_argument("--text-encoder", default="all-MiniLM-L6-v2")
    ap.add_argument("--text-adapter", type=Path, help="LoRA adapter for the text encoder (python -m core.finetune_text)")
    ap.add_argument("--data", help="data root holding meld/ and ravdess/ (default: ../shared/data or $MLSAN_DATA)")
    ap.add_argument("--cache", help="feature cache directory (default: $MLSAN_CACHE or ~/.cache/mlsan-live/features)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--save", type=Path, help="default dataset: checkpoint directory to write")
    args = ap.parse_args(argv)
    try:
        return run(args, argv)
    except (FileNotFoundError, ValueError, RuntimeError) as e:  # bad data path, features, device: one line
        print(f"core.train: {e}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    console = Console()
    device = init_distributed() or resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = dict(PRESETS[args.dataset][1])
    preset.update({k: v for k, v in (("epochs", args.epochs), ("lr", args.lr)) if v is not None})
    opts = TrainOptions(batch_size=args.batch_size, **preset)
    t0 = time.time()
    if args.dataset == "meld":
        res = run_meld(args, opts, device, console)
    elif args.dataset == "ravdess":
        res = run_ravdess(args, opts, device, console)
    else:
        from core.default_model import train_default

        return train_default(args, opts, device, console)
    res["seconds"] = round(time.time() - t0, 1)
    res["command"] = "python -m core.train " + " ".join(argv if argv is not None else sys.argv[1:])
    summarize(res, console)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1))
        console.print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
