"""What a trained model tells a reader: importance, parity and residual plots, model card."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from matscreen.tasks.models.surrogate import SurrogateModel

#: Features measured with every repeat: the most important of a one-shuffle first pass.
SHORTLISTED_FEATURES = 40


def permutation_importance(
    model: SurrogateModel,
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    repeats: int = 5,
    top: int | None = 20,
) -> list[dict[str, Any]]:
    """Permutation importance of each feature on held-out rows.

    The score is the negated MAE (regressors, two-stage models) or ROC-AUC (classifiers);
    a feature's importance is how much the score drops when its column is shuffled. A
    first pass shuffles every column once; the :data:`SHORTLISTED_FEATURES` columns with
    the largest drops are then shuffled ``repeats`` times, so a model of hundreds of
    features costs about a fifth of shuffling every column ``repeats`` times. The other
    columns keep their first-pass drop (``std`` 0).

    Returns
    -------
    list of dict
        ``feature``, ``importance`` (mean drop) and ``std``, most important first; the
        ``top`` first only (all when None).
    """
    from sklearn.metrics import get_scorer

    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    scoring = "roc_auc" if model.is_classifier else "neg_mean_absolute_error"
    if model.is_classifier and model.positive_at_most is not None:
        y = (y <= model.positive_at_most).astype(np.float64)
    scorer, estimator = get_scorer(scoring), model.fitted()
    rng = np.random.default_rng(seed)
    baseline = scorer(estimator, x, y)

    def drops(column: int, times: int) -> np.ndarray:
        shuffled = x.copy()
        out = np.empty(times)
        for i in range(times):
            shuffled[:, column] = rng.permutation(x[:, column])
            out[i] = baseline - scorer(estimator, shuffled, y)
        return out

    first = np.array([drops(c, 1)[0] for c in range(x.shape[1])])
    mean, std = first.copy(), np.zeros_like(first)
    if repeats > 1:
        for column in np.argsort(-first, kind="stable")[:SHORTLISTED_FEATURES]:
            measured = drops(int(column), repeats)
            mean[column], std[column] = measured.mean(), measured.std()
    order = np.argsort(-mean, kind="stable")
    rows = [
        {
            "feature": model.feature_labels[i],
            "importance": float(mean[i]),
            "std": float(std[i]),
        }
        for i in order
    ]
    return rows if top is None else rows[:top]


def _figure_bytes(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def parity_plot(
    target: str,
    unit: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> bytes:
    """A PNG of predicted against true values on the held-out rows, with intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 5))
    if lower is not None and upper is not None:
        axes.vlines(y_true, lower, upper, color="0.8", linewidth=0.8, label="interval")
    axes.scatter(y_true, y_pred, s=8, alpha=0.6, label="held-out rows")
    low = float(np.nanmin([np.min(y_true), np.min(y_pred)]))
    high = float(np.nanmax([np.max(y_true), np.max(y_pred)]))
    axes.plot([low, high], [low, high], color="k", linewidth=0.8)
    axes.set_xlabel(f"true {target} ({unit})" if unit else f"true {target}")
    axes.set_ylabel(f"predicted {target} ({unit})" if unit else f"predicted {target}")
    axes.set_title(f"{target}: held-out parity")
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    data = _figure_bytes(figure)
    plt.close(figure)
    return data


