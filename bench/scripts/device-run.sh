#!/usr/bin/env bash
# bench:models on the device machine (a GPU, no Node, no registry), from the repository root,
# with what `pnpm bench:device-pack` put in bench/.device. Two calls, because the device tool
# moves at most 64 MiB with the repository (bench/README.md, "On a real GPU"):
#
#   core   carry .gl and bench/.device/core.tar.xz: unpacks Node, Dawn and the bundle, checks
#          Dawn's adapter, exports the ONNX files with the machine's PyTorch, then times every
#          network's forward pass against TF.js WebGPU and PyTorch on CUDA (a fallback result)
#   full   carry .gl and bench/.device/ort.tar.xz, on the still-warm machine: adds
#          onnxruntime's WebGPU EP and runs the whole benchmark again, every peer in one run
#
# Further arguments go to bench:models (defaults: --batch 8 --reps 8; core adds --no-train
# --no-breakdown --reps 3). Logs and result files go
# to $OUT (the device tool's folder), else bench/.device/out. PYTHON and TORCH_DEVICE (cuda)
# choose the PyTorch peer.
set -euo pipefail
stage=${1:-}
[ "$stage" = core ] || [ "$stage" = full ] || { echo "usage: bench/scripts/device-run.sh core|full [bench:models flags]" >&2; exit 2; }
shift
dir=bench/.device
out=${OUT:-$dir/out}
mkdir -p "$out"

# The machine's image may lack the Vulkan loader: .gl holds Debian's (tool library's device README).
if compgen -G '.gl/*.deb' >/dev/null; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -f "$icd" ] && [ -z "${VK_DRIVER_FILES:-}" ]; then export VK_DRIVER_FILES=$icd; fi

archive=$dir/$stage.tar.xz
[ "$stage" = full ] && archive=$dir/ort.tar.xz
[ -f "$archive" ] || { echo "no $archive: run pnpm bench:device-pack here and carry it" >&2; exit 2; }
tar -C "$dir" -xJf "$archive"
node=$dir/bin/node
[ -x "$node" ] || { echo "no $node: the core stage unpacks it; the machine went back between the calls, so run core again" >&2; exit 2; }

python=${PYTHON:-python3}
device=${TORCH_DEVICE:-cuda}
{ nvidia-smi -L || true; "$node" --version; "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' || true; } 2>&1 | tee "$out/machine-$stage.txt"
# Dawn's adapter before anything long: a missing Vulkan driver should cost seconds of device
# time, not the minutes of the ONNX exports.
"$node" --input-type=module -e "
import { create, globals } from '$PWD/$dir/node_modules/webgpu/index.js';
Object.assign(globalThis, globals);
const adapter = await create([]).requestAdapter();
if (!adapter) { console.error('Dawn found no adapter: is the Vulkan loader (.gl) there, and VK_DRIVER_FILES right?'); process.exit(3); }
const i = adapter.info;
console.log('Dawn adapter:', [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(' '));
process.exit(0);
" 2>&1 | tee -a "$out/machine-$stage.txt"
[ "${PIPESTATUS[0]}" = 0 ] || exit 3

# core exports the ONNX files for full, and its own run, forward passes only, is the fallback
# should full not happen, leaving device time for full.
stageArgs=(--peers tfjs,torch --export-onnx --no-train --no-breakdown --reps 3)
[ "$stage" = full ] && stageArgs=(--peers tfjs,ort,torch)
args=(--batch 8 --reps 8 --python "$python" --torch-device "$device" "${stageArgs[@]}" "$@")

set +e
"$node" "$dir/models.mjs" "${args[@]}" 2>&1 | tee "$out/models-$stage.log"
rc=${PIPESTATUS[0]}
set -e
[ -f bench/results/models-latest.json ] && cp bench/results/models-latest.json "$out/models-$stage.json"
exit "$rc"
