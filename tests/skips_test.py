"""The suite's rule on skips (tests/conftest.py): with ../shared beside the checkout any skip
fails the run; without it, the real-data tests skip and the run passes."""
import pathlib
import shutil
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent


@pytest.mark.parametrize("with_shared", [True, False])
def test_a_skip_fails_the_run_only_when_shared_is_present(tmp_path, with_shared):
  repo = tmp_path / "main"
  (repo / "tests").mkdir(parents=True)
  shutil.copy(HERE / "conftest.py", repo / "tests" / "conftest.py")
  (repo / "tests" / "one_test.py").write_text(
      "import pytest\n\ndef test_runs():\n  assert True\n\n"
      "def test_skips():\n  pytest.skip('a missing file')\n", encoding="utf-8")
  if with_shared:
    (tmp_path / "shared" / "data").mkdir(parents=True)
  proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests"],
                        cwd=repo, capture_output=True, text=True, check=False)
  assert "1 passed, 1 skipped" in proc.stdout and "a missing file" in proc.stdout
  if with_shared:
    assert proc.returncode == 1 and "skipped although" in proc.stdout
  else:
    assert proc.returncode == 0
