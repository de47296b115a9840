"""launch/: scripts parse, local_cpu.sh really gives N devices, dry runs print the right commands,
the SLURM script passes the multi-host flags, and the Colab notebook is valid and runs."""
import json
import os
import pathlib
import shlex
import stat
import subprocess
import sys

import pytest

LAUNCH = pathlib.Path(__file__).resolve().parents[2] / "launch"
SCRIPTS = sorted(LAUNCH.glob("*.sh")) + sorted(LAUNCH.glob("*.sbatch"))


def _run(cmd, **kw):
  kw.setdefault("timeout", 120)
  return subprocess.run(cmd, capture_output=True, text=True, **kw)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax_and_strict_mode(script):
  assert _run(["bash", "-n", str(script)]).returncode == 0
  text = script.read_text()
  assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
  assert os.stat(script).st_mode & stat.S_IXUSR


def test_local_cpu_simulates_n_devices():
  env = dict(os.environ, PYTHON=sys.executable,
             XLA_FLAGS="--xla_force_host_platform_device_count=2")  # must be overridden
  proc = _run([str(LAUNCH / "local_cpu.sh"), "-n", "3", "--", "python", "-c",
               "import jax; print(jax.device_count(), jax.default_backend())"], env=env)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.split() == ["3", "cpu"]
  bad = _run([str(LAUNCH / "local_cpu.sh"), "-n", "zero", "--", "true"])
  assert bad.returncode == 2 and "positive integer" in bad.stderr


@pytest.fixture
def tripwire_gcloud(tmp_path):
  """A PATH whose `gcloud` records any call and fails: a dry run must never invoke it."""
  fake_bin = tmp_path / "gcloud_bin"
  fake_bin.mkdir()
  marker = tmp_path / "gcloud_was_called"
  (fake_bin / "gcloud").write_text(f"#!/usr/bin/env bash\ntouch {marker}\nexit 1\n")
  (fake_bin / "gcloud").chmod(0o755)
  yield f"{fake_bin}:/usr/bin:/bin"
  assert not marker.exists(), "tpu_vm.sh --dry_run called gcloud"


def _dry(path, sub, *args):
  proc = _run([str(LAUNCH / "tpu_vm.sh"), sub, "--dry_run", *args], env=dict(os.environ, PATH=path))
  assert proc.returncode == 0, proc.stderr
  return [shlex.split(line) for line in proc.stdout.splitlines()]


def test_tpu_vm_dry_run_prints_gcloud_commands(tripwire_gcloud):
  dry = lambda *a: _dry(tripwire_gcloud, *a)  # noqa: E731
  base = ["--name", "tpu1", "--zone", "us-central2-b"]
  assert dry("create", *base, "--accelerator", "v4-32", "--version", "tpu-ubuntu2204-base") == [
      ["gcloud", "compute", "tpus", "tpu-vm", "create", "tpu1", "--zone", "us-central2-b",
       "--accelerator-type", "v4-32", "--version", "tpu-ubuntu2204-base"]]
  assert dry("delete", *base, "--project=p") == [
      ["gcloud", "compute", "tpus", "tpu-vm", "delete", "tpu1", "--zone", "us-central2-b",
       "--project", "p", "--quiet"]]
  logs = dry("logs", *base, "--num_workers", "2")
  assert [c[-1] for c in logs] == ["--worker=0", "--worker=1"]
  assert logs[1][5:7] == ["tpu1:llmrec_jax/llmrec_run.log", "./tpu_logs/worker_1.log"]
  user_cmd = ["python3", "-m", "llmrec_jax.train", "--gin_file=idgenrec.gin",
              "--gin.MODEL_DIR='gs://b/run 1'"]
  (run,) = dry("run", *base, "--", *user_cmd)
  assert run[:9] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "tpu1", "--zone",
                     "us-central2-b", "--worker=all"]
  remote = run[9]
  assert remote.startswith("--command=")
  # The remote shell sees exactly the user's argv (quoting survives the round trip).
  remote_words = shlex.split(remote[len("--command="):])
  assert remote_words[remote_words.index("&&") + 1:][:len(user_cmd)] == user_cmd
  assert remote_words[-2:] == ["tee", "llmrec_run.log"]


def test_tpu_vm_usage_errors(tripwire_gcloud):
  proc = _run([str(LAUNCH / "tpu_vm.sh"), "run", "--zone", "z"], env={"PATH": tripwire_gcloud})
  assert proc.returncode == 2 and "--name is required" in proc.stderr and "Usage" in proc.stderr
  proc = _run([str(LAUNCH / "tpu_vm.sh"), "explode"], env={"PATH": tripwire_gcloud})
  assert proc.returncode == 2 and "unknown subcommand" in proc.stderr


