"""Model-core demo: ML-SAN calibrating to speakers it has never seen, one turn at a time.

Trains two small models on the planted-speaker task of core/synthetic.py (every speaker shifts
and scales their "voice" features; emotion is only recoverable after per-speaker calibration):
full ML-SAN and the same model with all speaker conditioning off. Then streams a new conversation
with three new speakers through the incremental `step` API and shows each turn as it arrives.
This is what `make demo` runs until the live pipeline (issue 4) lands.
"""

from __future__ import annotations

import argparse

import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from core.labels import EMOTIONS
from core.model import MLSANConfig, TurnFeatures
from core.synthetic import DIM, make_conversations, train

BASE = dict(audio_dim=DIM, visual_dim=4, text_dim=8, voiceprint_dim=8, d_model=32, d_speaker=16, n_heads=4,
            n_layers=1, dropout=0.0, context_window=8)
OFF = dict(use_film=False, use_gating=False, use_speaker_loss=False, speaker_aware_context=False)
EPOCHS = 30


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    console = Console()
    torch.set_num_threads(1)
    models = {}
    with Progress(console=console) as progress:
        for name, extra in (("ML-SAN", {}), ("no speaker conditioning", OFF)):
            task = progress.add_task(f"training {name}", total=EPOCHS)
            models[name] = train(MLSANConfig(**BASE, **extra), args.seed, EPOCHS,
                                 on_epoch=lambda t=task: progress.advance(t))

    conv = make_conversations(1, turns=16, seed=99_999, cfg=models["ML-SAN"].cfg)
    table = Table(title="A new conversation, three never-seen speakers, streamed turn by turn")
    for col in ("turn", "speaker", "true", "ML-SAN", "conf", "gate audio/text", "no-speaker model"):
        table.add_column(col)
    states = {name: m.init_state() for name, m in models.items()}
    for t in range(conv.speaker.shape[1]):
        turn = TurnFeatures(speaker=int(conv.speaker[0, t]), audio=conv.audio[0, t], text=conv.text[0, t])
        outs = {}
        for name, m in models.items():
            outs[name], states[name] = m.step(turn, states[name])
        full = outs["ML-SAN"]
        pred, conf = int(full.probs.argmax()), float(full.probs.max())
        truth, other = int(conv.labels[0, t]), int(outs["no speaker conditioning"].probs.argmax())

        def mark(p: int) -> str:
            return f"[green]{EMOTIONS[p]}[/]" if p == truth else f"[red]{EMOTIONS[p]}[/]"

        table.add_row(str(t), f"S{turn.speaker}", EMOTIONS[truth], mark(pred), f"{conf:.2f}",
                      f"{full.gates[0]:.2f} / {full.gates[2]:.2f}", mark(other))
    console.print(table)

    test = make_conversations(128, seed=10_000 + args.seed, cfg=models["ML-SAN"].cfg)
    with torch.no_grad():
        for name, m in models.items():
            acc = float((m(test).logits.argmax(-1) == test.labels).float().mean())
            console.print(f"{name:>24}: accuracy {acc:.3f} on 128 new conversations (chance 0.25)")
    console.print("[dim]The live pipeline (`python run_live.py --camera 0`) arrives with issue 4.[/]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
