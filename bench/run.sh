#!/usr/bin/env bash
# bench/run.sh — entry point of the benchmark (`make bench`): builds one venv per server under
# bench/.venvs/<python version>/ (reused when present), adds trustme to the laurelin venv (the
# driver's Python; it makes the tls workload's certificate), then hands over to bench/run.py,
# which installs the WebSocket client's npm packages (bench/ws/node_modules, `npm ci`) when a ws
# workload needs them and they are missing. The h2c workload needs h2load (nghttp2-client).
#
# Usage: bench/run.sh [--python 3.12] [--reinstall] [run.py options...]
#   --python VERSION|PATH  interpreter for every server venv (default: $BENCH_PYTHON or 3.12)
#   --reinstall            rebuild the venvs and bench/ws/node_modules even if they exist
#   everything else goes to bench/run.py (see `bench/run.sh --help`).
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$BENCH_DIR")"
PYTHON_WANTED="${BENCH_PYTHON:-3.12}"
REINSTALL=0
ORIGINAL_ARGS=("$@")
PASS=()

while (($#)); do
    case "$1" in
        --python)
            [[ $# -ge 2 ]] || { echo "run.sh: --python needs a value" >&2; exit 2; }
            PYTHON_WANTED="$2"
            shift 2
            ;;
        --python=*)
            PYTHON_WANTED="${1#--python=}"
            shift
            ;;
        --reinstall)
            REINSTALL=1
            shift
            ;;
        *)
            PASS+=("$1")
            shift
            ;;
    esac
done

# Resolve the interpreter: a path, a command on PATH (python3.12), or a pyenv install.
find_python() {
    local want="$1" candidate
    if [[ "$want" == */* ]]; then
        [[ -x "$want" ]] && { echo "$want"; return 0; }
        return 1
    fi
    for candidate in "$HOME"/.pyenv/versions/"$want"*/bin/python"${want%%.*}"; do
        [[ -x "$candidate" ]] && { echo "$candidate"; return 0; }
    done
    if command -v "python$want" >/dev/null 2>&1; then
        # Resolve through pyenv shims so the venv records a real interpreter.
        "python$want" -c 'import sys; print(sys.executable)'
        return 0
    fi
    return 1
}

PYTHON="$(find_python "$PYTHON_WANTED")" || {
    echo "run.sh: no Python '$PYTHON_WANTED' found (try --python 3.12 or --python /path/to/python)" >&2
    exit 2
}
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
VENVS="$BENCH_DIR/.venvs/$PYVER"
mkdir -p "$VENVS"

# server name -> pip arguments (laurelin is installed editable from this checkout).
declare -A PACKAGES=(
    [laurelin]="-e $REPO_DIR[standard]"
    [uvicorn]="uvicorn[standard]"
    [hypercorn]="hypercorn[uvloop]"
    [daphne]="daphne"
    [granian]="granian[uvloop]"
)

if [[ $REINSTALL -eq 1 ]]; then
    rm -rf "$BENCH_DIR/ws/node_modules"
fi

for server in laurelin uvicorn hypercorn daphne granian; do
    venv="$VENVS/$server"
    stamp="$venv/.bench-installed"
    if [[ $REINSTALL -eq 1 ]]; then
        rm -rf "$venv"
    fi
    if [[ -f "$stamp" ]]; then
        continue
    fi
    echo "run.sh: creating $venv (Python $PYVER)" >&2
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    # shellcheck disable=SC2086  # the package spec is deliberately word-split
    (cd "$REPO_DIR" && "$venv/bin/pip" install -q ${PACKAGES[$server]})
    touch "$stamp"
done

# bench/run.py runs on the laurelin venv's Python. trustme makes the tls workload's certificate
# there (without it run.py falls back to `openssl req -x509`); laurelin itself does not use it.
if ! "$VENVS/laurelin/bin/python" -c 'import trustme' 2>/dev/null; then
    echo "run.sh: installing trustme into $VENVS/laurelin" >&2
    "$VENVS/laurelin/bin/pip" install -q trustme
fi

command -v wrk >/dev/null || { echo "run.sh: wrk not found (apt-get install -y wrk)" >&2; exit 2; }
command -v taskset >/dev/null || { echo "run.sh: taskset not found (util-linux)" >&2; exit 2; }

# The command line as typed, for the report.
BENCH_COMMAND="bench/run.sh"
for arg in "${ORIGINAL_ARGS[@]+"${ORIGINAL_ARGS[@]}"}"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./,=:+-]+$ ]]; then
        BENCH_COMMAND+=" $arg"
    else
        BENCH_COMMAND+=" $(printf '%q' "$arg")"
    fi
done
export BENCH_COMMAND

exec "$VENVS/laurelin/bin/python" "$BENCH_DIR/run.py" --venvs "$VENVS" \
    "${PASS[@]+"${PASS[@]}"}"
