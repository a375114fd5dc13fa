"""Atomic file writes: a temp file in the same directory, then a rename.

A reader (TensorBoard, a second process, a crash-interrupted run) sees either
the old file or the whole new one, never a partial write.
"""

import contextlib
import json
import os
import tempfile
from typing import Any, Iterator, IO

__all__ = ['atomic_write', 'atomic_path', 'write_text_atomically',
           'write_json_atomically', 'save_figure']


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


@contextlib.contextmanager
def atomic_write(path: str, binary: bool = False) -> Iterator[IO]:
  """Opens a temp file next to `path`; renames it onto `path` on success.

  Remote paths (`scheme://...`) go through `tf.io.gfile` (write, then
  rename with overwrite); local paths need no TensorFlow. On an exception the temp file is removed and
  `path` is left untouched.

  Args:
    path: the destination file; its directory is created if missing.
    binary: open in binary mode.

  Yields:
    The writable file object.
  """
  directory = os.path.dirname(path) or '.'
  if '://' in path:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.io.gfile.makedirs(directory)
    tmp_path = path + '.tmp'
    try:
      with tf.io.gfile.GFile(tmp_path, 'wb' if binary else 'w') as f:
        yield f
      tf.io.gfile.rename(tmp_path, path, overwrite=True)
    except BaseException:
      if tf.io.gfile.exists(tmp_path):
        tf.io.gfile.remove(tmp_path)
      raise
    return
  os.makedirs(directory, exist_ok=True)
  fd, tmp_path = tempfile.mkstemp(dir=directory, prefix='.tmp_')
  try:
    with os.fdopen(fd, 'wb' if binary else 'w') as f:
      yield f
    # mkstemp creates 0600 files; give the file the mode open() would.
    os.chmod(tmp_path, 0o666 & ~_umask())
    os.replace(tmp_path, path)
  except BaseException:
    if os.path.exists(tmp_path):
      os.remove(tmp_path)
    raise


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """A temp path next to `path`, ending as it does; renamed onto it on success.

  For writers that take a path, not a file (`model.save` wants a name
  ending in `.keras`). A remote `path` gets a local temp file, copied to
  `path` (through a temp name and a rename) on success.

  Args:
    path: the destination file; its directory is created if missing.

  Yields:
    The temp path to write.
  """
  remote = '://' in path
  directory = (tempfile.gettempdir() if remote else
               os.path.dirname(path) or '.')
  os.makedirs(directory, exist_ok=True)
  suffix = os.path.basename(path)
  suffix = suffix[suffix.find('.'):] if '.' in suffix else ''
  fd, tmp_path = tempfile.mkstemp(dir=directory, prefix='.tmp_',
                                  suffix=suffix)
  os.close(fd)
  try:
    yield tmp_path
    if remote:
      with open(tmp_path, 'rb') as source, atomic_write(
          path, binary=True) as target:
        target.write(source.read())
      os.remove(tmp_path)
    else:
      os.chmod(tmp_path, 0o666 & ~_umask())
      os.replace(tmp_path, path)
  except BaseException:
    if os.path.exists(tmp_path):
      os.remove(tmp_path)
    raise


def write_text_atomically(text: str, path: str) -> None:
  """Writes `text` to `path` atomically."""
  with atomic_write(path) as f:
    f.write(text)


def write_json_atomically(data: Any, path: str) -> None:
  """Writes `data` as sorted JSON with indent 2 to `path` atomically."""
  write_text_atomically(json.dumps(data, sort_keys=True, indent=2), path)


def save_figure(fig, path: str, dpi: int = 100) -> str:
  """Lays out a matplotlib figure and writes it as PNG to `path` atomically."""
  fig.tight_layout()
  with atomic_write(path, binary=True) as f:
    fig.savefig(f, format='png', dpi=dpi)
  return path
