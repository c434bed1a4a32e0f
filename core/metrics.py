"""Evaluation metrics for emotion recognition: weighted F1, UAR, per-class F1, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, recall_score

from core.labels import EMOTIONS


@dataclass(frozen=True)
class Scores:
    weighted_f1: float  # F1 averaged over classes weighted by support, in percent
    uar: float  # unweighted average recall over the classes present in the truth, in percent
    accuracy: float  # in percent
    per_class_f1: dict[str, float]  # label -> F1 in percent
    confusion: np.ndarray  # (C, C) counts, rows = truth, columns = prediction
    n: int  # number of scored turns

    def summary(self, name: str) -> str:
        return f"{name} weighted_f1={self.weighted_f1:.2f} uar={self.uar:.2f} acc={self.accuracy:.2f} n={self.n}"


def score(y_true: np.ndarray, y_pred: np.ndarray, labels: tuple[str, ...] = EMOTIONS) -> Scores:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError("need equally long, non-empty label and prediction arrays")
    idx = np.arange(len(labels))
    present = np.unique(y_true)
    f1 = f1_score(y_true, y_pred, labels=idx, average=None, zero_division=0)
    return Scores(
        weighted_f1=100 * f1_score(y_true, y_pred, labels=idx, average="weighted", zero_division=0),
        uar=100 * recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0),
        accuracy=100 * float((y_true == y_pred).mean()),
        per_class_f1={lab: 100 * float(v) for lab, v in zip(labels, f1)},
        confusion=confusion_matrix(y_true, y_pred, labels=idx),
        n=int(y_true.size),
    )


def plot_confusion(scores: Scores, path: str | Path, title: str, labels: tuple[str, ...] = EMOTIONS) -> Path:
    """Save the row-normalised confusion matrix (with counts) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = scores.confusion
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(f"{title}\nweighted F1 {scores.weighted_f1:.2f}, UAR {scores.uar:.2f}")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def format_table(scores: Scores, labels: tuple[str, ...] = EMOTIONS) -> str:
    """Per-class F1 and the confusion matrix as plain text."""
    w = max(len(x) for x in labels) + 1
    lines = ["per-class F1: " + "  ".join(f"{lab}={scores.per_class_f1[lab]:.1f}" for lab in labels),
             "confusion (rows true, cols predicted):",
             " " * w + "".join(f"{lab[:5]:>7}" for lab in labels)]
    for lab, row in zip(labels, scores.confusion):
        lines.append(f"{lab:<{w}}" + "".join(f"{v:>7d}" for v in row))
    return "\n".join(lines)


def mean_std(values) -> str:
    """'mean ± sample std' (just the mean for one value)."""
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.2f} ± {v.std(ddof=1):.2f}" if len(v) > 1 else f"{v.mean():.2f}"


def paired_p(reference, values) -> str:
    """Paired t-test p-value of `values` against `reference` (same seeds, same order), as text:
    'identical' when the runs agree exactly, '–' when they cannot be paired."""
    from scipy.stats import ttest_rel

    a, b = np.asarray(reference, float), np.asarray(values, float)
    if len(a) != len(b) or len(a) < 2:
        return "–"
    if np.allclose(a, b):
        return "identical"
    return f"{ttest_rel(a, b).pvalue:.3f}"
