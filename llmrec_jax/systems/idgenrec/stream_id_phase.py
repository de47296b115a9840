"""IDGenRec's ID phase for the decoder-only recommender: the generator learns through the frozen
recommender via soft IDs spliced into whole item streams.

For a batch of users' training streams, the ID generator reads the text of every item in a
stream and, fed the item's current ID tokens (teacher forcing), yields per-token distributions
`W`; `W @ E` (E the recommender's token embedding) replaces the input embedding at each
position where the stream's input holds one of that item's ID tokens, so with one-hot weights
the input equals the rec phase's token for token. The frozen recommender's loss on the stream's
(hard) targets then trains the generator only. Start tokens and the EOS separators stay hard.

`IdStreamBatcher.batch` renders the generator rows and slots beside the usual stream keys;
`stream_id_phase_loss` is the loss (argument order fits `trainer.train_step(state, batch, rng,
rec_params, trie)`); `StreamAlternation` runs IDGenRec's schedule with a `StreamTrainer`:
rec epochs, then an ID phase through the frozen recommender and new IDs from the generator,
round after round.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np

from llmrec_jax import decoder_model, models
from llmrec_jax.checkpoints import fail_safe, layout, orbax_t5x
from llmrec_jax.data import item_streams, splits
from llmrec_jax.decoding import trie_walk
from llmrec_jax.systems.idgenrec import alternating, id_phase, stream_training
from llmrec_jax.training import loop as training_loop, stopping
from llmrec_jax.training import optimizers
from llmrec_jax.training import trainer as trainer_lib
from llmrec_jax.training.train_state import TrainState

log = logging.getLogger(__name__)

Array = jax.Array


class IdStreamBatcher:
  """ID-phase batches over the last `max_items` training items of each user.

  Args:
    item_text_NxL: int32 [N, text_len] every item's text tokens (+ EOS), zero padded.
    item_tokens: current ID tokens per item (no EOS).
    choices: the current trie's `TrieChoices` (branch rows of the trie loss).
    max_items: H, items per stream (also the generator rows per user).
    eos_id: the token that ends each item ID.
  """

  def __init__(self, item_text_NxL: np.ndarray, item_tokens: Sequence[Sequence[int]],
               choices: item_streams.TrieChoices, *, max_items: int, eos_id: int = 1):
    self.text_NxL = np.asarray(item_text_NxL, np.int32)
    self.item_tokens = [list(t) for t in item_tokens]
    self.choices, self.h, self.eos_id = choices, max_items, eos_id
    self.c = max(len(t) for t in self.item_tokens) + 1  # ID tokens + EOS

  def batch(self, histories: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Keys: stream keys (`decoder_*`, `branch_*`, `num_items`), `item_text_tokens` [B*H, L],
    `item_id_inputs` / `item_id_targets` [B*H, C], `soft_slot` [B, T] (k * C + t at inputs
    holding token t of the row's k-th item, -1 elsewhere)."""
    histories = [np.asarray(h)[-self.h:] for h in histories]
    streams = [item_streams.user_stream(h, self.item_tokens, self.eos_id) for h in histories]
    nodes = [self.choices.stream_nodes(h) for h in histories]
    length = item_streams.padded_length(max(s.size for s in streams), 16)
    rows = len(histories)
    out = item_streams.make_batch(streams, length, rows, self.choices, nodes)
    slot_BxT = np.full((rows, length), -1, np.int32)
    items_BxH = np.full((rows, self.h), -1, np.int64)
    for b, h in enumerate(histories):
      items_BxH[b, :len(h)] = h
      pos = 1  # input position p holds target p - 1; position 0 is the start token
      for k, item in enumerate(h):
        n = len(self.item_tokens[int(item)])
        slot_BxT[b, pos:pos + n] = k * self.c + np.arange(n)
        pos += n + 1  # the EOS separator stays a hard token
    items_N = items_BxH.reshape(-1)
    real_N = items_N >= 0
    text_NxL = np.where(real_N[:, None], self.text_NxL[np.maximum(items_N, 0)], 0)
    targets_NxC = np.zeros((items_N.size, self.c), np.int32)
    for n, item in enumerate(items_N):
      if item >= 0:
        tokens = self.item_tokens[int(item)] + [self.eos_id]
        targets_NxC[n, :len(tokens)] = tokens
    inputs_NxC = np.zeros_like(targets_NxC)
    inputs_NxC[:, 1:] = targets_NxC[:, :-1]
    out.update(item_text_tokens=text_NxL.astype(np.int32), item_id_inputs=inputs_NxC,
               item_id_targets=targets_NxC, soft_slot=slot_BxT)
    return out


