"""The shipped default checkpoint: MELD (text + speakers) and RAVDESS (audio + voice + speakers).

`make train` runs two stages: `python -m core.finetune_text` (LoRA adapters of the text encoder),
then `python -m core.train --dataset default --text-adapter ... --save models/default`. Model
selection uses MELD dev and two RAVDESS actors held out of training (one male, one female). The
visual branch has no labelled face data here: the checkpoint records it as untrained
(`trained_modalities`), and the live engine must mask it (see docs/MODEL_CARD.md).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from core.checkpoint import save_checkpoint
from core.metrics import score
from core.training import TrainOptions, fit, predict

TEXT_ADAPTER_NAME = "text_adapter.safetensors"  # LoRA adapter of the text encoder, inside the checkpoint dir
RAVDESS_DEV_ACTORS = (3, 8)  # held out for model selection: one male (odd), one female (even)


def train_default(args, opts: TrainOptions, device: torch.device, console: Console) -> int:
    from core.datasets import meld_conversations, ravdess_enrolled, ravdess_sampler, ravdess_table
    from core.train import PRESETS, feature_stack, make_config, progress_bar

    if args.save is None:
        console.print("core.train: --dataset default needs --save DIR (where to write the checkpoint)")
        return 2
    t0 = time.time()
    cache, embedder, audio, vp = feature_stack(args, console, need_audio=True)
    root = Path(args.data) if args.data else None
    ids: dict[str, int] = {}
    meld = {s: meld_conversations(s, embedder, cache, root and root / "meld", ids) for s in ("train", "dev", "test")}
    with progress_bar(console) as prog:
        table = ravdess_table(audio, vp, embedder, cache, root and root / "ravdess", prog)
    actors = sorted({c.actor for c in table.clips})
    train_actors = [a for a in actors if a not in RAVDESS_DEV_ACTORS]
    offset = len(ids) + 1000  # RAVDESS actor ids must not collide with MELD speaker ids
    rav_sampler = ravdess_sampler(table, train_actors, use_text=True)

    def shift_keys(convs):
        for c in convs:
            c.speaker_key = c.speaker_key + offset
        return convs

    def sampler(rng: np.random.Generator):
        return meld["train"] + shift_keys(rav_sampler(rng))

    rav_dev = shift_keys(ravdess_enrolled(table, RAVDESS_DEV_ACTORS, k=10, use_text=True))
    train_ref = sampler(np.random.default_rng(0))
    base = dict(PRESETS["default"][0], audio_dim=audio.dim, text_dim=embedder.dim, context_window=args.window)
    cfg = make_config(base, "full", args.lam)
    seed = args.seeds[0]
    with progress_bar(console) as prog:
        task = prog.add_task("default model", total=opts.epochs)
        model, hist = fit(cfg, train_ref, meld["dev"] + rav_dev, dataclasses.replace(opts, seed=seed), device,
                          on_epoch=lambda e, r: prog.update(task, advance=1, info=f"dev wF1 {r.get('dev_weighted_f1', 0):.2f}"),
                          train_sampler=sampler)
    y, p, _ = predict(model, meld["test"], device)
    meld_test = score(y, p)
    y, p, _ = predict(model, rav_dev, device)
    rav = score(y, p)
    console.print(meld_test.summary("meld test"))
    console.print(rav.summary("ravdess dev actors (k=10)"))
    extra = {
        "audio_features": audio.feature_set,
        "text_encoder": args.text_encoder,
        "trained_modalities": ["audio", "text"],
        "ravdess_text": True,
        "ravdess_train_actors": train_actors,
        "ravdess_dev_actors": list(RAVDESS_DEV_ACTORS),
        "seed": seed,
        "epochs_run": len(hist),
        "metrics": {"meld_test_weighted_f1": round(meld_test.weighted_f1, 2),
                    "ravdess_dev_uar_k10": round(rav.uar, 2)},
    }
    versions = {"audio": audio.version, "text": embedder.version, "voiceprint": vp.version}
    extra["train_seconds"] = round(time.time() - t0, 1)
    if args.text_adapter is not None:  # ship the adapter beside the weights
        args.save.mkdir(parents=True, exist_ok=True)
        target = args.save / TEXT_ADAPTER_NAME
        if args.text_adapter.resolve() != target.resolve():
            shutil.copyfile(args.text_adapter, target)
        extra["text_adapter"] = TEXT_ADAPTER_NAME
    save_checkpoint(args.save, model, feature_versions=versions, extra=extra)
    console.print(f"checkpoint written to {args.save} ({extra['train_seconds']:.0f} s)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"extra": extra, "history": hist, "config": cfg.to_dict()}, indent=1))
    return 0
