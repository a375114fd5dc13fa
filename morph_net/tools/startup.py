"""Start-up of the command-line programs: quiet by default, --verbosity loud.

On a machine without a GPU, TensorFlow's C++ start-up writes notes such as

  I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine,
      GPU will not be used.
  E0000 ... cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA
      error: Failed call to cuInit: UNKNOWN ERROR (303)

straight to the process's stderr (file descriptor 2) while it is imported
and while it first lists its devices; then no more. `TF_CPP_MIN_LOG_LEVEL=3`
(set before the import) hides the E line but not the I lines, which are
written before absl::InitializeLog, whatever the level (tried on TF 2.21).
And absl's `app.run` sets Python logging to INFO when `--verbosity` is not
given, so MorphNet's analysis notes (e.g. "OpGroup not regularized due to
blacklist: ... logits/MatMul", which is by design: a classifier's output
keeps its width) read like faults.

A program calls `quiet_start()` first thing, before anything imports
TensorFlow, and runs its main with `run(main)`:

  * `quiet_start()`: unless `--verbosity` (`-v`) is on the command line,
    imports TensorFlow and lists its devices with file descriptor 2 caught,
    then writes back every caught line but TensorFlow's known start-up notes
    (`START_UP_NOTES`): a warning or error of any other kind still shows.
  * `run(main)`: `absl.app.run(main)` with Python logging at WARNING unless
    `--verbosity` is given (then at that level, INFO for 0).

Nothing here imports TensorFlow at module level.
"""

import os
import sys
import tempfile
from typing import Callable, List, Optional, Sequence

from absl import app
from absl import flags
from absl import logging

__all__ = ['START_UP_NOTES', 'verbosity_requested', 'quiet_start',
           'keep_line', 'run']

# Text of the lines TensorFlow's C++ start-up writes on a machine without a
# GPU (and of its CPU-instruction note), which quiet_start drops.
START_UP_NOTES = (
    'All log messages before absl::InitializeLog() is called are written to '
    'STDERR',
    'cudart_stub.cc',  # Could not find cuda drivers on your machine ...
    'failed call to cuInit',
    'cpu_feature_guard.cc',  # This TensorFlow binary is optimized to use ...
    'To enable the following instructions:',  # ... its second line.
    # On CPUs with oneDNN's instructions (e.g. AVX-512, AMX), at import:
    'oneDNN custom operations are on',
)

_VERBOSITY_FLAGS = ('--verbosity', '-verbosity', '--v', '-v')


def verbosity_requested(argv: Optional[Sequence[str]] = None) -> bool:
  """Whether the command line sets absl's --verbosity (or -v).

  Args:
    argv: the command line (default `sys.argv`); its first item is the
      program and is not read.
  """
  argv = sys.argv if argv is None else argv
  for arg in argv[1:]:
    if arg == '--':
      break
    if arg in _VERBOSITY_FLAGS or arg.split('=', 1)[0] in _VERBOSITY_FLAGS:
      return True
  return False


def keep_line(line: str) -> bool:
  """Whether a line TensorFlow's start-up wrote is shown (not a known note)."""
  return not any(note in line for note in START_UP_NOTES)


def quiet_start(argv: Optional[Sequence[str]] = None) -> None:
  """Imports TensorFlow without its known start-up notes on stderr.

  With --verbosity on the command line, imports it as it is (every note).
  Must run before anything imports TensorFlow; afterwards it only imports it
  (what TensorFlow wrote at its import is gone by then).

  Args:
    argv: the command line (default `sys.argv`).
  """
  if verbosity_requested(argv) or 'tensorflow' in sys.modules:
    import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
    return
  sys.stderr.flush()
  saved = os.dup(2)
  imported = False  # On an error, every caught line is written back.
  with tempfile.TemporaryFile() as caught:
    os.dup2(caught.fileno(), 2)
    try:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      tf.config.list_physical_devices()
      sys.stderr.flush()
      imported = True
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      caught.seek(0)
      lines = caught.read().decode('utf-8', 'replace').splitlines(True)
      kept = ''.join(l for l in lines if not imported or keep_line(l))
      if kept:
        sys.stderr.write(kept)
        sys.stderr.flush()


def run(main: Callable[[List[str]], Optional[int]],
        argv: Optional[List[str]] = None) -> None:
  """`absl.app.run(main)`, logging at WARNING unless --verbosity is given.

  Args:
    main: the program's main(argv).
    argv: the command line (default `sys.argv`).
  """

  def at_default_verbosity(args):
    if not flags.FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)
    return main(args)

  app.run(at_default_verbosity, argv=argv)

