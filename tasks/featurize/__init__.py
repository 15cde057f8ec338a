"""Featurization: matminer featurizers applied to batches of structures."""

from matscreen.tasks.featurize.batch import (
    FeatureBatch,
    FeatureTable,
    featurize_batch,
    join_batches,
)
from matscreen.tasks.featurize.presets import (
    PRESETS,
    batch_size_for,
    build_featurizers,
    citations,
    config_hash,
    describe,
    feature_labels,
    featurization_config,
    preset_config,
    preset_hash,
)

__all__ = [
    "FeatureBatch",
    "FeatureTable",
    "PRESETS",
    "batch_size_for",
    "build_featurizers",
    "citations",
    "config_hash",
    "describe",
    "feature_labels",
    "featurization_config",
    "featurize_batch",
    "join_batches",
    "preset_config",
    "preset_hash",
]
