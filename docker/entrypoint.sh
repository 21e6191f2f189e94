#!/bin/bash
# contextmri image entrypoint (run under tini): activate the Gadgetron conda env, then
#   no argument or a first argument that is an option  -> gadgetron "$@"
#   anything else                                      -> run it as a command
# so `docker run IMAGE`, `docker run IMAGE -p 9010` and `docker run IMAGE contextmri serve ...`
# all work. CONDA_PROFILE / CONDA_ENV_NAME override the defaults (tests use them).
set -eo pipefail

CONDA_PROFILE=${CONDA_PROFILE:-/opt/conda/etc/profile.d/conda.sh}
CONDA_ENV_NAME=${CONDA_ENV_NAME:-gadgetron}

if [ -f "$CONDA_PROFILE" ]; then
    # shellcheck disable=SC1090
    . "$CONDA_PROFILE"
    conda activate "$CONDA_ENV_NAME"
else
    echo "contextmri-entrypoint: $CONDA_PROFILE not found, running without conda activation" >&2
fi

case "${1:-}" in
    "" | -*) exec gadgetron "$@" ;;
    *) exec "$@" ;;
esac
