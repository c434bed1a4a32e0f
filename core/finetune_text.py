"""Fine-tune LoRA adapters of the text encoder on MELD emotions: `python -m core.finetune_text --out FILE`.

Stage 1 of the text pipeline: the frozen all-MiniLM-L6-v2 gets rank-r adapters on its attention
and feed-forward layers, trained with a linear emotion head on the utterance embedding (MELD train,
best epoch by MELD dev weighted F1; test is never looked at). The adapters are saved as
safetensors and used by `TextEmbedder(adapter=FILE)`; ML-SAN then trains on those embeddings.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from core.data.meld import load_meld
from core.features.lora import adapter_state, inject, save_adapter
from core.features.text import TextEmbedder
from core.labels import NUM_EMOTIONS
from core.metrics import score
from core.training import label_weights, seed_everything


def utterances(split: str, root: Path | None) -> tuple[list[str], np.ndarray]:
    dialogues = load_meld(split, root)
    return [u.text for d in dialogues for u in d.utterances], np.array([u.label for d in dialogues for u in d.utterances])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="adapter file to write (.safetensors)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=5e-4, help="adapter learning rate (the head uses 10x)")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, help="data root holding meld/")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    console = Console()
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    root = args.data / "meld" if args.data else None
    train_x, train_y = utterances("train", root)
    dev_x, dev_y = utterances("dev", root)

    embedder = TextEmbedder()
    embedder.load()
    st = embedder._model
    params = inject(st[0].auto_model, args.rank, args.alpha)
    head = nn.Linear(embedder.dim, NUM_EMOTIONS)
    optim = torch.optim.AdamW([{"params": params, "lr": args.lr}, {"params": head.parameters(), "lr": 10 * args.lr}],
                              weight_decay=0.01)
    loss_fn = nn.CrossEntropyLoss(weight=label_weights(train_y, NUM_EMOTIONS))
    rng = np.random.default_rng(args.seed)

    def embed(texts: list[str]) -> torch.Tensor:
        feats = {k: v for k, v in st.tokenize(texts).items()}
        return st(feats)["sentence_embedding"]

    def dev_score() -> float:
        st.eval()
        preds = []
        with torch.no_grad():
            for i in range(0, len(dev_x), 128):
                preds.append(head(embed(dev_x[i:i + 128])).argmax(-1).numpy())
        return score(dev_y, np.concatenate(preds)).weighted_f1

    best, best_state, t0 = -1.0, None, time.time()
    n_batches = (len(train_x) + args.batch_size - 1) // args.batch_size
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as prog:
        for epoch in range(args.epochs):
            task = prog.add_task(f"LoRA epoch {epoch + 1}/{args.epochs}", total=n_batches)
            st.train()
            order = rng.permutation(len(train_x))
            for b in range(n_batches):
                idx = order[b * args.batch_size:(b + 1) * args.batch_size]
                logits = head(embed([train_x[i] for i in idx]))
                loss = loss_fn(logits, torch.as_tensor(train_y[idx]))
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
                prog.advance(task)
            d = dev_score()
            console.print(f"epoch {epoch + 1}: dev weighted_f1={d:.2f} ({time.time() - t0:.0f} s)")
            if d > best:
                best, best_state = d, {k: v.clone() for k, v in adapter_state(st[0].auto_model).items()}
    st[0].auto_model.load_state_dict(best_state, strict=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_adapter(st[0].auto_model, args.out, args.rank, args.alpha)
    console.print(f"best dev weighted_f1={best:.2f}; adapter written to {args.out} "
                  f"({args.out.stat().st_size / 1024:.0f} kB, {time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
