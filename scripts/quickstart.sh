#!/usr/bin/env bash
# Install campaigns into .venv and run the 30-job example campaign end to end on this machine
# (local backend, SQLite): validate, init, submit, monitor until done, then qa of the outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
CONFIG=${1:-config/examples/test_campaign.yaml}
RUN=.venv/bin/run-campaign
$RUN validate "$CONFIG"
$RUN init "$CONFIG"
$RUN submit "$CONFIG" --backend local
$RUN monitor "$CONFIG" --interval 2
$RUN qa "$CONFIG"
echo
echo "Done. Outputs are under ./campaigns/ (catalogs/, logs/, metadata/, qa/)."
echo "Activate the environment with 'source .venv/bin/activate' to use 'run-campaign' directly."
