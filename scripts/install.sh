#!/usr/bin/env bash
# Project installer: Debian packages + the Python package (editable).
#
#   scripts/install.sh [main|test|bazel|jax|torch]
#
#   main   dataset-fashion-mnist + `pip install -e ".[examples]"`   (default)
#   test   dataset-fashion-mnist + `pip install -e ".[test]"`
#   bazel  dataset-fashion-mnist + bazel-bootstrap bazel-rules-java
#          bazel-platforms + `pip install -e ".[test]"` (Bazel runs the tests)
#   jax    dataset-fashion-mnist + a virtual environment $JAX_VENV (default
#          ~/.cache/morph_net/venv-jax) WITHOUT TensorFlow: setup.py's extra `jax`
#          and this checkout on its path (KERAS_BACKEND=jax tests)
#   torch  dataset-fashion-mnist + a virtual environment $TORCH_VENV (default
#          ~/.cache/morph_net/venv-torch) WITHOUT TensorFlow: PyTorch's
#          CPU-only wheel from $TORCH_FIND_LINKS, then setup.py's extra `torch`
#          and this checkout on its path (KERAS_BACKEND=torch tests). Exits
#          with status 75 and a warning, installing nothing, when torch is
#          not in the venv yet and $TORCH_FIND_LINKS cannot be reached.
#
# Idempotent: apt is skipped when every wanted Debian package is already
# installed (checked with `dpkg -s`), so reruns are fast.  Needs root (or
# sudo) only when a Debian package is actually missing.
#
# Environment:
#   PYTHON          interpreter to install into (default: python3)
#   SKIP_APT=1      never call apt-get (packages must already be present)
#   SKIP_PIP=1      skip the pip step
#   JAX_VENV        the virtual environment of `jax` (default ~/.cache/morph_net/venv-jax)
#   TORCH_VENV      the virtual environment of `torch` (default ~/.cache/morph_net/venv-torch)
#   TORCH_FIND_LINKS where pip finds the CPU-only torch wheel when pip's own
#                   configured find-links have none (pip --find-links: a page
#                   of links or a directory of wheels; default
#                   https://download.pytorch.org/whl/cpu/torch/, the torch
#                   page of PyTorch's CPU index https://download.pytorch.org/whl/cpu)
set -euo pipefail

mode="${1:-main}"
case "$mode" in
  main|test|bazel|jax|torch) ;;
  -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
  *) echo "usage: $0 [main|test|bazel|jax|torch]" >&2; exit 2 ;;
esac

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

debs=(dataset-fashion-mnist)
if [[ "$mode" == bazel ]]; then
  debs+=(bazel-bootstrap bazel-rules-java bazel-platforms)
fi

# --- Debian packages -------------------------------------------------------
missing=()
for pkg in "${debs[@]}"; do
  status="$(dpkg -s "$pkg" 2>/dev/null || true)"
  if [[ $'\n'"$status"$'\n' != *$'\nStatus: install ok installed\n'* ]]; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install.sh: Debian packages already installed: ${debs[*]}"
elif [[ "${SKIP_APT:-0}" == 1 ]]; then
  echo "install.sh: missing Debian packages (SKIP_APT=1): ${missing[*]}" >&2
  exit 1
else
  sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
      echo "install.sh: need root to install: ${missing[*]}" >&2; exit 1
    fi
  fi
  echo "install.sh: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- jax, torch: a virtual environment without TensorFlow ------------------
# The layer-level engine on KERAS_BACKEND=jax or torch (docs/guides/
# backends.md). The package is not pip-installed there (its install_requires
# pull TensorFlow): the venv gets setup.py's extra of the backend and a .pth
# file putting this checkout on its path.
#
# torch: PyPI's torch wheel for Linux pulls the CUDA libraries (gigabytes of
# nvidia-* wheels); the CPU-only wheel is served by PyTorch's own index, which
# an extra cannot name. It is installed first and alone (--no-index
# --no-deps: no other index can substitute the CUDA wheel) from
# $TORCH_FIND_LINKS; the extra then finds torch satisfied and installs its
# dependencies from the ordinary index.
install_cpu_torch() {
  local venv="$1"
  local links="${TORCH_FIND_LINKS:-https://download.pytorch.org/whl/cpu/torch/}"
  local version reason
  if version="$("$venv/bin/python" -c 'import importlib.metadata as m
print(m.version("torch"))' 2>/dev/null)"; then
    echo "install.sh: torch $version already in $venv"
    return 0
  fi
  # First pip's own configuration (its find-links, e.g. a wheel directory of
  # this machine's package mirror): a torch wheel there is taken as it is
  # (a CUDA build is refused below).
  if "$venv/bin/python" -m pip install -q --no-index --no-deps \
      --only-binary :all: torch >/dev/null 2>&1; then
    echo "install.sh: torch from pip's configured find-links into $venv"
    return 0
  fi
  # The probe exits 75 (printing why) only when the wheels cannot be reached;
  # any other failure of the venv's Python stops this script as it is.
  local probe=0
  reason="$("$venv/bin/python" -c 'import os, sys, urllib.request
source = sys.argv[1]
if not os.path.isdir(source):
  try:
    urllib.request.urlopen(source, timeout=30).close()
  except Exception as e:  # pylint: disable=broad-except
    print("%s: %s" % (type(e).__name__, e))
    sys.exit(75)' "$links")" || probe=$?
  if ((probe != 0 && probe != 75)); then
    echo "install.sh: $venv/bin/python failed (status $probe) probing $links" >&2
    exit "$probe"
  elif ((probe == 75)); then
    cat >&2 <<EOF
install.sh: WARNING: PyTorch NOT installed: its CPU-only wheels cannot be
  reached at $links
  ($reason).
  PyPI's torch for Linux pulls gigabytes of CUDA libraries and is not used.
  Set TORCH_FIND_LINKS to a reachable copy of that page or to a directory
  holding a torch CPU wheel (torch-*+cpu-*.whl). Exit status 75.
EOF
    exit 75
  fi
  echo "install.sh: $venv/bin/python -m pip install --no-index --no-deps --find-links $links torch"
  "$venv/bin/python" -m pip install -q --no-index --no-deps --only-binary :all: \
      --find-links "$links" torch
}

