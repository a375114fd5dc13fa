"""StructureExporter: the learned structure (alive channels per op) as JSON.

While a network regularizer trains, the structure that emerges is held by the
alive vectors of its `OpRegularizerManager`. The exporter collects those
vectors for the convolutions and matmuls, takes their evaluated values back
from the user's session (or eager call) and writes `{op name: alive count}`
as JSON with sorted keys and an indent of 2 -- the format of the original
MorphNet's `tools/structure_exporter.py`, which `configurable_ops` reads.

Usage (TF1 graph):

  reg = flop_regularizer.GammaFlopsRegularizer([logits.op])
  exporter = StructureExporter(reg.op_regularizer_manager)
  exporter.populate_tensor_values(session.run(exporter.tensors))
  exporter.create_file_and_save_alive_counts(train_dir, global_step)

Files go to `<train_dir>/learned_structure/alive_<step>` and, as the latest
copy, `<train_dir>/learned_structure/alive`; both are written atomically.
Unlike the original, MatMul ops (fully connected layers) are exported too.
"""

import json
from typing import Callable, Dict, IO, Iterable, Mapping, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from morph_net import errors
from morph_net.structure import structure_files

__all__ = ['SUPPORTED_OPS', 'ALIVE_FILENAME', 'STRUCTURE_DIRNAME',
           'StructureExporter', 'get_remove_common_prefix_fn',
           'format_structure']

# Op types whose output channels make up the structure of a network.
SUPPORTED_OPS = frozenset([
    'Conv2D', 'Conv3D', 'Conv2DBackpropInput', 'Conv3DBackpropInputV2',
    'MatMul'])
ALIVE_FILENAME = structure_files.ALIVE_FILENAME
STRUCTURE_DIRNAME = structure_files.STRUCTURE_DIRNAME


class StructureExporter(object):
  """Collects the alive vectors of the regularized ops and saves their counts.

  Args:
    op_regularizer_manager: the `OpRegularizerManager` of a network
      regularizer (anything with `ops` and `get_regularizer(op)`).
    remove_common_prefix: if every exported name starts with the same first
      scope (up to and including the first '/'), drop it from the names; see
      `get_remove_common_prefix_fn`.
    name_fn: optional callable mapping an op to its exported name (for
      example a Keras layer name); defaults to `op.name`.

  Raises:
    InvalidArgumentError: if two exported ops get the same name.
  """

  def __init__(self, op_regularizer_manager, remove_common_prefix: bool = False,
               name_fn: Optional[Callable[[tf.Operation], str]] = None):
    name_fn = name_fn or (lambda op: op.name)
    exported = []
    for op in op_regularizer_manager.ops:
      if op.type not in SUPPORTED_OPS:
        continue
      regularizer = op_regularizer_manager.get_regularizer(op)
      if regularizer is None:
        logging.warning('StructureExporter: no regularizer for %s (%s); its '
                        'width is not exported.', op.name, op.type)
        continue
      exported.append((op, name_fn(op), regularizer.alive_vector))
    rename = (get_remove_common_prefix_fn([name for _, name, _ in exported])
              if remove_common_prefix else (lambda name: name))
    self._alive_vectors_as_tensors = {}
    for op, name, alive_vector in exported:
      name = rename(name)
      if name in self._alive_vectors_as_tensors:
        raise errors.InvalidArgumentError(
            'StructureExporter: two exported ops get the name %r (one is %s, '
            'of type %s). Pass a name_fn that gives every op its own name, or '
            'remove_common_prefix=False.' % (name, op.name, op.type))
      self._alive_vectors_as_tensors[name] = alive_vector
    self._alive_vectors_as_values = None
    if not self._alive_vectors_as_tensors:
      logging.warning('StructureExporter found no regularized op of the types '
                      '%s; the structure is empty.', ', '.join(
                          sorted(SUPPORTED_OPS)))

  @property
  def tensors(self) -> Dict[str, tf.Tensor]:
    """{name: alive vector}; evaluate them and pass the values back.

    Returns:
      A new dict from exported name to the op's alive vector (a boolean
      tensor of shape [output channels]).
    """
    return dict(self._alive_vectors_as_tensors)

  def populate_tensor_values(self,
                             values: Mapping[str, Sequence[bool]]) -> None:
    """Records the evaluated alive vectors.

    Args:
      values: {name: alive vector value}, with exactly the names of
        `tensors` (for example `session.run(exporter.tensors)`).

    Raises:
      InvalidArgumentError: if names are missing from `values` or `values`
        has names that `tensors` does not.
    """
    missing = sorted(set(self._alive_vectors_as_tensors) - set(values))
    unknown = sorted(set(values) - set(self._alive_vectors_as_tensors))
    if missing or unknown:
      raise errors.InvalidArgumentError(
          'populate_tensor_values needs a value for exactly the names of '
          '`tensors`; missing: %s, unknown: %s. Pass the result of evaluating '
          '`exporter.tensors`.' % (missing, unknown))
    self._alive_vectors_as_values = {
        name: np.asarray(value) for name, value in values.items()}

  def get_alive_counts(self) -> Dict[str, int]:
    """Returns {name: number of alive output channels}.

    Raises:
      NotReadyError: if `populate_tensor_values` was not called.
    """
    if self._alive_vectors_as_values is None:
      raise errors.NotReadyError(
          'StructureExporter has no alive values yet: call '
          'populate_tensor_values (with the evaluated `tensors`) before '
          'get_alive_counts.')
    return _compute_alive_counts(self._alive_vectors_as_values)

  def save_alive_counts(self, f: IO[str]) -> None:
    """Writes the alive counts to an open text file (see `format_structure`).

    Args:
      f: a writable file object.
    """
    f.write(format_structure(self.get_alive_counts()))

  def create_file_and_save_alive_counts(self, base_dir: str,
                                        global_step: int) -> str:
    """Writes `learned_structure/alive_<step>` and the latest copy `alive`.

    Args:
      base_dir: the run directory; the files go to its `learned_structure/`
        (created if missing). A local or `tf.io.gfile` path.
      global_step: the training step, the suffix of the file name.

    Returns:
      The path of the step file.
    """
    return structure_files.save_alive_counts_files(
        self.get_alive_counts(), base_dir, global_step)


def get_remove_common_prefix_fn(
    iterable: Iterable[str]) -> Callable[[str], str]:
  """Returns a function that strips the first scope common to all names.

  As in the original: if every name starts with the first name's text up to
  and including its first '/', the function removes that prefix; otherwise it
  is the identity. Only that one scope is removed, however many the names
  share. A single name is kept whole (the original would strip its first
  scope).

  Args:
    iterable: the names (op or layer names).

  Returns:
    A function from a name to the name without the common first scope.
  """
  names = list(iterable)
  if len(names) < 2:
    return lambda name: name
  separator = names[0].find('/')
  if separator < 0:
    return lambda name: name
  prefix = names[0][:separator + 1]
  if not all(name.startswith(prefix) for name in names):
    return lambda name: name
  return lambda name: name[len(prefix):]


def format_structure(structure: Mapping[str, int]) -> str:
  """Formats a structure as JSON: sorted keys, an indent of 2.

  Args:
    structure: {name: width}.

  Returns:
    The JSON text (no trailing newline), as the original writes it.
  """
  return json.dumps(structure, indent=2, sort_keys=True, default=str)


def _compute_alive_counts(
    alive_vectors: Mapping[str, Sequence[bool]]) -> Dict[str, int]:
  """{name: number of True entries of the alive vector}."""
  return {name: int(np.sum(vector)) for name, vector in alive_vectors.items()}
