"""The ``criteria``, ``ranking`` and ``screen`` sections: what a hit is, how to rank."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    model_validator,
)

from matscreen.tasks.spec.base import Strict


class CriterionSpec(Strict):
    """A range a candidate's predicted property must fall in."""

    property: str
    min: float | None = None
    max: float | None = None
    unit: str

    @model_validator(mode="after")
    def _bounded(self) -> CriterionSpec:
        if self.min is None and self.max is None:
            raise ValueError("give 'min', 'max' or both")
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"'min' ({self.min}) must be below 'max' ({self.max})")
        return self


class DiversitySpec(Strict):
    """How the shortlist is spread over chemistries.

    ``by`` groups candidates by chemical system (``O-Sr-Ti``) or by prototype (the
    candidate's ``prototype`` where its table has one, else its anonymized formula,
    ``ABC3``), and ``cap`` is the most candidates of one group the shortlist takes.
    ``mmr_lambda`` picks by maximal marginal relevance on the candidates' feature vectors:
    each next pick maximizes λ·score − (1 − λ)·(similarity to the closest pick so far), so
    1 ranks by score alone and 0 by dissimilarity alone; ``metric`` is the distance between
    standardized feature vectors. Both may be given.
    """

    by: Literal["chemsys", "prototype", "none"] = "none"
    cap: int | None = Field(default=None, ge=1)
    mmr_lambda: float | None = Field(default=None, ge=0.0, le=1.0)
    metric: Literal["euclidean", "cosine"] = "euclidean"

    @model_validator(mode="after")
    def _cap_with_groups(self) -> DiversitySpec:
        if self.by != "none" and self.cap is None:
            raise ValueError(f"'by: {self.by}' needs a 'cap' (candidates per group)")
        if self.by == "none" and self.cap is not None:
            raise ValueError("'cap' needs 'by' (chemsys or prototype)")
        return self


class SuggestSpec(Strict):
    """Next experiments: ``n`` candidates by P(success) + ``kappa`` · (outcome entropy)."""

    n: int = Field(ge=1)
    kappa: float = Field(default=1.0, ge=0.0)
    exclude_shortlist: bool = True


class RankingSpec(Strict):
    """How held-out candidates are ranked, and the shortlist spread.

    ``method``: ``probability`` (the default: probability of meeting every criterion,
    from the models' prediction intervals), ``margin`` (smallest distance of a point
    prediction to a bound; for models trained with ``interval: none``) or ``pareto``
    (non-dominated fronts of the per-criterion ``pareto_objective``, best front first).
    ``interval_level`` is the coverage of the intervals the probabilities are computed
    from; by default each model's own.
    """

    method: Literal["probability", "margin", "pareto"] = "probability"
    pareto_objective: Literal["probability", "margin"] = "probability"
    interval_level: float | None = Field(default=None, gt=0.0, lt=1.0)
    diversity: DiversitySpec = DiversitySpec()
    suggest: SuggestSpec | None = None

    @model_validator(mode="after")
    def _objective_for_pareto(self) -> RankingSpec:
        # The default is accepted with any method, so that a recorded (fully dumped) spec
        # loads again; a non-default objective only makes sense for Pareto ranking.
        if self.pareto_objective != "probability" and self.method != "pareto":
            raise ValueError(f"'pareto_objective' applies to method 'pareto', not {self.method!r}")
        return self

    def needs_uncertainty(self) -> str | None:
        """The key that needs prediction intervals (``method``, ``suggest``), if any."""
        if self.method == "probability" or (
            self.method == "pareto" and self.pareto_objective == "probability"
        ):
            return "method"
        return "suggest" if self.suggest is not None else None


class ScreenSpec(Strict):
    """How the candidates of ``screen`` sources are streamed through the screen.

    ``chunk_size`` records are read, recorded, featurized, predicted and placed on the
    hull at a time; memory grows with it, not with the number of candidates. (On 60,000
    double perovskites, 10,000 against 20,000: peak memory of all processes 3.1 against
    3.5 GB, wall time 265 against 260 s.)
    """

    chunk_size: int = Field(default=10_000, ge=1, le=1_000_000)
