"""Reading and writing structures: JSON `{name: width}` files.

A structure maps a layer (Keras) or op (TF1 graph) name to its number of
channels. The files use the format of the original MorphNet's structure
exporter: a JSON object with sorted keys and an indent of 2. During training
they are written as `<base_dir>/learned_structure/alive_<step>`, with the
latest one also at `<base_dir>/learned_structure/alive`.
"""

import json
import os
from typing import Dict

from morph_net import errors
from morph_net.structure import atomic_file

__all__ = ['ALIVE_FILENAME', 'STRUCTURE_DIRNAME', 'read_structure',
           'write_structure', 'save_alive_counts_files']

ALIVE_FILENAME = 'alive'
STRUCTURE_DIRNAME = 'learned_structure'


def _open(path: str):
  """`tf.io.gfile.GFile(path)`, or `open(path)` without TensorFlow (local
  paths; the other Keras backends)."""
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ImportError:
    if '://' in path:
      raise errors.MissingDependencyError(
          'Reading %s needs TensorFlow (tf.io.gfile reads remote paths); '
          'install it, or copy the file to a local path.' % path) from None
    return open(path)
  return tf.io.gfile.GFile(path)


def read_structure(path: str) -> Dict[str, int]:
  """Reads a structure file.

  Args:
    path: a local or `tf.io.gfile` path of a JSON `{name: width}` file.

  Returns:
    {name: width}.

  Raises:
    InvalidArgumentError: when the file is not JSON, or not an object of
      integers.
  """
  with _open(path) as f:
    try:
      data = json.load(f)
    except ValueError as e:  # json.JSONDecodeError, UnicodeDecodeError.
      raise errors.InvalidArgumentError(
          '%s is not a structure file: it is not JSON (%s). Expected a JSON '
          'object {layer name: integer width}.' % (path, e)) from e
  if not isinstance(data, dict) or not all(
      isinstance(v, int) for v in data.values()):
    raise errors.InvalidArgumentError(
        '%s is not a structure file: expected a JSON object '
        '{layer name: integer width}.' % path)
  return data


def write_structure(structure: Dict[str, int], path: str) -> None:
  """Writes a structure atomically (sorted keys, indent 2).

  Args:
    structure: {name: width}; widths are written as integers.
    path: the file to (over)write.
  """
  atomic_file.write_json_atomically(
      {k: int(v) for k, v in structure.items()}, path)


def save_alive_counts_files(counts: Dict[str, int], base_dir: str,
                            step: int) -> str:
  """Writes learned_structure/alive_<step> and the latest copy `alive`.

  Args:
    counts: {name: alive channels}.
    base_dir: the run directory; files go to its `learned_structure/`.
    step: the global step in the file name.

  Returns:
    The path of the step file.
  """
  directory = os.path.join(base_dir, STRUCTURE_DIRNAME)
  path = os.path.join(directory, '%s_%d' % (ALIVE_FILENAME, step))
  write_structure(counts, path)
  write_structure(counts, os.path.join(directory, ALIVE_FILENAME))
  return path
