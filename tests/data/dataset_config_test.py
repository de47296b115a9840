"""T5X's DatasetConfig: bad values fail at construction, unknown tasks name their neighbours."""
import pytest

from llmrec_jax.data.dataset_config import DatasetConfig

GOOD = dict(mixture_or_task_name="llmrec_synthetic", task_feature_lengths={"inputs": 8, "targets": 4},
            split="train", batch_size=2, shuffle=True, seed=0)


def test_fields_and_defaults_are_t5x_s():
  cfg = DatasetConfig(**GOOD)
  assert (cfg.use_cached, cfg.pack, cfg.module, cfg.use_memory_cache, cfg.trim_output_features) == (
      False, False, None, True, True)
  assert cfg.name == "llmrec_synthetic" and cfg.task_feature_lengths == {"inputs": 8, "targets": 4}


@pytest.mark.parametrize("field,value", [
    ("mixture_or_task_name", ""), ("task_feature_lengths", {}), ("task_feature_lengths", {"inputs": 0}),
    ("task_feature_lengths", {"inputs": 8.0}), ("split", ""), ("batch_size", 0), ("batch_size", True),
    ("seed", "0"), ("shuffle", 1), ("use_custom_packing_ops", True), ("trim_output_features", False),
    ("module", ""),
])
def test_bad_values_fail_naming_the_field(field, value):
  with pytest.raises((ValueError, TypeError), match=field):
    DatasetConfig(**{**GOOD, field: value})


def test_module_is_imported_and_a_near_name_is_suggested():
  cfg = DatasetConfig(**{**GOOD, "module": "llmrec_jax.tasks.synthetic"})
  assert cfg.get_provider().name == "llmrec_synthetic"
  with pytest.raises(ValueError, match="did you mean llmrec_synthetic"):
    DatasetConfig(**{**GOOD, "mixture_or_task_name": "llmrec_synthetik"}).get_provider()
