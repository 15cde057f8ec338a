"""Ranking of candidates against a campaign's criteria.

``criteria`` ranks by the smallest margin of point predictions; ``probability`` turns
predictive distributions into the probability of meeting every criterion; ``methods``
ranks by margin, probability or Pareto front; ``diversity`` spreads the shortlist over
chemistries; ``validation`` measures a ranking against true values; ``suggest`` proposes
next experiments.
"""

from matscreen.tasks.rank.criteria import (
    add_intervals,
    candidate_frame,
    criterion_margin,
    meets_all,
    prediction_column,
    rank_candidates,
    screening_summary,
)
from matscreen.tasks.rank.diversity import (
    Shortlist,
    candidate_groups,
    select_shortlist,
    shortlist_with,
    shortlist_within,
)
from matscreen.tasks.rank.methods import rank_by_probability, rank_pareto, rank_with
from matscreen.tasks.rank.pareto import pareto_fronts
from matscreen.tasks.rank.probability import (
    class_probability_column,
    expected_funnel,
    lower_column,
    probability_column,
    quantile_column,
    std_column,
    success_probability,
    upper_column,
)
from matscreen.tasks.rank.suggest import suggest, suggest_with
from matscreen.tasks.rank.validation import screening_validation, true_hits

__all__ = [
    "add_intervals",
    "Shortlist",
    "candidate_frame",
    "candidate_groups",
    "class_probability_column",
    "criterion_margin",
    "expected_funnel",
    "lower_column",
    "meets_all",
    "pareto_fronts",
    "prediction_column",
    "probability_column",
    "quantile_column",
    "rank_by_probability",
    "rank_candidates",
    "rank_pareto",
    "rank_with",
    "screening_summary",
    "screening_validation",
    "select_shortlist",
    "shortlist_with",
    "shortlist_within",
    "std_column",
    "success_probability",
    "suggest",
    "suggest_with",
    "true_hits",
    "upper_column",
]
