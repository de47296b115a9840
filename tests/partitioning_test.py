"""Sharded training equals 1-device training; shardings really partition; data layouts."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from llmrec_jax import model_sizes, models, network, partitioning, toy_tasks
from llmrec_jax.training import optimizers, trainer
from llmrec_jax.training.train_state import TrainState

VOCAB, MAX_LEN, BATCH, STEPS = 32, 8, 16, 3
MESHES = [(8, 1), (4, 2), (2, 4)]


@pytest.fixture(scope="module")
def setup():
  """t5_tiny widths (float32, dropout off; 1+1 layers to keep 4 compilations cheap), AdamW."""
  cfg = model_sizes.t5_config("t5_tiny", vocab_size=VOCAB, dropout_rate=0.0,
                              num_encoder_layers=1, num_decoder_layers=1)
  model = models.EncoderDecoderModel(network.Transformer(cfg))
  rng = np.random.default_rng(0)
  batches = [toy_tasks.copy_task_batch(rng, BATCH, MAX_LEN, VOCAB) for _ in range(STEPS)]
  shapes = {k: v.shape for k, v in batches[0].items()}
  variables = model.get_initial_variables(jax.random.PRNGKey(0), shapes)
  # lr 1e-3: Adam rescales tiny gradients to full-size steps, so reduction-order noise in
  # near-zero gradients moves params by ~lr * noise; 1e-3 keeps that well under 1e-5.
  tx = optimizers.adamw(1e-3)
  return model, tx, variables, batches


def _train(model, tx, variables, batches, partitioner=None):
  """Runs STEPS steps; returns (losses, final params (numpy), last state, state was donated)."""
  # 'highest' so sharded and unsharded matmuls both run in full float32.
  with jax.default_matmul_precision("highest"):
    # Fresh host copies: the donated step must not delete the fixture's arrays.
    state = TrainState.create(jax.tree_util.tree_map(np.array, variables["params"]), tx)
    kwargs = {}
    if partitioner is not None:
      state_sh = partitioner.state_shardings(state, variables["params_axes"])
      batch_sh = partitioner.batch_shardings(batches[0])
      kwargs = dict(in_shardings=(state_sh, batch_sh, partitioner.replicated),
                    out_shardings=(state_sh, partitioner.replicated))
      state = jax.device_put(state, state_sh)
    t = trainer.Trainer(model.loss_fn, tx, **kwargs)
    losses, donated = [], None
    for b in batches:
      previous = state
      state, metrics = t.train(state, b)
      losses.append(float(metrics["loss"]))
      if donated is None and partitioner is not None:
        donated = all(x.is_deleted() for x in jax.tree_util.tree_leaves(previous))
  return np.array(losses), jax.tree_util.tree_map(np.asarray, state.params), state, donated


@pytest.fixture(scope="module")
def reference(setup):
  model, tx, variables, batches = setup
  one_device = partitioning.PjitPartitioner(1, devices=jax.devices()[:1])
  return _train(model, tx, variables, batches, one_device)


@pytest.mark.parametrize("data,model_parallel", MESHES)
def test_sharded_training_matches_one_device(setup, reference, data, model_parallel):
  model, tx, variables, batches = setup
  assert jax.device_count() == 8
  part = partitioning.PjitPartitioner(num_partitions=model_parallel)
  assert dict(part.mesh.shape) == {"data": data, "model": model_parallel}
  losses, params, state, donated = _train(model, tx, variables, batches, part)
  ref_losses, ref_params, _, _ = reference
  assert donated  # the sharded step updated the state in place
  assert ref_losses[-1] < ref_losses[0]  # it does train
  np.testing.assert_allclose(losses, ref_losses, rtol=1e-5, atol=1e-5)
  for (path, got), want in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                               jax.tree_util.tree_leaves(ref_params)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=str(path))
  # The outputs keep the partitioned layout (not silently replicated).
  wo = state.params["encoder"]["layers_0"]["mlp"]["wo"]["kernel"]
  assert wo.sharding.spec == P("model", None)
  assert {s.data.shape for s in wo.addressable_shards} == {(wo.shape[0] // model_parallel, wo.shape[1])}
  (adam,) = [s for s in jax.tree_util.tree_leaves(state.opt_state, is_leaf=lambda x: hasattr(x, "mu"))
             if hasattr(s, "mu")]
  for moment in (adam.mu, adam.nu):
    assert moment["encoder"]["layers_0"]["mlp"]["wo"]["kernel"].sharding.spec == P("model", None)
  assert adam.count.sharding.spec == P()


def _leaf(tree, *keys):
  for k in keys:
    tree = tree[k]
  return tree


def test_params_and_adam_moments_are_partitioned(setup):
  _, tx, variables, _ = setup
  part = partitioning.PjitPartitioner(num_partitions=4)
  abstract = jax.eval_shape(lambda p: TrainState.create(p, tx), variables["params"])
  sh = part.state_shardings(abstract, variables["params_axes"])
  spec = lambda s: s.spec  # noqa: E731
  # T5X rules: vocab/mlp/heads/joined_kv -> model; embed/relpos_buckets -> replicated.
  want = {("token_embedder", "embedding"): P("model", None),
          ("encoder", "layers_0", "attention", "query", "kernel"): P(None, "model"),
          ("encoder", "layers_0", "attention", "out", "kernel"): P("model", None),
          ("encoder", "layers_0", "mlp", "wo", "kernel"): P("model", None),
          ("encoder", "relpos_bias", "rel_embedding"): P("model", None),
          ("encoder", "encoder_norm", "scale"): P(None)}
  adam = [s for s in jax.tree_util.tree_leaves(sh.opt_state, is_leaf=lambda x: hasattr(x, "mu"))
          if hasattr(s, "mu")]
  assert len(adam) == 1
  for keys, p in want.items():
    assert spec(_leaf(sh.params, *keys)) == p, keys
    assert spec(_leaf(adam[0].mu, *keys)) == p, keys
    assert spec(_leaf(adam[0].nu, *keys)) == p, keys
  assert spec(adam[0].count) == P()
  assert spec(sh.step) == P()
  # Every moment equals its parameter's spec, leaf by leaf.
  for m in (adam[0].mu, adam[0].nu):
    assert jax.tree_util.tree_map(spec, m) == jax.tree_util.tree_map(spec, sh.params)


def test_adafactor_factored_moments_keep_the_kept_dims():
  params = {"w": jnp.zeros((8, 16)), "v": jnp.zeros((16, 8)), "sq": jnp.zeros((16, 16)),
            "b": jnp.zeros((16,))}
  specs = {"w": P(None, "model"), "v": P("model", None), "sq": P(None, "model"), "b": P("model")}
  tx = optax.adafactor(1e-3, min_dim_size_to_factor=4)
  state = jax.eval_shape(tx.init, params)
  got = partitioning.opt_state_partition_specs(state, params, specs)
  factored = [(s, g) for s, g in zip(jax.tree_util.tree_leaves(state, is_leaf=lambda x: hasattr(x, "v_row")),
                                     jax.tree_util.tree_leaves(got, is_leaf=lambda x: hasattr(x, "v_row")))
              if hasattr(s, "v_row")]
  assert len(factored) == 1
  st, sp = factored[0]
  for name in params:
    # Brute force: the kept dims are those whose sizes remain; read the spec off them.
    p_shape = params[name].shape
    for field in ("v_row", "v_col", "v"):
      shape = getattr(st, field)[name].shape
      spec = getattr(sp, field)[name]
      if shape == p_shape:
        assert spec == specs[name]
      elif shape == (1,):
        assert spec == P()
      else:
        assert len(tuple(spec)) == len(shape)
        full = tuple(specs[name]) + (None,) * (len(p_shape) - len(tuple(specs[name])))
        kept = [d for d in range(len(p_shape)) if tuple(np.delete(p_shape, d)) == shape]
        assert tuple(spec) in [full[:d] + full[d + 1:] for d in kept]
  # optax's own rule on the square matrix: v_row drops the last-sorted dim, v_col the other.
  assert sp.v_row["sq"] in (P(None), P("model"))
  assert {sp.v_row["sq"], sp.v_col["sq"]} == {P(None), P("model")}
  assert sp.v_row["w"] == P(None) and sp.v_col["w"] == P("model")


def test_mismatched_opt_state_fails_loudly():
  params = {"w": jnp.zeros((8, 16))}
  bad_state = {"stats": {"w": jnp.zeros((3, 5))}}
  with pytest.raises(ValueError, match="w"):
    partitioning.opt_state_partition_specs(bad_state, params, {"w": P(None, "model")})
  with pytest.raises(ValueError, match="mirrors no parameter"):
    partitioning.opt_state_partition_specs({"other": jnp.zeros((4,))}, params, {"w": P()})


def test_standard_rules_match_t5x():
  rules = dict(partitioning.standard_logical_axis_rules())
  assert rules["batch"] == "data"
  for name in ("vocab", "mlp", "heads", "joined_kv"):
    assert rules[name] == "model"
  for name in ("embed", "kv", "length", "relpos_buckets", "layers"):
    assert rules[name] is None
  two_d = partitioning.standard_logical_axis_rules(parameter_partitioning_dims=2)
  assert partitioning.logical_to_spec(("embed", "mlp"), two_d) == P("data", "model")
  with pytest.raises(ValueError):
    partitioning.standard_logical_axis_rules(3, 1)


def test_mesh_is_auto_and_validates():
  mesh = partitioning.make_mesh(2)
  assert mesh.axis_names == ("data", "model")
  assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)
  with pytest.raises(ValueError, match="divide"):
    partitioning.make_mesh(3)


def test_data_layout_single_and_multi_host():
  part = partitioning.PjitPartitioner(num_partitions=2)
  layout = part.get_data_layout(16)
  assert (layout.shard_id, layout.num_shards, layout.per_host_batch_size) == (0, 1, 16)
  assert layout.is_first_host_in_replica_set
  # 4 hosts x 2 devices, model axis inside a host: every host reads its own quarter.
  ids = np.repeat(np.arange(4), 2).reshape(4, 2)
  got = [partitioning.data_layout(ids, p, 32) for p in range(4)]
  assert [(g.shard_id, g.num_shards, g.per_host_batch_size) for g in got] == [
      (p, 4, 8) for p in range(4)]
  # Model axis across 2 hosts: hosts 0,1 hold data rows 0..1 -> they read the same shard.
  ids = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
  got = [partitioning.data_layout(ids, p, 8) for p in range(4)]
  assert [(g.shard_id, g.num_shards, g.is_first_host_in_replica_set) for g in got] == [
      (0, 2, True), (0, 2, False), (1, 2, True), (1, 2, False)]
  with pytest.raises(ValueError, match="divisible"):
    partitioning.data_layout(ids, 0, 7)


def test_shard_batch_places_rows_on_data_axis():
  part = partitioning.PjitPartitioner(num_partitions=2)
  batch = {"x": np.arange(8 * 3).reshape(8, 3)}
  out = part.shard_batch(batch)
  assert out["x"].sharding.spec == P("data")
  np.testing.assert_array_equal(np.asarray(out["x"]), batch["x"])
  with pytest.raises(ValueError, match="batch x"):
    part.batch_shardings({"x": np.zeros((6, 2))})


def test_initialize_distributed_only_for_several_processes(monkeypatch):
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
  for var in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
    monkeypatch.delenv(var, raising=False)
  assert not partitioning.initialize_distributed()
  assert not partitioning.initialize_distributed(num_processes=1)
  assert calls == []
  assert partitioning.initialize_distributed("10.0.0.1:1234", 2, 1)
  assert calls == [dict(coordinator_address="10.0.0.1:1234", num_processes=2, process_id=1)]
  monkeypatch.setenv("SLURM_NTASKS", "4")
  assert partitioning.initialize_distributed()
  assert calls[-1] == {}
  with pytest.raises(ValueError, match="process_id"):
    partitioning.initialize_distributed("h:1", 2, 5)


def test_partition_runs_under_axis_rules_and_donates():
  part = partitioning.PjitPartitioner(num_partitions=2)
  from flax.linen import partitioning as nn_partitioning  # pylint: disable=g-import-not-at-top

  seen_rules = []

  def f(x):
    seen_rules.append(tuple(nn_partitioning.get_axis_rules()))  # at trace time
    return nn_partitioning.with_sharding_constraint(x * 2, ("batch", "embed"))
  fn = part.partition(f, in_shardings=part.batch_sharding, out_shardings=part.batch_sharding,
                      donate_argnums=(0,))
  x = jax.device_put(np.ones((8, 4), np.float32), part.batch_sharding)
  out = fn(x)
  assert seen_rules == [part.logical_axis_rules]
  assert x.is_deleted()
  np.testing.assert_array_equal(np.asarray(out), 2 * np.ones((8, 4)))
  assert out.sharding.spec == P("data")


@pytest.mark.parametrize("submesh", [(1, 1, 1, 2), (2, 1, 1, 2), (1, 1, 1, 1)])
def test_submesh_builds_the_mesh_of_its_model_parallel_size(submesh):
  size = int(np.prod(submesh))
  by_submesh = partitioning.PjitPartitioner(model_parallel_submesh=submesh)
  by_count = partitioning.PjitPartitioner(num_partitions=size)
  assert dict(by_submesh.mesh.shape) == dict(by_count.mesh.shape) == {"data": 8 // size, "model": size}
  assert (by_submesh.mesh.devices == by_count.mesh.devices).all()
  agreeing = partitioning.PjitPartitioner(num_partitions=size, model_parallel_submesh=submesh)
  assert (agreeing.mesh.devices == by_count.mesh.devices).all()


def test_submesh_and_num_partitions_must_agree():
  with pytest.raises(ValueError, match="disagrees"):
    partitioning.PjitPartitioner(num_partitions=4, model_parallel_submesh=(1, 1, 1, 2))
  with pytest.raises(ValueError, match="ints >= 1"):
    partitioning.PjitPartitioner(model_parallel_submesh=(1, 0, 1, 2))
  assert partitioning.model_parallel_size() == 1


def test_logical_axis_rules_replace_the_standard_ones():
  rules = [["batch", "data"], ["mlp", None], ["embed", "model"]]  # as gin gives them: lists
  part = partitioning.PjitPartitioner(num_partitions=2, logical_axis_rules=rules)
  assert part.logical_axis_rules == (("batch", "data"), ("mlp", None), ("embed", "model"))
  assert partitioning.logical_to_spec(("embed", "mlp"), part.logical_axis_rules) == P("model", None)
  default = partitioning.PjitPartitioner(num_partitions=2)
  assert default.logical_axis_rules == partitioning.standard_logical_axis_rules()
  with pytest.raises(ValueError, match="logical_axis_rules entry"):
    partitioning.PjitPartitioner(logical_axis_rules=[("mlp", "modle")])
