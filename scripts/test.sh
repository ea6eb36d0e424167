#!/usr/bin/env bash
# Install campaigns into .venv (if needed) and run the test suite. Extra arguments go to pytest.
# Slurm tests run when a Slurm cluster answers (bash scripts/dev/slurm-cluster.sh up) and skip
# otherwise -- except with CI=true or CAMPAIGNS_REQUIRE_SLURM=1, where skipping them fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m pytest "$@"
