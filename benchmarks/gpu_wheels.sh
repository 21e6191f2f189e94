#!/usr/bin/env bash
# Wheels for a GPU machine that has no package registry but already holds a CUDA torch and the
# common scientific stack (numpy, scipy, h5py, pyyaml, pillow, transformers, safetensors, numba,
# pandas, scikit-learn, pytest...): everything else contextmri and its tests import, pinned to
# the versions its test suite passes with. Run it where PyPI is reachable; it fills .whl/
# (about 40 MiB), which benchmarks/gpu_check.sh installs from (--no-index) when present.
#
#     bash benchmarks/gpu_wheels.sh [PYTHON_VERSION]      # default 3.12 (the GPU image's)
set -euo pipefail
cd "$(dirname "$0")/.."
PYV=${1:-3.12}
PKGS="sigpy==0.1.27 PyWavelets==1.9.0 ismrmrd==1.15.0 xsdata==26.10 nibabel==5.4.2
nilearn==0.14.1 diffusers==0.42.1 importlib_metadata==10.2.0 lazy-importer==0.1.0
pydicom==3.0.2 pynetdicom==3.0.4 gadgetron==1.4.1 multimethod==2.1 pyFFTW==0.15.1"
mkdir -p .whl
PLATFORMS=""
for n in 17 27 28 34; do PLATFORMS="$PLATFORMS --platform manylinux_2_${n}_x86_64"; done
# shellcheck disable=SC2086
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" \
  --implementation cp $PLATFORMS --platform manylinux2014_x86_64 -d .whl $PKGS
du -sh .whl
