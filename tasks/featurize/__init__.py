"""Featurization: matminer featurizer presets applied to batches of structures."""

from matscreen.tasks.featurize.batch import (
    FeatureBatch,
    FeatureTable,
    featurize_batch,
    join_batches,
)
from matscreen.tasks.featurize.presets import (
    PRESETS,
    build_featurizers,
    citations,
    describe,
    feature_labels,
    preset_config,
    preset_hash,
)

__all__ = [
    "FeatureBatch",
    "FeatureTable",
    "PRESETS",
    "build_featurizers",
    "citations",
    "describe",
    "feature_labels",
    "featurize_batch",
    "join_batches",
    "preset_config",
    "preset_hash",
]
