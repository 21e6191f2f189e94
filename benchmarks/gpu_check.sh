#!/usr/bin/env bash
# The one command to run when a GPU is there (no arguments), from a fresh checkout:
#
#     bash benchmarks/gpu_check.sh
#
# 1. Finds a Python whose torch sees CUDA: $PYTHON, .venv-gpu, .venv, then python3. A working
#    CUDA torch is never reinstalled: .venv-gpu is a venv that sees that interpreter's
#    packages (a .pth file, so it works when python3 is itself a venv) and gets only what is
#    missing, with torch pinned to the version that is there. With no CUDA torch but an NVIDIA
#    GPU, .venv-gpu gets `pip install torch` (PyPI's Linux wheel is the CUDA build). Without a
#    GPU the CPU venv (.venv, made by .ci/install when missing) runs the CPU parts.
#    Offline machines: put wheels in .whl/ (or $CONTEXTMRI_WHEELS); benchmarks/gpu_wheels.sh
#    downloads the set a machine with torch but none of our other dependencies needs.
# 2. Runs benchmarks/gpu_check.py (CUDA tests, timings, replay GPU vs CPU, torchrun training)
#    with a hard limit: the whole command, install included, ends within 600 s
#    ($GPU_CHECK_LIMIT_S), leaving whatever was measured in gpu_check_out/gpu_check.json
#    ($GPU_CHECK_OUT).
# Exit code: 0 when every part that ran passed (without CUDA: the CPU parts), else 1.
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
LIMIT=${GPU_CHECK_LIMIT_S:-600}
WHEELS=${CONTEXTMRI_WHEELS:-.whl}
export PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
mkdir -p gpu_check_out
log() { echo "[gpu_check] $*"; }
left() { echo $((LIMIT - ($(date +%s) - START))); }

has_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }
has_cuda_torch() { "$1" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; }
missing_deps() {  # the pip names of what contextmri and its tests import but PY lacks
  "$1" - <<'EOF'
import importlib.util
deps = {"numpy": "numpy", "scipy": "scipy", "sigpy": "sigpy", "pywt": "PyWavelets",
        "ismrmrd": "ismrmrd", "h5py": "h5py", "yaml": "pyyaml", "nibabel": "nibabel",
        "nilearn": "nilearn", "PIL": "pillow", "diffusers": "diffusers",
        "transformers": "transformers", "safetensors": "safetensors", "pydicom": "pydicom",
        "pynetdicom": "pynetdicom", "tqdm": "tqdm", "pytest": "pytest",
        "pytest_timeout": "pytest-timeout", "gadgetron": "gadgetron"}
print(" ".join(pip for mod, pip in deps.items() if importlib.util.find_spec(mod) is None))
EOF
}

pip_install() {  # pip_install PY PACKAGES...: from the wheel folder when there is one
  local py=$1; shift
  local src=()
  [ -d "$WHEELS" ] && src=(--no-index --find-links "$WHEELS")
  log "installing $* ${src[*]:+(from $WHEELS)}"
  timeout $(( $(left) > 300 ? 240 : $(left) / 2 )) "$py" -m pip install -q "${src[@]}" "$@"
}

venv_over() {  # venv_over BASE_PY: .venv-gpu seeing BASE_PY's packages, torch pinned
  local base=$1
  [ -x .venv-gpu/bin/python ] || "$base" -m venv .venv-gpu || return 1
  local site
  site=$(.venv-gpu/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  "$base" -c "import site, sys; print('\n'.join(site.getsitepackages() + [p for p in sys.path if p.endswith('site-packages')]))" \
    | awk '!seen[$0]++' > "$site/zz_base_python.pth"
}

pick_python() {
  local cand
  for cand in ${PYTHON:-} .venv-gpu/bin/python .venv/bin/python python3; do
    if [ -n "$cand" ] && command -v "$cand" >/dev/null 2>&1 && has_cuda_torch "$cand"; then
      echo "$cand"; return 0
    fi
  done
  return 1
}

PY=""
has_gpu && PY=$(pick_python)
if [ -n "$PY" ]; then
  log "CUDA torch found: $PY ($("$PY" -c 'import torch; print(torch.__version__)'))"
  MISSING=$(missing_deps "$PY")
  if [ -n "$MISSING" ] && [ "$PY" != ".venv-gpu/bin/python" ] && [ "$PY" != ".venv/bin/python" ]; then
    venv_over "$PY" && PY=.venv-gpu/bin/python
  fi
  MISSING=$(missing_deps "$PY")
  if [ -n "$MISSING" ]; then  # torch pinned to the working one: pip may not replace it
    "$PY" -c "import torch; print('torch==' + torch.__version__)" > gpu_check_out/constraints.txt
    # shellcheck disable=SC2086
    pip_install "$PY" -c gpu_check_out/constraints.txt $MISSING || log "pip install failed"
  fi
elif has_gpu; then
  log "an NVIDIA GPU but no CUDA torch: installing torch into .venv-gpu"
  [ -x .venv-gpu/bin/python ] || python3 -m venv .venv-gpu
  PY=.venv-gpu/bin/python
  pip_install "$PY" torch || log "pip install torch failed"
  # shellcheck disable=SC2086
  pip_install "$PY" $(missing_deps "$PY") || log "pip install failed"
else
  log "no CUDA GPU here: the CPU parts run in .venv"
  [ -x .venv/bin/python ] || timeout "$(left)" bash .ci/install
  PY=.venv/bin/python
fi
MISSING=$(missing_deps "$PY")
[ -z "$MISSING" ] || log "still missing: $MISSING (the parts that need them will fail)"

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
REST=$(( $(left) - 5 ))
log "running benchmarks/gpu_check.py with $PY, $REST s left"
timeout -k 5 "$REST" "$PY" benchmarks/gpu_check.py --deadline $((START + LIMIT - 5)) 2>&1 \
  | tee gpu_check_out/gpu_check.log
RC=${PIPESTATUS[0]}
[ "$RC" = 124 ] && log "stopped at the time limit; the JSON holds what was measured"
exit "$RC"
