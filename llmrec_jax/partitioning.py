"""Device mesh, logical-axis rules and the shardings of train state and batches.

The only module that builds meshes. The network names parameter dimensions with logical axes
(`params_axes`, from `flax.linen.partitioning.param_with_axes`); one rules table maps them to the
mesh axes `('data', 'model')`, as in T5X. Jitting goes through plain `jax.jit(in_shardings=...,
out_shardings=..., donate_argnums=...)` (the modern pjit), e.g. via `trainer.Trainer`.

Multi-host: every process builds the same global mesh; `get_data_layout` says which slice of the
global batch this host reads, and `PjitPartitioner.shard_batch` assembles the host-local arrays
into one global array.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Optional, Sequence

import flax
import flax.traverse_util
import jax
import numpy as np
from flax.linen import partitioning as nn_partitioning
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from llmrec_jax.training.train_state import TrainState

PyTree = Any
LogicalAxisRules = tuple[tuple[str, Optional[str]], ...]
MESH_AXES = ("data", "model")


# ----------------------------------------------------------------------------- rules
def standard_logical_axis_rules(activation_partitioning_dims: int = 1,
                                parameter_partitioning_dims: int = 1,
                                additional_rules: Sequence[tuple[str, Optional[str]]] = ()
                                ) -> LogicalAxisRules:
  """T5X's logical->mesh rules. 1/1 = data parallel on 'data', tensor parallel on 'model'.

  Args:
    activation_partitioning_dims: 2 also shards activations' `embed` over 'model'.
    parameter_partitioning_dims: 2 also shards parameters' `embed` over 'data' (2-D / FSDP-like).
    additional_rules: appended last (earlier rules win for the same logical name).
  Returns:
    ((logical_name, mesh_axis or None), ...); a name may appear twice, the first mesh axis that is
    still free for a given array wins (flax semantics).
  """
  dims = (activation_partitioning_dims, parameter_partitioning_dims)
  if dims not in ((1, 1), (1, 2), (2, 1), (2, 2)):
    raise ValueError(f"activation/parameter_partitioning_dims must each be 1 or 2, got {dims}")
  rules = [("batch", "data"), ("vocab", "model"), ("mlp", "model"), ("heads", "model"),
           ("kv", None), ("joined_kv", "model")]
  if activation_partitioning_dims == 2:
    rules.append(("embed", "model"))
  if parameter_partitioning_dims == 2:
    rules.append(("embed", "data"))
  if dims == (1, 1):
    rules.append(("embed", None))
  # Axes that are never sharded (small, or would need collectives on every use).
  rules += [("relpos_buckets", None), ("abspos_buckets", None), ("length", None),
            ("layers", None), ("stack", None), ("mlp_activations", None)]
  return tuple(rules) + tuple((str(k), v) for k, v in additional_rules)


# ----------------------------------------------------------------------------- mesh
def make_mesh(num_partitions: int = 1, devices: Optional[Sequence[Any]] = None) -> Mesh:
  """A `('data', 'model')` mesh of `len(devices) // num_partitions` x `num_partitions`.

  Axis types are Auto (GSPMD propagation, what T5X-era code assumes); jax 0.10's
  `jax.make_mesh` would otherwise default to Explicit sharding types.
  """
  devices = list(jax.devices() if devices is None else devices)
  if num_partitions < 1 or len(devices) % num_partitions:
    raise ValueError(f"num_partitions={num_partitions} must be >= 1 and divide the "
                     f"{len(devices)} devices")
  shape = (len(devices) // num_partitions, num_partitions)
  return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * 2, devices=devices)


# ----------------------------------------------------------------------------- params
def _path_str(path: tuple[Any, ...]) -> str:
  return jax.tree_util.keystr(path, simple=True, separator="/")


def logical_axes_by_path(params_axes: PyTree) -> dict[tuple[str, ...], tuple[str, ...]]:
  """{param path: logical axis names} from the `params_axes` collection (`<name>_axes` leaves)."""
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params_axes))
  out = {}
  for path, meta in flat.items():
    if not path[-1].endswith("_axes") or not hasattr(meta, "names"):
      raise ValueError(f"params_axes entry {'/'.join(path)} is not a '<param>_axes' AxisMetadata")
    out[path[:-1] + (path[-1][:-len("_axes")],)] = tuple(meta.names)
  return out


def logical_to_spec(names: Sequence[Optional[str]], rules: LogicalAxisRules) -> P:
  """PartitionSpec of one array from its logical axis names (unknown names -> replicated)."""
  return nn_partitioning.logical_to_mesh_axes(tuple(names), rules)


def _check_divisible(where: str, shape: Sequence[int], spec: P, mesh: Mesh) -> None:
  for dim, axis in zip(shape, tuple(spec)):
    axes = (axis,) if isinstance(axis, str) else tuple(axis or ())
    size = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
    if dim % size:
      raise ValueError(f"{where}: shape {tuple(shape)} with spec {spec} does not divide over "
                       f"mesh {dict(mesh.shape)} (dimension {dim} vs {size} shards)")


def params_partition_specs(params: PyTree, params_axes: PyTree,
                           rules: LogicalAxisRules) -> PyTree:
  """A PartitionSpec per parameter leaf (same tree as `params`).

  Args:
    params: arrays or `jax.ShapeDtypeStruct`s (only the tree is used).
    params_axes: the `params_axes` collection emitted next to `params`.
    rules: logical->mesh rules, e.g. `standard_logical_axis_rules()`.
  Raises:
    ValueError naming the parameter when it has no axes or the axes do not match its rank.
  """
  axes = logical_axes_by_path(params_axes)

  def spec(path, leaf):
    key = tuple(str(getattr(k, "key", k)) for k in path)
    if key not in axes:
      raise ValueError(f"parameter {'/'.join(key)} has no entry in params_axes "
                       "(declare it with param_with_axes)")
    if len(axes[key]) != len(leaf.shape):
      raise ValueError(f"parameter {'/'.join(key)} has shape {tuple(leaf.shape)} but logical "
                       f"axes {axes[key]}")
    return logical_to_spec(axes[key], rules)
  return jax.tree_util.tree_map_with_path(spec, params)


# ----------------------------------------------------------------------------- optimizer state
def _moment_spec(where: str, field: str, shape: tuple[int, ...], param_shape: tuple[int, ...],
                 param_spec: P) -> P:
  """Spec of one optimizer-state leaf that mirrors a parameter."""
  if shape == param_shape:
    return param_spec
  if len(shape) <= 1 and int(np.prod(shape)) == 1:
    return P()  # placeholders, e.g. Adafactor's unused v_row/v_col or v of a factored param
  full = tuple(param_spec) + (None,) * (len(param_shape) - len(tuple(param_spec)))
  if len(shape) == len(param_shape) - 1:
    if field in ("v_row", "v_col") and len(param_shape) >= 2:
      # optax Adafactor: d1, d0 = the two largest dims (argsort order); v_row drops d0, v_col d1.
      d1, d0 = (int(d) for d in np.argsort(param_shape)[-2:])
      candidates = [d0 if field == "v_row" else d1]
    else:
      candidates = list(range(len(param_shape)))
    specs = {P(*(full[:d] + full[d + 1:])) for d in candidates
             if tuple(np.delete(param_shape, d)) == shape}
    if len(specs) == 1:
      return specs.pop()
  raise ValueError(f"optimizer-state leaf {where} (shape {shape}) mirrors a parameter of shape "
                   f"{param_shape} but its sharding cannot be derived")


def opt_state_partition_specs(opt_state: PyTree, params: PyTree, param_specs: PyTree) -> PyTree:
  """PartitionSpecs for an optax state, derived explicitly from the parameter specs.

  Optax states mirror the parameter tree: a leaf whose path ends with a parameter's path gets
  that parameter's spec (same shape: Adam moments), the spec of the kept dims (Adafactor's
  factored `v_row`/`v_col`), or is replicated (1-element placeholders). Leaves that mirror no
  parameter must be scalars (step counts, hyper-parameters) and are replicated.

  Args:
    opt_state: arrays or `jax.ShapeDtypeStruct`s, e.g. `jax.eval_shape(tx.init, params)`.
    params / param_specs: the parameter tree and its `params_partition_specs`.
  """
  by_path = {}
  for (path, leaf), spec in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                                jax.tree_util.tree_leaves(param_specs, is_leaf=lambda x: isinstance(x, P))):
    by_path[tuple(str(k) for k in path)] = (tuple(leaf.shape), spec)

  def spec(path, leaf):
    keys = tuple(str(k) for k in path)
    shape = tuple(np.shape(leaf))
    for i in range(len(keys)):  # longest parameter path that is a suffix of this leaf's path
      if keys[i:] in by_path:
        field = getattr(path[i - 1], "name", "") if i else ""
        return _moment_spec(_path_str(path), field, shape, *by_path[keys[i:]])
    if int(np.prod(shape)) > 1:
      raise ValueError(f"optimizer-state leaf {_path_str(path)} (shape {shape}) mirrors no "
                       "parameter; cannot derive its sharding")
    return P()
  return jax.tree_util.tree_map_with_path(spec, opt_state)


# ----------------------------------------------------------------------------- data layout
@dataclasses.dataclass(frozen=True)
class DataLayout:
  """Which slice of the global batch this host reads (T5X's `DataLayout`)."""
  batch_size: int  # global
  shard_id: int
  num_shards: int
  is_first_host_in_replica_set: bool

  @property
  def per_host_batch_size(self) -> int:
    return self.batch_size // self.num_shards


def data_layout(device_process_ids: np.ndarray, process_index: int, batch_size: int) -> DataLayout:
  """Data shard of `process_index` given the process id of each mesh device.

  Args:
    device_process_ids: int array [data, model]: `process_index` of every mesh device.
    process_index: this host.
    batch_size: the global batch size; must divide into the data shards.
  Returns:
    Hosts whose devices hold the same 'data' rows read the same shard (model parallelism across
    hosts); `shard_id` orders shards by their first 'data' row.
  """
  ids = np.asarray(device_process_ids)
  rows_by_process: dict[int, tuple[int, ...]] = {}
  for p in np.unique(ids):
    rows_by_process[int(p)] = tuple(int(r) for r in np.unique(np.nonzero(ids == p)[0]))
  if process_index not in rows_by_process:
    raise ValueError(f"process {process_index} owns no device of the mesh")
  shards = sorted(set(rows_by_process.values()))
  for a in shards:
    if list(a) != list(range(a[0], a[0] + len(a))):
      raise ValueError(f"a host owns non-contiguous data rows {a}; build the mesh from jax.devices()")
    for b in shards:
      if a != b and set(a) & set(b):
        raise ValueError(f"hosts own overlapping but different data rows {a} and {b}")
  mine = rows_by_process[process_index]
  if batch_size % len(shards):
    raise ValueError(f"global batch_size={batch_size} is not divisible by {len(shards)} data shards")
  first = min(p for p, rows in rows_by_process.items() if rows == mine)
  return DataLayout(batch_size=batch_size, shard_id=shards.index(mine), num_shards=len(shards),
                    is_first_host_in_replica_set=process_index == first)


# ----------------------------------------------------------------------------- multi-host
def _cluster_env_process_count() -> int:
  """Process count announced by a cluster launcher (SLURM, Open MPI), or 1."""
  for var in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
    if os.environ.get(var, "").isdigit():
      return int(os.environ[var])
  return 1


def initialize_distributed(coordinator_address: Optional[str] = None,
                           num_processes: Optional[int] = None,
                           process_id: Optional[int] = None) -> bool:
  """Calls `jax.distributed.initialize` only when several processes run; True if it did.

  Explicit arguments win; with none, a SLURM/MPI launch of > 1 tasks is auto-detected by JAX.
  TPU VMs need no call (libtpu finds its peers). Must run before anything touches devices.
  """
  if num_processes is None and coordinator_address is None:
    if _cluster_env_process_count() <= 1:
      return False
    jax.distributed.initialize()
    return True
  if num_processes is None or num_processes <= 1:
    if coordinator_address is not None and num_processes is None:
      raise ValueError("coordinator_address given without num_processes")
    return False
  if coordinator_address is None or process_id is None or not 0 <= process_id < num_processes:
    raise ValueError(f"multi-process run needs coordinator_address and 0 <= process_id < "
                     f"{num_processes}; got {coordinator_address!r}, {process_id!r}")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)
  return True