def stream_id_phase_loss(gen_params: Any, batch: Mapping[str, Array], dropout_rng: Optional[Array],
                         rec_params: Any, trie: trie_walk.TrieArrays, *,
                         gen_model: models.EncoderDecoderModel,
                         rec_model: decoder_model.DecoderOnlyModel,
                         mixing: id_phase.Mixing = id_phase.Mixing.SOFTMAX
                         ) -> tuple[Array, dict[str, Array]]:
  """The frozen recommender's trie loss on streams whose ID inputs are the generator's soft IDs;
  differentiate w.r.t. `gen_params` only."""
  rec_params = jax.lax.stop_gradient(rec_params)
  logits_NxCxV = id_phase.generator_logits_teacher_forced(
      gen_model, gen_params, batch["item_text_tokens"], batch["item_id_inputs"],
      batch["item_id_targets"], dropout_rng)
  embedding_VxD = rec_params["token_embedder"]["embedding"]
  soft_NxCxD = id_phase.soft_embeddings(id_phase.mixing_weights(logits_NxCxV, mixing),
                                        embedding_VxD)
  tokens_BxT = batch["decoder_input_tokens"]
  b = tokens_BxT.shape[0]
  n, c, d = soft_NxCxD.shape
  inputs_BxTxD = id_phase.splice(embedding_VxD[tokens_BxT], soft_NxCxD.reshape(b, (n // b) * c, d),
                                 batch["soft_slot"])
  return rec_model.trie_loss(rec_params, batch, None, trie, input_embeddings=inputs_BxTxD)


@dataclasses.dataclass(frozen=True)
class StreamIdSchedule:
  """IDGenRec's alternation for the decoder-only recommender.

  Attributes:
    rounds: rec phases; an ID phase and new IDs follow every one but the last. The
      `StreamSchedule.epochs` are split evenly over the rounds.
    id_steps: generator updates per ID phase.
    id_batch_size: users per ID-phase batch.
    id_lr: AdamW learning rate of the generator (constant).
    id_max_items: most recent training items per ID-phase stream (generator rows per user).
    mixing: soft-ID mixing weights (see `id_phase.Mixing`).
  """
  rounds: int = 1
  id_steps: int = 100
  id_batch_size: int = 16
  id_lr: float = 1e-4
  id_max_items: int = 10
  mixing: str = "SOFTMAX"

  def __post_init__(self):
    if self.rounds < 1 or self.id_steps < 0 or self.id_batch_size < 1 or self.id_max_items < 1:
      raise ValueError(f"StreamIdSchedule: need rounds >= 1, id_steps >= 0, id_batch_size >= 1, "
                       f"id_max_items >= 1; got {self}")
    id_phase.Mixing(self.mixing)


class StreamAlternation:
  """Rec phases of a `StreamTrainer` alternating with ID phases of the generator.

  Args:
    rec: the recommender's trainer (holds the current IDs; its epochs are split over rounds).
    gen_model, gen_params: the ID generator.
    assign: gen_params -> item ID strings (unique), e.g. `idgenrec.GeneratorAssigner`'s items.
    encode: text -> token ids (the shared vocabulary).
    item_text_NxL: every item's text tokens (+ EOS), what the generator reads.
    schedule: `StreamIdSchedule`.

  With the recommender's partitioner (`rec.partitioner`), the generator step runs on its mesh
  as the recommender's: the generator state sharded by its logical axes, the rows of every batch
  key but the flat `branch_*` ones and `num_items` (replicated) split over 'data', the frozen
  recommender's params as its state holds them and the trie replicated; `id_batch_size` must
  then be a multiple of the 'data' axis.
  """

  def __init__(self, rec: stream_training.StreamTrainer, gen_model: models.EncoderDecoderModel,
               gen_params: Any, assign: Callable[[Any], Sequence[str]],
               encode: Callable[[str], Sequence[int]], item_text_NxL: np.ndarray,
               schedule: StreamIdSchedule):
    if rec.schedule.epochs % schedule.rounds:
      raise ValueError(f"StreamSchedule.epochs={rec.schedule.epochs} is not divisible by "
                       f"StreamIdSchedule.rounds={schedule.rounds}")
    self.rec, self.gen_model, self.assign, self.encode = rec, gen_model, assign, encode
    self.text_NxL, self.schedule = item_text_NxL, schedule
    tx = optimizers.adamw(schedule.id_lr, weight_decay=0.0)
    self.gen_state = TrainState.create(gen_params, tx)
    shardings = {}
    if rec.partitioner is not None:
      self.gen_state, shardings = self._shard(rec, gen_model, schedule.id_batch_size)
    self.id_trainer = trainer_lib.Trainer(functools.partial(
        stream_id_phase_loss, gen_model=gen_model, rec_model=rec.model,
        mixing=id_phase.Mixing(schedule.mixing)), tx, dropout_seed=rec.schedule.seed + 1,
        **shardings)
    self._gen_ckpt = None
    if rec.model_dir:
      self._gen_ckpt = orbax_t5x.CheckpointManager(layout.generator_root(rec.model_dir), keep=2,
                                                   model_config=gen_model.module.config)

  def _shard(self, rec: stream_training.StreamTrainer, gen_model: models.EncoderDecoderModel,
             batch_size: int) -> tuple[TrainState, dict[str, Any]]:
    """(the generator state on the mesh, the `Trainer`'s sharding arguments)."""
    part = rec.partitioner
    data = int(part.mesh.shape["data"])
    if batch_size % data:
      raise ValueError(f"StreamIdSchedule.id_batch_size={batch_size} must be a multiple of the "
                       f"mesh's 'data' axis ({data})")
    gen_sh = part.state_shardings(self.gen_state, alternating.params_axes(gen_model))
    rec_sh = part.state_shardings(rec.state, stream_training.decoder_params_axes(rec.model)).params
    batch_sh = stream_training.stream_batch_shardings(
        part, trie_softmax=True,
        row_keys=("item_text_tokens", "item_id_inputs", "item_id_targets", "soft_slot"))
    return jax.device_put(self.gen_state, gen_sh), dict(
        in_shardings=(gen_sh, batch_sh, part.replicated, rec_sh, part.replicated),
        out_shardings=(gen_sh, part.replicated), partitioner=part)

  def _id_phase(self, rnd: int) -> Optional[dict[str, float]]:
    """`id_steps` generator updates through the frozen recommender; None when a stop request
    (SIGINT / SIGTERM) came first."""
    s, rec = self.schedule, self.rec
    batcher = IdStreamBatcher(self.text_NxL, rec.item_tokens, rec.choices,
                              max_items=s.id_max_items, eos_id=rec.eos_id)
    rng = np.random.default_rng([rec.schedule.seed, rnd, 7])

    def batches():
      while True:
        users = rng.choice(len(rec.sequences), s.id_batch_size, replace=False)
        yield batcher.batch([splits.train_items(rec.sequences[u]) for u in users])

    def step(state, batch):   # the frozen recommender and its trie are jit arguments
      return self.id_trainer.train(state, batch, rec.state.params, rec.trie.arrays)

    # No checkpoint inside the phase: a stopped one is redone from its start on resume.
    loop = training_loop.StepLoop(step, desc=f"ID phase {rnd}", log_at=lambda n, total: False,
                                  keep=("loss",), stop=rec.stop)
    if rec.stop.requested:
      return None
    end = loop.run(self.gen_state, batches(), total=s.id_steps)
    self.gen_state = end.state
    if end.stopped:
      return None
    losses = [m["loss"] for m in end.kept]
    return {"id_loss_first": losses[0] if losses else float("nan"),
            "id_loss_last": float(np.mean(losses[-10:])) if losses else float("nan")}

  def _regenerate(self) -> int:
    items = self.assign(self.gen_state.params)
    tokens = [list(self.encode(t)) for t in items]
    changed = sum(a != b for a, b in zip(tokens, self.rec.item_tokens))
    self.rec.set_item_tokens(tokens)
    return changed

  def maybe_restore(self) -> bool:
    """Restores the recommender (`StreamTrainer.maybe_restore`) and the generator as it was at
    that checkpoint: the generator checkpoint of its last ID phase (step `other_steps`), or the
    initial generator when the recommender's checkpoint precedes every ID phase."""
    restored = self.rec.maybe_restore()
    gen_step = int(self.rec.extra.get("other_steps", 0)) if restored else 0
    if gen_step and self._gen_ckpt:
      if gen_step not in self._gen_ckpt.all_steps():
        raise fail_safe.NoGoodCheckpointError(
            f"{self._gen_ckpt.step_path(gen_step)} (the generator of the restored recommender "
            "checkpoint) is missing")
      tree, _ = self._gen_ckpt.restore(orbax_t5x.to_t5x_tree(self.gen_state), gen_step)
      self.gen_state = orbax_t5x.from_t5x_tree(tree)
    return restored

  def run(self, stop_after_epoch: Optional[int] = None,
          stop: Optional[stopping.StopRequest] = None) -> Optional[dict[str, Any]]:
    """Every round's rec epochs, ID phase and regeneration, then the test (None when
    `stop_after_epoch` stopped it, as a kill would, or `stop` did: SIGINT / SIGTERM)."""
    self.rec.stop = stop or self.rec.stop
    per_round = self.rec.schedule.epochs // self.schedule.rounds
    for rnd in range(self.schedule.rounds):
      if not self.rec.train_until((rnd + 1) * per_round, stop_after_epoch):
        return None
      if rnd + 1 < self.schedule.rounds and self.rec.extra.get("id_phases", 0) <= rnd:
        stats = self._id_phase(rnd)
        if stats is None:
          return None
        stats["changed_ids"] = self._regenerate()
        log.info("round %d ID phase: %s", rnd, stats)
        self.rec.extra.setdefault("id_rounds", []).append(stats)
        self.rec.extra["id_phases"] = rnd + 1
        self.rec.extra["other_steps"] = int(self.gen_state.step)
        if self._gen_ckpt:
          self._gen_ckpt.save(int(self.gen_state.step), orbax_t5x.to_t5x_tree(self.gen_state))
        self.rec.save()
    summary = self.rec.test()
    summary["id_rounds"] = self.rec.extra.get("id_rounds", [])
    return summary