def test_slurm_script_passes_multihost_flags(tmp_path):
  """Runs the sbatch script with a fake `srun` (2 tasks) and a fake python that prints argv."""
  fake_bin = tmp_path / "bin"
  fake_bin.mkdir()
  (fake_bin / "srun").write_text(
      "#!/usr/bin/env bash\nshift  # --kill-on-bad-exit\n"
      "for i in 0 1; do SLURM_PROCID=$i \"$@\"; done\n")
  (fake_bin / "fakepy").write_text(
      "#!/usr/bin/env bash\nprintf '%s\\n' \"$@\"; echo ---\n")
  for f in fake_bin.iterdir():
    f.chmod(0o755)
  env = dict(os.environ, PATH=f"{fake_bin}:/usr/bin:/bin", PYTHON="fakepy",
             MODEL_DIR="/shared/runs/a b", SLURM_LAUNCH_NODE_IPADDR="10.1.2.3", SLURM_NTASKS="2")
  proc = _run(["bash", str(LAUNCH / "slurm_gpu.sbatch"), "--gin.X=1"], env=env)
  assert proc.returncode == 0, proc.stderr
  runs, argv = [], []
  for line in proc.stdout.splitlines():
    if line == "---":
      runs.append(argv)
      argv = []
    else:
      argv.append(line)
  assert len(runs) == 2
  for index, argv in enumerate(runs):
    assert argv == ["-m", "llmrec_jax.train", "--gin_file=idgenrec.gin",
                    "--gin.MODEL_DIR='/shared/runs/a b'", "--multiprocess_gpu",
                    "--coordinator_address=10.1.2.3:12345", "--process_count=2",
                    f"--process_index={index}", "--gin.X=1"]
  missing = _run(["bash", str(LAUNCH / "slurm_gpu.sbatch")],
                 env={k: v for k, v in env.items() if k != "MODEL_DIR"})
  assert missing.returncode != 0 and "MODEL_DIR" in missing.stderr


def test_colab_notebook_is_valid(tmp_path):
  del tmp_path
  _notebook_code()


def _notebook_code() -> list[str]:
  """The notebook's code cells, after checking it is a valid, output-free nbformat-4 notebook
  whose training command is the tiny config's."""
  nb = json.loads((LAUNCH / "colab_quickstart.ipynb").read_text())
  assert nb["nbformat"] == 4 and isinstance(nb["nbformat_minor"], int)
  assert nb["metadata"]["kernelspec"]["language"] == "python"
  assert nb["cells"]
  for cell in nb["cells"]:
    assert cell["cell_type"] in ("code", "markdown")
    assert isinstance(cell["metadata"], dict)
    assert isinstance(cell["source"], list) and all(isinstance(s, str) for s in cell["source"])
    if cell["cell_type"] == "code":
      assert cell["outputs"] == [] and cell["execution_count"] is None
  code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
  assert any("pip install" in c for c in code)
  train_lines = [l for c in code for l in c.splitlines() if l.startswith("TRAIN_CMD = ")]
  assert train_lines == ['TRAIN_CMD = "python -m llmrec_jax.train --gin_file=idgenrec_tiny.gin"']
  assert [l for c in code for l in c.splitlines() if l.startswith("OVERRIDES = ")] == [
      'OVERRIDES = []  # more --gin.NAME=VALUE flags, e.g. ["--gin.ROUNDS=1"]']
  return code


@pytest.mark.slow  # a fresh Python process trains (about a minute): `make test-slow`
def test_colab_notebook_runs(tmp_path):
  code = _notebook_code()
  # Script = the code cells without shell magics (the install), run as they are: the real
  # training command at a tiny size (OVERRIDES), then the real plot cell.
  # (No generator at this size: sequential IDs. demo_test runs the generator's whole schedule.)
  tiny = ["--gin.ROUNDS=1", "--gin.REC_EPOCHS=0.05", "--gin.ID_EPOCHS=0.0", "--gin.MAX_EVAL_EXAMPLES=12",
          "--gin.train.initial_ids='sequential'", "--gin.train.synthetic_users=30",
          "--gin.train.synthetic_items=24", "--gin.train.dataset_vocab_size=300"]
  lines = [l for c in code for l in c.splitlines() if not l.lstrip().startswith(("!", "%"))]
  script = "\n".join(l if not l.startswith("OVERRIDES = ") else f"OVERRIDES = {tiny!r}" for l in lines)
  (tmp_path / "nb.py").write_text(script + "\n")
  proc = _run([sys.executable, "nb.py"], cwd=tmp_path, env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  run_dir = tmp_path / "runs" / "idgenrec_tiny"
  results = json.loads((run_dir / "results.json").read_text())
  assert results["complete"] and set(results["best"]["test"]) >= {"hit@10", "ndcg@10"}
  png = proc.stdout.strip().splitlines()[-1].removeprefix("plot written to ").strip()
  assert pathlib.Path(png).is_file() and pathlib.Path(png).stat().st_size > 1000