def residual_plot(target: str, unit: str, y_true: np.ndarray, y_pred: np.ndarray) -> bytes:
    """A PNG of residuals (true - predicted) against predictions, and their histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    residual = np.asarray(y_true) - np.asarray(y_pred)
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    left.scatter(y_pred, residual, s=8, alpha=0.6)
    left.axhline(0.0, color="k", linewidth=0.8)
    left.set_xlabel(f"predicted {target}")
    left.set_ylabel(f"residual ({unit})" if unit else "residual")
    right.hist(residual, bins=40)
    right.set_xlabel(f"residual ({unit})" if unit else "residual")
    right.set_ylabel("rows")
    figure.suptitle(f"{target}: held-out residuals")
    figure.tight_layout()
    data = _figure_bytes(figure)
    plt.close(figure)
    return data


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def model_card(
    model: SurrogateModel,
    data: dict[str, Any],
    split: dict[str, Any],
    held_out: dict[str, Any],
    baselines: Sequence[dict[str, Any]],
    importance: Sequence[dict[str, Any]],
) -> str:
    """A Markdown model card: data, split, metrics, intended use and limitations.

    Parameters
    ----------
    model
        The trained model.
    data
        ``source`` (file), ``sha256``, ``n_rows``, ``unit`` and ``featurization`` (preset
        and feature count).
    split
        ``method``, ``seed``, ``test_fraction``, ``n_train``, ``n_test``.
    held_out
        Held-out metrics of the model (and ``coverage``, ``mean_width``, ``level``).
    baselines
        Held-out metrics of the baselines.
    importance
        Permutation importance rows.
    """
    unit = data.get("unit", "")
    metric_names = (
        ["precision", "recall", "f1", "roc_auc"] if model.is_classifier else ["mae", "rmse", "r2"]
    )
    rows = [{"model": f"{model.algorithm} ({model.kind})", **held_out}]
    rows += [{"model": b["name"], **b} for b in baselines]
    interval = model.calibration
    lines = [
        f"# Model card: {model.target}",
        "",
        "## Model",
        f"- target: `{model.target}`" + (f" ({unit})" if unit else ""),
        f"- kind: {model.kind}; algorithm: {model.algorithm}",
        f"- parameters: `{model.params}`",
        f"- fitted with: {', '.join(f'{k} {v}' for k, v in sorted(model.versions.items()))}",
        "",
        "## Data",
        f"- source: {data.get('source', '')} (sha256 {data.get('sha256', '')})",
        f"- rows: {data.get('n_rows', '')}; features: {len(model.feature_labels)} "
        f"({data.get('featurization', '')})",
        "",
        "## Split",
        f"- held-out set chosen before any fitting: {split['method']} split, seed "
        f"{split['seed']}, test fraction {split['test_fraction']}",
        f"- {split['n_train']} training rows, {split['n_test']} held-out rows; the "
        "held-out rows were never seen by the cross-validation, the search or the fit",
    ]
    if model.search:
        lines.append(
            f"- hyperparameters: {model.search['method']} search over "
            f"{model.search['candidates']} candidates by cross-validation on the training "
            f"rows; best `{model.search['best_params']}`"
        )
    lines += ["", "## Held-out metrics", "", _table(rows, ["model", *metric_names]), ""]
    if "gap_classifier" in held_out:
        names = ["precision", "recall", "f1", "roc_auc", "positives"]
        lines += [
            "Metal / non-metal stage (class 1: a gap), held out:",
            "",
            _table([held_out["gap_classifier"]], names),
            "",
        ]
    if model.cv_metrics:
        cv = {k: v for k, v in model.cv_metrics.items() if k in metric_names}
        lines += ["Cross-validated on the training rows:", "", _table([cv], list(cv)), ""]
    if interval is not None:
        lines += [
            "## Uncertainty",
            f"- conformal intervals ({interval['method']}), level {held_out.get('level')}: "
            f"held-out coverage {_fmt(held_out.get('coverage', math.nan))}, mean width "
            f"{_fmt(held_out.get('mean_width', math.nan))}",
            "",
        ]
    if importance:
        lines += [
            "## Permutation importance (held-out rows)",
            "",
            _table(importance[:10], ["feature", "importance", "std"]),
            "",
        ]
    lines += [
        "## Intended use",
        f"- ranking candidate structures by predicted {model.target} before a DFT "
        "calculation, with the interval as the spread of the prediction",
        "",
        "## Limitations",
        "- trained on one data source: predictions for chemistries or structure types far "
        "from the training rows are extrapolations, and the intervals are calibrated for "
        "rows like the training ones only",
        "- the labels are DFT values with the source's own functional and errors; the "
        "model reproduces them, not experiment",
        "- interval coverage holds on average over rows, not for each row; with many "
        "identical labels (metals at 0 eV) it exceeds the level",
    ]
    return "\n".join(lines) + "\n"
