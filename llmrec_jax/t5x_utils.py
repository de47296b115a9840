"""T5X's `utils` configuration classes under one importable name, for gin files.

A T5X gin file says `from t5x import utils` and binds `utils.DatasetConfig`,
`utils.SaveCheckpointConfig`, ...; ours say `from llmrec_jax import t5x_utils as utils` and bind
the same names (`gin_utils.register_t5x_configs`, called by the entry point before parsing,
registers them under gin's module name `utils`, so command-line bindings such as
`--gin.utils.SaveCheckpointConfig.period=100` find them too). Re-exports only: each class lives
with its concept.
"""
from llmrec_jax.checkpoints.checkpoint_config import CheckpointConfig  # noqa: F401
from llmrec_jax.checkpoints.checkpoint_config import RestoreCheckpointConfig  # noqa: F401
from llmrec_jax.checkpoints.checkpoint_config import SaveCheckpointConfig  # noqa: F401
from llmrec_jax.data.dataset_config import DatasetConfig  # noqa: F401

__all__ = ["CheckpointConfig", "DatasetConfig", "RestoreCheckpointConfig", "SaveCheckpointConfig"]
