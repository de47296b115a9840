"""`inference.restore` names what it cannot restore: a decoder-only (stream) run."""
import jax
import numpy as np
import pytest

from llmrec_jax import decoder_model
from llmrec_jax.network import T5Config, decoder_only
from llmrec_jax.systems.idgenrec import inference
from llmrec_jax.systems.idgenrec import stream_training
from llmrec_jax.systems.idgenrec.run_record import RunRecord


def test_decoder_only_run_fails_pointing_to_its_results(tmp_path):
  """A checkpoint written by the stream trainer itself (untrained: only its layout matters)."""
  sequences = [np.array([0, 1, 2, 3]), np.array([1, 2, 3, 4]), np.array([4, 3, 2, 1])]
  cfg = T5Config(vocab_size=16, emb_dim=8, num_heads=1, head_dim=8, num_encoder_layers=1,
                 num_decoder_layers=1, mlp_dim=16, logits_via_embedding=True)
  model = decoder_model.DecoderOnlyModel(decoder_only.DecoderOnlyTransformer(cfg), trie_softmax=True)
  params = model.get_initial_variables(jax.random.PRNGKey(0), {"decoder_input_tokens": (1, 4)})["params"]
  schedule = stream_training.StreamSchedule(epochs=1, tokens_per_batch=64, max_items=4, bucket_multiple=8)
  trainer = stream_training.StreamTrainer(model, params, sequences, [[3 + i] for i in range(5)],
                                          schedule, vocab_size=16, model_dir=str(tmp_path))
  trainer.save()
  RunRecord(data_dir="synthetic", rec_size="t5_tiny", vocab_size=16, template_set="llmrec_default",
            input_len=32, id_len=8, max_his=4, synthetic_users=3, synthetic_items=5, seed=0).save(str(tmp_path))
  with pytest.raises(ValueError) as e:
    inference.restore(str(tmp_path))
  message = str(e.value)
  assert "\n" not in message
  assert "decoder-only" in message and "encoder-decoder" in message
  assert str(tmp_path / "results.json") in message