if [[ "$mode" == jax || "$mode" == torch ]]; then
  cd "$repo_root"
  if [[ "$mode" == jax ]]; then
    venv="${JAX_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/morph_net/venv-jax}"
  else
    venv="${TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/morph_net/venv-torch}"
  fi
  if [[ ! -x "$venv/bin/python" ]]; then
    echo "install.sh: $PYTHON -m venv $venv"
    "$PYTHON" -m venv "$venv"
  fi
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  # setup.py's extras_require[mode], read without running setup.py.
  mapfile -t requirements < <("$venv/bin/python" -c 'import ast, sys
for node in ast.walk(ast.parse(open("setup.py").read())):
  if isinstance(node, ast.keyword) and node.arg == "extras_require":
    print("\n".join(ast.literal_eval(node.value)[sys.argv[1]]))' "$mode")
  if [[ "${SKIP_PIP:-0}" == 1 ]]; then
    echo "install.sh: SKIP_PIP=1, not installing into $venv"
  else
    if [[ "$mode" == torch ]]; then
      install_cpu_torch "$venv"
    fi
    echo "install.sh: $venv/bin/python -m pip install ${requirements[*]}"
    "$venv/bin/python" -m pip install -q "${requirements[@]}"
    if [[ "$mode" == torch ]]; then
      # "<version> <CUDA version or None>"
      build="$("$venv/bin/python" -c 'import torch
print(torch.__version__, torch.version.cuda)')"
      if [[ "$build" != *" None" ]]; then
        echo "install.sh: torch in $venv is a CUDA build (torch, CUDA:" \
             "$build), not the CPU-only one: delete $venv and point" \
             "TORCH_FIND_LINKS at CPU wheels." >&2
        exit 1
      fi
      echo "install.sh: torch ${build% None} (CPU-only) in $venv"
    fi
  fi
  site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
  echo "$repo_root" > "$site/morph_net_checkout.pth"
  echo "install.sh: run the layer-level tests with: KERAS_BACKEND=$mode $venv/bin/python -m pytest tests/keras/test_layer_regularizer.py tests/surgery/test_layer_cost.py"
  exit 0
fi

# --- Python package ---------------------------------------------------------
case "$mode" in
  main) extra=examples ;;
  test|bazel) extra=test ;;
esac

cd "$repo_root"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# Debian's own python3 is "externally managed" (PEP 668): installing into it
# needs pip's explicit consent. (The project's machines use a pyenv Python.)
if "$PYTHON" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))' \
    2>/dev/null; then
  export PIP_BREAK_SYSTEM_PACKAGES=1
fi
if [[ "${SKIP_PIP:-0}" == 1 ]]; then
  echo "install.sh: SKIP_PIP=1, not installing the Python package"
else
  echo "install.sh: $PYTHON -m pip install -e .[$extra]"
  "$PYTHON" -m pip install -q -e ".[$extra]"
fi

# --- Bazel: point --config=offline at this interpreter ----------------------
# .bazelrc names the interpreter of the project's machines; where the one
# installed into above lives elsewhere, record it in .bazelrc.local
# (git-ignored, read by .bazelrc). A hand-written .bazelrc.local is kept.
if [[ "$mode" == bazel ]]; then
  py_exe="$("$PYTHON" -c 'import sys; print(sys.executable)')"
  local_rc="$repo_root/.bazelrc.local"
  marker="# Written by scripts/install.sh"
  if grep -qxF -- "build:offline --python_path=${py_exe}" "$repo_root/.bazelrc"; then
    if [[ -f "$local_rc" ]] && head -n1 "$local_rc" | grep -q "^$marker"; then
      rm -f "$local_rc"
    fi
  elif [[ ! -f "$local_rc" ]] || head -n1 "$local_rc" | grep -q "^$marker"; then
    printf '%s (Python with TensorFlow for Bazel).\nbuild:offline --python_path=%s\n' \
      "$marker" "$py_exe" > "$local_rc"
    echo "install.sh: wrote $local_rc (--python_path=$py_exe)"
  else
    echo "install.sh: keeping hand-written $local_rc" >&2
  fi
  echo "install.sh: run the tests with: bazel test --config=offline //tests/..."
fi
