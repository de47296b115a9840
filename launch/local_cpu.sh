#!/usr/bin/env bash
# Run any command with N simulated CPU devices (sharding / multi-device code paths on a laptop).
#
# Usage:
#   launch/local_cpu.sh [-n N] [-- COMMAND ARGS...]
#
#   -n, --num_devices N   simulated devices (default: $NUM_DEVICES or 8)
#   COMMAND               default: $PYTHON -m llmrec_jax.train --gin_file=idgenrec_tiny.gin
#                         A leading 'python' is replaced by $PYTHON (default: python3).
# Examples:
#   launch/local_cpu.sh -n 4 -- python -c 'import jax; print(jax.device_count())'   # prints 4
#   launch/local_cpu.sh -n 8 -- python -m llmrec_jax.train --gin_file=idgenrec_tiny.gin \
#       --gin.MODEL_DIR="'/tmp/idgenrec_tiny'" --gin.partitioning.PjitPartitioner.num_partitions=2
set -euo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

num_devices="${NUM_DEVICES:-8}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    -n|--num_devices) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; num_devices="$2"; shift 2 ;;
    --num_devices=*) num_devices="${1#*=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    -*) echo "local_cpu.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) break ;;
  esac
done
if ! [[ "$num_devices" =~ ^[1-9][0-9]*$ ]]; then
  echo "local_cpu.sh: --num_devices must be a positive integer, got '$num_devices'" >&2
  exit 2
fi

python_bin="${PYTHON:-python3}"
if [[ $# -eq 0 ]]; then
  set -- "$python_bin" -m llmrec_jax.train --gin_file=idgenrec_tiny.gin
elif [[ "$1" == python || "$1" == python3 ]]; then
  shift
  set -- "$python_bin" "$@"
fi

# CPU only; drop any earlier device-count flag so ours is the one XLA sees.
export JAX_PLATFORMS=cpu
export CUDA_VISIBLE_DEVICES=""
xla_flags="$(printf '%s' "${XLA_FLAGS:-}" | sed -E 's/--xla_force_host_platform_device_count=[0-9]+//g')"
export XLA_FLAGS="${xla_flags} --xla_force_host_platform_device_count=${num_devices}"
echo "local_cpu.sh: ${num_devices} CPU devices: $*" >&2
exec "$@"