# ----------------------------------------------------------------------------- partitioner
def model_parallel_size(num_partitions: Optional[int] = None,
                        model_parallel_submesh: Optional[Sequence[int]] = None) -> int:
  """The 'model' axis size of T5X's `num_partitions` / `model_parallel_submesh` (product of the
  submesh's entries); 1 when neither is given.

  Raises:
    ValueError: a submesh entry is not an int >= 1, or both are given and disagree.
  """
  if model_parallel_submesh is None:
    return 1 if num_partitions is None else num_partitions
  submesh = tuple(model_parallel_submesh)
  if not submesh or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in submesh):
    raise ValueError(f"model_parallel_submesh must be ints >= 1, e.g. (1, 1, 1, 2); got {submesh}")
  size = int(np.prod(submesh))
  if num_partitions is not None and num_partitions != size:
    raise ValueError(f"num_partitions={num_partitions} disagrees with model_parallel_submesh="
                     f"{submesh} (a model-parallel size of {size}); set one of them")
  return size


def _checked_rules(rules: Sequence[Sequence[Optional[str]]]) -> LogicalAxisRules:
  """`rules` as a tuple of (logical name, mesh axis or None) pairs (gin gives lists too)."""
  out = []
  for rule in rules:
    rule = tuple(rule)
    axes = tuple(rule[1]) if len(rule) == 2 and isinstance(rule[1], (list, tuple)) else None
    if axes is not None:
      rule = (rule[0], axes)
    mesh_ok = len(rule) == 2 and (rule[1] is None or rule[1] in MESH_AXES or
                                  (axes is not None and all(a in MESH_AXES for a in axes)))
    if not mesh_ok or not isinstance(rule[0], str):
      raise ValueError(f"logical_axis_rules entry {rule!r} is not a (logical name, mesh axis "
                       f"of {MESH_AXES}, a tuple of them, or None) pair")
    out.append(rule)
  return tuple(out)


