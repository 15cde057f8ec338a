"""Ranking of candidates against a campaign's criteria."""

from matscreen.tasks.rank.criteria import (
    candidate_frame,
    criterion_margin,
    meets_all,
    prediction_column,
    rank_candidates,
    screening_summary,
)

__all__ = [
    "candidate_frame",
    "criterion_margin",
    "meets_all",
    "prediction_column",
    "rank_candidates",
    "screening_summary",
]
