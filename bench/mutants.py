"""Deliberate breakages of the library's headline promises, and the tests that catch them.

Each mutant is one textual edit of one source file. For each, this script copies the working
tree (tracked and untracked-but-not-ignored files) to a scratch folder, applies the edit, runs
the named test files there with this Python (`-x`: stop at the first failing test) and records
whether a test failed ("killed"), which one, and how long it took. Before the mutants it runs
the same test files on the unmutated copy: they must pass, or a "killed" would mean nothing.

  python bench/mutants.py                 # every mutant; one JSON line each, then a summary line
  python bench/mutants.py --only trie_admits_a_token_outside_the_item_prefixes

Prints JSON lines; exits 1 when a mutant survives or the unmutated copy fails.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Mutant:
  name: str
  promise: str
  path: str     # relative to the repository root
  old: str      # must occur exactly once in the file
  new: str
  tests: tuple[str, ...]


_NUDGE = "jax.tree_util.tree_map(lambda p: p * 1.001, {}.params)"

_IDGENREC = "llmrec_jax/systems/idgenrec/"
_IDGENREC_TESTS = "tests/systems/idgenrec/"

MUTANTS = (
    Mutant("id_phase_updates_the_recommender", "frozen models per phase", _IDGENREC + "alternating.py",
           "      return self.id_trainer.train(state, batch, self.rec_state.params)\n",
           "      out = self.id_trainer.train(state, batch, self.rec_state.params)\n"
           "      self.rec_state = self.rec_state.replace(params=" + _NUDGE.format("self.rec_state") + ")\n"
           "      return out\n",
           (_IDGENREC_TESTS + "alternating_test.py",)),
    Mutant("rec_phase_updates_the_generator", "frozen models per phase", _IDGENREC + "alternating.py",
           "    return self._run_phase(rnd, \"rec\", self.rec_steps, self.rec_trainer.train,\n",
           "    def step(state, batch):\n"
           "      self.gen_state = self.gen_state.replace(params=" + _NUDGE.format("self.gen_state") + ")\n"
           "      return self.rec_trainer.train(state, batch)\n"
           "    return self._run_phase(rnd, \"rec\", self.rec_steps, step,\n",
           (_IDGENREC_TESTS + "alternating_test.py",)),
    Mutant("stream_id_phase_updates_the_recommender", "frozen models per phase", _IDGENREC + "stream_id_phase.py",
           "      return self.id_trainer.train(state, batch, rec.state.params, rec.trie.arrays)\n",
           "      out = self.id_trainer.train(state, batch, rec.state.params, rec.trie.arrays)\n"
           "      rec.state = rec.state.replace(params=" + _NUDGE.format("rec.state") + ")\n"
           "      return out\n",
           (_IDGENREC_TESTS + "stream_id_phase_test.py",)),
    Mutant("generator_assigner_leaky_by_default", "leak-free user IDs", _IDGENREC + "components.py",
           "leaky_user_ids: bool = False, progress: bool = True,",
           "leaky_user_ids: bool = True, progress: bool = True,",
           (_IDGENREC_TESTS + "components_test.py",)),
    Mutant("user_history_texts_leaky_by_default", "leak-free user IDs", "llmrec_jax/indexing/user_ids.py",
           "def user_history_texts(data: RecData, item_ids: Sequence[str], *, leaky: bool = False)",
           "def user_history_texts(data: RecData, item_ids: Sequence[str], *, leaky: bool = True)",
           ("tests/indexing/user_ids_test.py", _IDGENREC_TESTS + "components_test.py")),
    Mutant("train_leaky_by_default", "leak-free user IDs", "llmrec_jax/train.py",
           "bootstrap_steps: int = 300, leaky_user_ids: bool = False,",
           "bootstrap_steps: int = 300, leaky_user_ids: bool = True,",
           (_IDGENREC_TESTS + "components_test.py",)),
    Mutant("trie_admits_a_token_outside_the_item_prefixes", "valid items only", "llmrec_jax/decoding/trie_walk.py",
           "  valid_XxF = (j_F[None, :] < n_X[:, None]) & (node_X[:, None] > ROOT)",
           "  valid_XxF = (j_F[None, :] < n_X[:, None] + 1) & (node_X[:, None] > ROOT)",
           ("tests/decoding/trie_test.py",)),
    Mutant("validation_target_from_the_test_position", "leave-one-out split", "llmrec_jax/data/splits.py",
           'HELD_OUT = {"valid": 2, "test": 1}',
           'HELD_OUT = {"valid": 1, "test": 1}',
           ("tests/data/splits_test.py",)),
    Mutant("sasrec_trains_on_the_validation_target", "leave-one-out split", "llmrec_jax/systems/sasrec/train.py",
           "    row = np.asarray(train_items(seq)[-(max_len + 1):], np.int32) + 1",
           "    row = np.asarray(seq[:-1][-(max_len + 1):], np.int32) + 1",
           ("tests/systems/sasrec/sasrec_train_test.py",)),
    Mutant("streams_train_on_the_validation_target", "leave-one-out split", "llmrec_jax/data/item_streams.py",
           "  return [user_stream(splits.train_items(seq)[-max_items:], item_tokens, eos_id) for seq in sequences]",
           "  return [user_stream(seq[:-1][-max_items:], item_tokens, eos_id) for seq in sequences]",
           ("tests/data/item_streams_test.py",)),
    Mutant("resume_restores_the_wrong_data_position", "resume == uninterrupted", _IDGENREC + "alternating.py",
           '    self.position, self.step_in_phase = meta["position"], meta["step_in_phase"]',
           '    self.position, self.step_in_phase = meta["position"], meta["step_in_phase"] + 1',
           (_IDGENREC_TESTS + "alternating_test.py",)),
    Mutant("stream_resume_restores_the_wrong_epoch", "resume == uninterrupted", _IDGENREC + "stream_training.py",
           '    self.epoch, self.best, self.curve = meta["epoch"], meta["best"], list(meta["curve"])',
           '    self.epoch, self.best, self.curve = meta["epoch"] + 1, meta["best"], list(meta["curve"])',
           (_IDGENREC_TESTS + "stream_training_test.py",)),
    Mutant("step_loop_resumes_one_step_late", "resume == uninterrupted", "llmrec_jax/training/loop.py",
           "    step = start\n",
           "    step = start + 1 if start else start\n",
           ("tests/training/loop_test.py",)),
    Mutant("step_loop_saves_after_the_last_step", "resume == uninterrupted", "llmrec_jax/training/loop.py",
           "        if step == total:\n          break\n",
           "",
           ("tests/training/loop_test.py",)),
)


def copy_tree(dest: pathlib.Path) -> None:
  """The working tree's tracked and untracked-but-not-ignored files (what CI would see)."""
  files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                         capture_output=True).stdout.decode().split("\0")
  for rel in filter(None, files):
    src = REPO / rel
    if src.is_file():
      (dest / rel).parent.mkdir(parents=True, exist_ok=True)
      shutil.copy2(src, dest / rel)
  shared = REPO.parent / "shared"  # the tests look for ../shared beside the checkout
  if shared.is_dir() and not (dest.parent / "shared").exists():
    (dest.parent / "shared").symlink_to(shared)