class PjitPartitioner:
  """Holds the mesh and the rules; turns trees of logical axes into `NamedSharding`s.

  Args:
    num_partitions: size of the 'model' axis (tensor parallelism); the rest is 'data'.
      None (with no submesh) means 1.
    logical_axis_rules: ((logical name, mesh axis or None), ...) in place of
      `standard_logical_axis_rules()` (T5X's meaning: these rules replace the standard ones).
    model_parallel_submesh: T5X's `(x, y, z, core)` tile of devices that hold one model
      replica: the 'model' axis has the product of its entries (devices are laid out in
      `jax.devices()` order, not by TPU topology). Given with `num_partitions`, both must agree.
    devices: defaults to all devices (`jax.devices()`).
  """

  def __init__(self, num_partitions: Optional[int] = None,
               logical_axis_rules: Optional[LogicalAxisRules] = None,
               model_parallel_submesh: Optional[tuple[int, ...]] = None,
               devices: Optional[Sequence[Any]] = None):
    model_size = model_parallel_size(num_partitions, model_parallel_submesh)
    self.mesh = make_mesh(model_size, devices)
    self.logical_axis_rules = _checked_rules(logical_axis_rules or standard_logical_axis_rules())

  def sharding(self, spec: P) -> NamedSharding:
    return NamedSharding(self.mesh, spec)

  @property
  def replicated(self) -> NamedSharding:
    return self.sharding(P())

  @property
  def batch_sharding(self) -> NamedSharding:
    """Leading (batch) axis split over 'data'; everything else replicated."""
    return self.sharding(P("data"))

  def _to_shardings(self, specs: PyTree, tree: PyTree, what: str) -> PyTree:
    def to_sharding(path, spec, leaf):
      _check_divisible(f"{what} {_path_str(path)}", np.shape(leaf), spec, self.mesh)
      return self.sharding(spec)
    return jax.tree_util.tree_map_with_path(to_sharding, specs, tree,
                                            is_leaf=lambda x: isinstance(x, P))

  def params_shardings(self, params: PyTree, params_axes: PyTree) -> PyTree:
    """`NamedSharding` per parameter (tree of `params`)."""
    specs = params_partition_specs(params, params_axes, self.logical_axis_rules)
    return self._to_shardings(specs, params, "parameter")

  def state_shardings(self, state: TrainState, params_axes: PyTree) -> TrainState:
    """A `TrainState` of `NamedSharding`s: step replicated, params by their logical axes,
    optimizer state derived from the params (`opt_state_partition_specs`). `state` may be
    abstract (`jax.eval_shape`)."""
    p_specs = params_partition_specs(state.params, params_axes, self.logical_axis_rules)
    o_specs = opt_state_partition_specs(state.opt_state, state.params, p_specs)
    return TrainState(step=self.replicated,
                      params=self._to_shardings(p_specs, state.params, "parameter"),
                      opt_state=self._to_shardings(o_specs, state.opt_state, "optimizer state"))

  def batch_shardings(self, batch: PyTree) -> PyTree:
    """`batch_sharding` for every array of a batch (their leading axes must divide over 'data')."""
    def one(path, x):
      _check_divisible(f"batch {_path_str(path)}", np.shape(x)[:1], P("data"), self.mesh)
      return self.batch_sharding
    return jax.tree_util.tree_map_with_path(one, batch)

  def get_data_layout(self, batch_size: int) -> DataLayout:
    """The slice of the global batch this host must read (feed it to seqio `ShardInfo`)."""
    ids = np.vectorize(lambda d: d.process_index, otypes=[int])(self.mesh.devices)
    return data_layout(ids, jax.process_index(), batch_size)

  def shard_batch(self, host_batch: PyTree) -> PyTree:
    """Host-local numpy batch (this host's `per_host_batch_size` rows) -> global sharded arrays."""
    return jax.tree_util.tree_map(
        lambda x: jax.make_array_from_process_local_data(self.batch_sharding, np.asarray(x)),
        host_batch)

  def partition(self, fn: Callable[..., Any], in_shardings: Any, out_shardings: Any,
                donate_argnums: Sequence[int] = ()) -> Callable[..., Any]:
    """`jax.jit` with shardings; calls run under this partitioner's logical-axis rules so
    `nn_partitioning.with_sharding_constraint` inside `fn` resolves."""
    jitted = jax.jit(fn, in_shardings=in_shardings, out_shardings=out_shardings,
                     donate_argnums=tuple(donate_argnums))

    def call(*args, **kwargs):
      with nn_partitioning.axis_rules(self.logical_axis_rules), jax.set_mesh(self.mesh):
        return jitted(*args, **kwargs)

    def lower(*args, **kwargs):  # what XLA is given, e.g. to check the sharding constraints
      with nn_partitioning.axis_rules(self.logical_axis_rules), jax.set_mesh(self.mesh):
        return jitted.lower(*args, **kwargs)
    call.lower = lower
    return call
