"""The shared layers never import a system: a system plugs into them, not the other way round."""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "llmrec_jax"
SHARED = ("network", "models.py", "decoder_model.py", "losses.py", "model_sizes.py", "decoding", "data",
          "training", "evaluation", "checkpoints", "partitioning.py", "indexing", "metrics", "quantization")


def _modules_imported(path: pathlib.Path) -> set[str]:
  """Every module an `import` or `from ... import` statement in `path` names (any depth)."""
  names = set()
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    if isinstance(node, ast.Import):
      names.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.add(node.module)
      names.update(f"{node.module}.{a.name}" for a in node.names)
  return names


def _shared_files() -> list[pathlib.Path]:
  files = []
  for name in SHARED:
    path = PACKAGE / name
    files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
  return files


def test_every_shared_layer_exists():
  missing = [name for name in SHARED if not (PACKAGE / name).exists()]
  assert not missing, f"shared layers listed here but not in the package: {missing}"


@pytest.mark.parametrize("path", _shared_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_shared_layer_imports_no_system(path):
  systems = sorted(m for m in _modules_imported(path) if m.startswith("llmrec_jax.systems"))
  assert not systems, f"{path.relative_to(PACKAGE)} imports {systems}"


def test_the_check_sees_a_system_import(tmp_path):
  """The scan finds imports inside functions too (a check that could never fail proves nothing)."""
  probe = tmp_path / "probe.py"
  probe.write_text("def f():\n  from llmrec_jax.systems.idgenrec import alternating\n", encoding="utf-8")
  assert "llmrec_jax.systems.idgenrec.alternating" in _modules_imported(probe)