def apply(root: pathlib.Path, mutant: Mutant) -> None:
  path = root / mutant.path
  text = path.read_text(encoding="utf-8")
  if text.count(mutant.old) != 1:
    raise ValueError(f"{mutant.name}: {mutant.path} has {text.count(mutant.old)} copies of the text to "
                     f"mutate (need exactly 1); update the mutant")
  path.write_text(text.replace(mutant.old, mutant.new), encoding="utf-8")


def run_tests(root: pathlib.Path, tests: tuple[str, ...]) -> dict:
  env = dict(os.environ, PYTHONPATH=str(root), JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
  start = time.time()
  proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                        cwd=root, env=env, capture_output=True, text=True, check=False)
  failed = re.findall(r"^FAILED (\S+)", proc.stdout, flags=re.M)
  return {"returncode": proc.returncode, "failed": failed, "seconds": round(time.time() - start, 1),
          "tail": proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else []}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--only", default="", help="comma-separated mutant names (default: all)")
  args = p.parse_args(argv)
  names = [n for n in args.only.split(",") if n]
  unknown = set(names) - {m.name for m in MUTANTS}
  if unknown:
    p.error(f"unknown mutants {sorted(unknown)}; choose from {', '.join(m.name for m in MUTANTS)}")
  chosen = [m for m in MUTANTS if not names or m.name in names]
  ok = True
  with tempfile.TemporaryDirectory(prefix="llmrec_mutants_") as tmp:
    work = pathlib.Path(tmp) / "main"
    work.mkdir()
    copy_tree(work)
    check = subprocess.run([sys.executable, "-c", "import llmrec_jax; print(llmrec_jax.__file__)"], cwd=work,
                           env=dict(os.environ, PYTHONPATH=str(work)), capture_output=True, text=True, check=True)
    if not check.stdout.strip().startswith(str(work)):
      raise RuntimeError(f"the copy imports llmrec_jax from {check.stdout.strip()}, not from {work}")
    baseline = run_tests(work, tuple(sorted({t for m in chosen for t in m.tests})))
    print(json.dumps({"baseline": baseline}), flush=True)
    if baseline["returncode"] != 0:
      return 1
    for mutant in chosen:
      pristine = (work / mutant.path).read_text(encoding="utf-8")
      apply(work, mutant)
      try:
        result = run_tests(work, mutant.tests)
      finally:
        (work / mutant.path).write_text(pristine, encoding="utf-8")
      killed = result["returncode"] == 1 and bool(result["failed"])
      ok &= killed
      print(json.dumps({"mutant": mutant.name, "promise": mutant.promise, "killed": killed,
                        "caught_by": result["failed"][:1], "seconds": result["seconds"],
                        "tests": list(mutant.tests), "tail": result["tail"]}), flush=True)
  print(json.dumps({"mutants": len(chosen), "all_killed": ok}), flush=True)
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
