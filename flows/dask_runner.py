"""Prefect's Dask task runner, submitting each task run under a fresh key, and passing
``opaque``-annotated arguments to the workers without walking them."""

from __future__ import annotations

from typing import Any

from prefect.utilities.annotations import opaque
from prefect_dask import DaskTaskRunner
from prefect_dask.task_runners import PrefectDaskFuture

from matscreen.tasks.steps import Payload


class FreshKeyDaskTaskRunner(DaskTaskRunner):
    """A DaskTaskRunner that submits without hashing the call.

    Dask names a submitted call by hashing its function and arguments unless the call is
    marked impure. A Prefect task run is unique anyway (it carries a fresh task run id),
    so the hash buys nothing; it costs the flow's process CPU — about half a second per
    featurization batch (the batch's structures are pickled to be hashed) — while the
    workers compete for the same cores. Here every call gets a fresh key instead.

    Prefect walks every argument of a task run twice looking for futures (dependency
    tracking, and this runner's future conversion), and the Dask client a third time; for
    the training arrays, a model and a candidate table that walk costs seconds. An
    argument wrapped in ``opaque`` is skipped by the first walk and handed on in a
    :class:`~matscreen.tasks.steps.Payload`, which no walk enters; the task unwraps it
    where it runs (:func:`matscreen.tasks.steps.plain_arguments`). It must hold no futures.
    """

    def submit(  # type: ignore[override]
        self,
        task: Any,
        parameters: dict[str, Any],
        wait_for: Any = None,
        dependencies: Any = None,
    ) -> PrefectDaskFuture[Any]:
        if not self._started:
            raise RuntimeError("The task runner must be started before submitting work.")
        plain = {
            name: Payload(value.unwrap())
            if isinstance(value, opaque)
            else self._optimize_futures(value)
            for name, value in parameters.items()
        }
        future = self.client.submit(
            task,
            parameters=plain,
            wait_for=self._optimize_futures(wait_for) if wait_for else None,
            dependencies=dependencies,
            return_type="state",
            pure=False,
        )
        return PrefectDaskFuture(wrapped_future=future, task_run_id=future.task_run_id)
