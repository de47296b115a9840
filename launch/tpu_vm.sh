#!/usr/bin/env bash
# Manage a Cloud TPU VM (single- or multi-host) and run the same command on every worker.
#
# Usage:
#   launch/tpu_vm.sh SUBCOMMAND --name NAME --zone ZONE [options] [-- COMMAND ARGS...]
#
# Subcommands:
#   create   gcloud compute tpus tpu-vm create (needs --accelerator, --version)
#   setup    clone/update the repo on every worker and pip install it with jax[tpu]
#   run      run COMMAND on all workers (JAX multi-controller: every host runs the same program),
#            teeing each worker's output to --remote_log. Default COMMAND:
#            python3 -m llmrec_jax.train --gin_file=idgenrec.gin (add --gin.MODEL_DIR=gs://...)
#   logs     copy --remote_log from each of --num_workers workers to --local_dir/worker_I.log
#   delete   delete the TPU VM
# Options:
#   --name NAME            TPU VM name (or $TPU_NAME)            --zone ZONE (or $TPU_ZONE)
#   --project PROJECT      GCP project (default: gcloud's)       --accelerator TYPE (e.g. v5p-32)
#   --version RUNTIME      TPU software version (e.g. v2-alpha-tpuv5)
#   --repo URL             git URL for setup (or $LLMREC_REPO)   --remote_dir DIR (default llmrec_jax)
#   --remote_log PATH      (default llmrec_run.log)              --local_dir DIR (default ./tpu_logs)
#   --num_workers N        hosts of the slice, for logs (default 1)
#   --dry_run              print the gcloud commands instead of running them
# Model dirs and data must be on GCS (gs://...) so that every host sees them.
set -euo pipefail

usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "tpu_vm.sh: $*" >&2; echo >&2; usage >&2; exit 2; }

[[ $# -ge 1 ]] || die "missing SUBCOMMAND"
sub="$1"; shift
case "$sub" in
  create|setup|run|logs|delete) ;;
  -h|--help|help) usage; exit 0 ;;
  *) die "unknown subcommand '$sub'" ;;
esac

name="${TPU_NAME:-}"; zone="${TPU_ZONE:-}"; project=""; accelerator=""; version=""
repo="${LLMREC_REPO:-}"; remote_dir="llmrec_jax"; remote_log="llmrec_run.log"
local_dir="./tpu_logs"; num_workers=1; dry_run=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --) shift; break ;;
    --dry_run) dry_run=1; shift ;;
    --*=*) key="${1%%=*}"; set -- "$key" "${1#*=}" "${@:2}" ;;
    --name|--zone|--project|--accelerator|--version|--repo|--remote_dir|--remote_log|--local_dir|--num_workers)
      [[ $# -ge 2 ]] || die "$1 needs a value"
      case "$1" in
        --name) name="$2" ;; --zone) zone="$2" ;; --project) project="$2" ;;
        --accelerator) accelerator="$2" ;; --version) version="$2" ;; --repo) repo="$2" ;;
        --remote_dir) remote_dir="$2" ;; --remote_log) remote_log="$2" ;;
        --local_dir) local_dir="$2" ;; --num_workers) num_workers="$2" ;;
      esac
      shift 2 ;;
    *) die "unknown option '$1' (put the command after --)" ;;
  esac
done
[[ -n "$name" ]] || die "--name is required"
[[ -n "$zone" ]] || die "--zone is required"
[[ "$num_workers" =~ ^[1-9][0-9]*$ ]] || die "--num_workers must be a positive integer"

# gcloud, or its printout under --dry_run (shell-quoted, one command per line).
gc() {
  if [[ "$dry_run" == 1 ]]; then
    printf '%q ' gcloud "$@" | sed 's/ $//'; echo
  else
    gcloud "$@"
  fi
}
common=(--zone "$zone")
[[ -z "$project" ]] || common+=(--project "$project")

case "$sub" in
  create)
    [[ -n "$accelerator" && -n "$version" ]] || die "create needs --accelerator and --version"
    gc compute tpus tpu-vm create "$name" "${common[@]}" --accelerator-type "$accelerator" \
      --version "$version"
    ;;
  setup)
    [[ -n "$repo" ]] || die "setup needs --repo URL (or \$LLMREC_REPO)"
    remote="set -euo pipefail; if [ -d $(printf '%q' "$remote_dir") ]; then git -C $(printf '%q' "$remote_dir") pull --ff-only; else git clone $(printf '%q' "$repo") $(printf '%q' "$remote_dir"); fi; python3 -m pip install -q -e $(printf '%q' "$remote_dir") 'jax[tpu]'"
    gc compute tpus tpu-vm ssh "$name" "${common[@]}" --worker=all --command="$remote"
    ;;
  run)
    if [[ $# -eq 0 ]]; then set -- python3 -m llmrec_jax.train --gin_file=idgenrec.gin; fi
    cmd="$(printf '%q ' "$@")"
    remote="set -o pipefail; cd $(printf '%q' "$remote_dir") && ${cmd}2>&1 | tee $(printf '%q' "$remote_log")"
    gc compute tpus tpu-vm ssh "$name" "${common[@]}" --worker=all --command="$remote"
    ;;
  logs)
    [[ "$dry_run" == 1 ]] || mkdir -p "$local_dir"
    for ((w = 0; w < num_workers; w++)); do
      gc compute tpus tpu-vm scp "$name:$remote_dir/$remote_log" "$local_dir/worker_$w.log" \
        "${common[@]}" --worker="$w"
    done
    ;;
  delete)
    gc compute tpus tpu-vm delete "$name" "${common[@]}" --quiet
    ;;
esac
