"""`../shared/...` paths resolve against the checkout from any working directory."""
import os

from llmrec_jax.data import shared_paths


def test_shared_paths_resolve_against_the_checkout_from_anywhere(tmp_path, monkeypatch):
  repo = tmp_path / "checkout"
  (tmp_path / "shared" / "data" / "beauty").mkdir(parents=True)
  repo.mkdir()
  elsewhere = tmp_path / "some" / "other" / "place"   # no ../shared next to it
  elsewhere.mkdir(parents=True)
  monkeypatch.chdir(elsewhere)
  got = shared_paths.resolve("../shared/data/beauty", repo_root=str(repo))
  assert got == str(tmp_path / "shared" / "data" / "beauty")
  # Not a ../shared path, absolute, or existing where given: unchanged.
  assert shared_paths.resolve("data/beauty", repo_root=str(repo)) == "data/beauty"
  assert shared_paths.resolve(str(repo), repo_root="/nowhere") == str(repo)
  monkeypatch.chdir(repo)
  assert shared_paths.resolve("../shared/data/beauty", repo_root="/nowhere") == "../shared/data/beauty"
  assert shared_paths.resolve(None) is None and shared_paths.resolve("") == ""


def test_the_real_checkout_root_holds_this_package():
  assert os.path.isfile(os.path.join(shared_paths.REPO_ROOT, "llmrec_jax", "data", "shared_paths.py"))
