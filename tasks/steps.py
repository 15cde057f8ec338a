"""The campaign's Prefect tasks.

Each is a plain function from this package wrapped by :func:`traced` (so it also reports
its run for provenance) and by ``@task`` (name, cache policy). matscreen keeps computed
features in its own store keyed by content hash, so Prefect's input-hash caching is off.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import BaseAnnotation

from matscreen.tasks.featurize.batch import featurize_packed
from matscreen.tasks.models.evaluation import evaluate_fitted, fit_and_evaluate
from matscreen.tasks.models.stability import hull_stability
from matscreen.tasks.rank.methods import rank_with
from matscreen.tasks.runinfo import traced
from matscreen.tasks.screen import predict_pool
from matscreen.tasks.sources.base import read_source
from matscreen.tasks.split import choose_split

F = TypeVar("F", bound=Callable[..., Any])


class Payload:
    """A task argument that Prefect passes along without looking inside.

    Prefect walks every task argument for futures (dependency tracking, the task runner's
    future conversion, the Dask client's input collection); it descends into lists,
    tuples, dicts and dataclasses but not into an object like this one. The campaign's
    task runner wraps each ``opaque``-annotated argument in one (an annotation itself
    reaches the worker as a plain tuple), and the task unwraps it where it runs.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def plain_arguments(fn: F) -> F:
    """Call ``fn`` with :class:`Payload` and ``opaque``/``quote`` arguments unwrapped."""

    def plain(value: Any) -> Any:
        if isinstance(value, Payload):
            return value.value
        return value.unwrap() if isinstance(value, BaseAnnotation) else value

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        return fn(*map(plain, args), **{name: plain(v) for name, v in kwargs.items()})

    return call  # type: ignore[return-value]


def _task(name: str, fn: Callable[..., Any]) -> Any:
    return task(name=name, cache_policy=NO_CACHE)(plain_arguments(traced(fn)))


ingest_source = task(name="ingest-source", cache_policy=NO_CACHE)(traced(read_source))
choose_split_task = _task("choose-split", choose_split)
featurize_batch_task = _task("featurize-batch", featurize_packed)
fit_surrogate_task = _task("fit-surrogate", fit_and_evaluate)
evaluate_model_task = _task("evaluate-model", evaluate_fitted)
rank_candidates_task = _task("rank-candidates", rank_with)
predict_pool_task = _task("predict-pool", predict_pool)
hull_task = _task("hull-stability", hull_stability)
