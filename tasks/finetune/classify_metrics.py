"""Classification metrics of the classify stage: confusion matrix, accuracy, per-label and macro F1, and the plot.

Conventions (sklearn's): rows of the confusion matrix are the true labels, columns the predicted ones; F1 of a label
is 2·TP / (2·TP + FP + FN), taken as 0 when TP is 0 (precision or recall is then 0 or undefined); macro-F1 is the
unweighted mean over every label of the label set, so a rare label counts as much as a frequent one.
"""

from __future__ import annotations

from pathlib import Path


def confusion_matrix(truth: list[int], predicted: list[int], n_labels: int) -> list[list[int]]:
    matrix = [[0] * n_labels for _ in range(n_labels)]
    for t, p in zip(truth, predicted, strict=True):
        matrix[t][p] += 1
    return matrix


def classification_metrics(matrix: list[list[int]], labels: list[str]) -> dict[str, float]:
    """Accuracy, per-label F1 and macro-F1 from a confusion matrix (rows = true, columns = predicted)."""
    total = sum(map(sum, matrix))
    f1s = {}
    for i, label in enumerate(labels):
        tp, predicted, actual = matrix[i][i], sum(row[i] for row in matrix), sum(matrix[i])
        f1s[label] = 2 * tp / (predicted + actual) if tp else 0.0  # = 2PR/(P+R), 0 when P or R is 0 or undefined
    metrics = {"cls_accuracy": sum(matrix[i][i] for i in range(len(labels))) / max(1, total)}
    metrics["cls_macro_f1"] = sum(f1s.values()) / max(1, len(labels))
    return metrics | {f"cls_f1_{label}": f1 for label, f1 in f1s.items()} | {"cls_n": float(total)}


def plot_confusion(matrix: list[list[int]], labels: list[str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display on a worker
    import matplotlib.pyplot as plt

    size = 1.5 + 0.6 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xlabel="predicted", ylabel="true")
    ax.set_xticklabels(labels, rotation=45, ha="right")
    ax.set_yticklabels(labels)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", color="black")
    fig.colorbar(image)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
