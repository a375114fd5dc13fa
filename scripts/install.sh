#!/usr/bin/env bash
# Project installer: Debian packages + the Python package (editable).
#
#   scripts/install.sh [main|test|bazel|jax]
#
#   main   dataset-fashion-mnist + `pip install -e ".[examples]"`   (default)
#   test   dataset-fashion-mnist + `pip install -e ".[test]"`
#   bazel  dataset-fashion-mnist + bazel-bootstrap bazel-rules-java
#          bazel-platforms + `pip install -e ".[test]"` (Bazel runs the tests)
#   jax    dataset-fashion-mnist + a virtual environment $JAX_VENV (default
#          ~/.cache/morph_net/venv-jax) WITHOUT TensorFlow: setup.py's extra `jax`
#          and this checkout on its path (KERAS_BACKEND=jax tests)
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
set -euo pipefail

mode="${1:-main}"
case "$mode" in
  main|test|bazel|jax) ;;
  -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
  *) echo "usage: $0 [main|test|bazel|jax]" >&2; exit 2 ;;
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

# --- jax: a virtual environment without TensorFlow -------------------------
# The layer-level engine on KERAS_BACKEND=jax (docs/guides/backends.md). The
# package is not pip-installed there (its install_requires pull TensorFlow):
# the venv gets setup.py's extra `jax` and a .pth file putting this checkout
# on its path.
if [[ "$mode" == jax ]]; then
  cd "$repo_root"
  venv="${JAX_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/morph_net/venv-jax}"
  if [[ ! -x "$venv/bin/python" ]]; then
    echo "install.sh: $PYTHON -m venv $venv"
    "$PYTHON" -m venv "$venv"
  fi
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  # setup.py's extras_require['jax'], read without running setup.py.
  mapfile -t jax_requirements < <("$venv/bin/python" -c 'import ast
for node in ast.walk(ast.parse(open("setup.py").read())):
  if isinstance(node, ast.keyword) and node.arg == "extras_require":
    print("\n".join(ast.literal_eval(node.value)["jax"]))')
  if [[ "${SKIP_PIP:-0}" == 1 ]]; then
    echo "install.sh: SKIP_PIP=1, not installing into $venv"
  else
    echo "install.sh: $venv/bin/python -m pip install ${jax_requirements[*]}"
    "$venv/bin/python" -m pip install -q "${jax_requirements[@]}"
  fi
  site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
  echo "$repo_root" > "$site/morph_net_checkout.pth"
  echo "install.sh: run the layer-level tests with: KERAS_BACKEND=jax $venv/bin/python -m pytest tests/keras/test_layer_regularizer.py tests/surgery/test_layer_cost.py"
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
