#!/bin/sh
# Install the peers that `python -m bench` compares cvault with (bench/peers.py), from the system
# package manager, plus matplotlib for the scaling plot. Run once, as root (or with sudo).
# Not needed by the test suite or by .ci/run: the benchmark skips a peer that is missing and says so.
set -eu

if command -v apt-get >/dev/null 2>&1; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        gnupg pass age rclone
else
    echo "install-peers.sh: no apt-get here; install gnupg, pass, age and rclone with the system" \
         "package manager" >&2
    exit 1
fi

# matplotlib (the `bench` extra) into the Python that runs the benchmarks, if one is given:
#   PYTHON=/path/to/venv/bin/python bench/install-peers.sh
if [ -n "${PYTHON:-}" ]; then
    "$PYTHON" -m pip install matplotlib
fi

for tool in gpg pass age rclone; do
    printf '%-7s %s\n' "$tool" "$(command -v "$tool" || echo 'NOT FOUND')"
done
