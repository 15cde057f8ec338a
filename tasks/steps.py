"""The campaign's Prefect tasks.

Each is a plain function from this package wrapped by :func:`traced` (so it also reports
its run for provenance) and by ``@task`` (name, cache policy). matscreen keeps computed
features in its own store keyed by content hash, so Prefect's input-hash caching is off.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from matscreen.tasks.featurize.batch import featurize_packed
from matscreen.tasks.models.evaluation import evaluate_fitted, fit_and_evaluate
from matscreen.tasks.models.stability import hull_stability
from matscreen.tasks.rank.methods import rank_with
from matscreen.tasks.runinfo import traced
from matscreen.tasks.screen import predict_pool
from matscreen.tasks.sources.base import read_source
from matscreen.tasks.split import choose_split

ingest_source = task(name="ingest-source", cache_policy=NO_CACHE)(traced(read_source))
choose_split_task = task(name="choose-split", cache_policy=NO_CACHE)(traced(choose_split))
featurize_batch_task = task(name="featurize-batch", cache_policy=NO_CACHE)(traced(featurize_packed))
fit_surrogate_task = task(name="fit-surrogate", cache_policy=NO_CACHE)(traced(fit_and_evaluate))
evaluate_model_task = task(name="evaluate-model", cache_policy=NO_CACHE)(traced(evaluate_fitted))
rank_candidates_task = task(name="rank-candidates", cache_policy=NO_CACHE)(traced(rank_with))
predict_pool_task = task(name="predict-pool", cache_policy=NO_CACHE)(traced(predict_pool))
hull_task = task(name="hull-stability", cache_policy=NO_CACHE)(traced(hull_stability))
