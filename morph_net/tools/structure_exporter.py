"""StructureExporter: writes the learned structure (alive channels per op).

The structure is JSON `{op name: alive count}` with sorted keys and indent 2,
written to `<base_dir>/learned_structure/alive_<step>` and, as the latest
copy, `<base_dir>/learned_structure/alive`. Files are written atomically.
"""

import json
from typing import Callable, Dict, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from morph_net.structure import structure_files

# Ops whose output channels make up the structure of a network.
SUPPORTED_OPS = frozenset([
    'Conv2D', 'Conv3D', 'Conv2DBackpropInput', 'Conv3DBackpropInputV2',
    'MatMul'])
ALIVE_FILENAME = structure_files.ALIVE_FILENAME
STRUCTURE_DIRNAME = structure_files.STRUCTURE_DIRNAME


def get_remove_common_prefix_fn(names) -> Callable[[str], str]:
  """Returns a function that strips the '/'-delimited prefix common to names."""
  names = list(names)
  if len(names) < 2:
    return lambda name: name
  split = [n.split('/') for n in names]
  common = 0
  for parts in zip(*split):
    if len(set(parts)) != 1:
      break
    common += 1
  # Keep at least the last component of every name.
  common = min(common, min(len(s) for s in split) - 1)
  return lambda name: '/'.join(name.split('/')[common:])


class StructureExporter(object):
  """Reads alive vectors of the regularized ops and saves their counts.

  Args:
    op_regularizer_manager: the OpRegularizerManager of a network regularizer.
    remove_common_prefix: strip the name-scope prefix common to all names.
    name_fn: optional callable mapping an op to its exported name (the Keras
      bridge uses layer names); defaults to the op name.

  Raises:
    ValueError: if two exported ops get the same name.
  """

  def __init__(self, op_regularizer_manager, remove_common_prefix=False,
               name_fn: Optional[Callable[[tf.Operation], str]] = None):
    self._manager = op_regularizer_manager
    self._alive_vectors = None
    name_fn = name_fn or (lambda op: op.name)
    ops = [op for op in op_regularizer_manager.ops
           if op.type in SUPPORTED_OPS and
           op_regularizer_manager.get_regularizer(op) is not None]
    names = [name_fn(op) for op in ops]
    rename = (get_remove_common_prefix_fn(names) if remove_common_prefix else
              (lambda name: name))
    self._tensors = {}
    for op, name in zip(ops, names):
      name = rename(name)
      if name in self._tensors:
        raise ValueError('Two exported ops have the name %r (one is %s).' %
                         (name, op.name))
      self._tensors[name] = op_regularizer_manager.get_regularizer(
          op).alive_vector
    if not self._tensors:
      logging.warning('StructureExporter found no regularized %s op.',
                      '/'.join(sorted(SUPPORTED_OPS)))

  @property
  def tensors(self) -> Dict[str, tf.Tensor]:
    """{name: alive vector tensor}; evaluate them and pass the values back."""
    return dict(self._tensors)

  def populate_tensor_values(self, tensor_value_dict) -> None:
    """Stores the evaluated alive vectors, {name: numpy bool vector}."""
    missing = set(self._tensors) - set(tensor_value_dict)
    if missing:
      raise ValueError('Missing values for %s.' % sorted(missing))
    self._alive_vectors = {k: np.asarray(v) for k, v in
                           tensor_value_dict.items()}

  def get_alive_counts(self) -> Dict[str, int]:
    """Returns {name: number of alive channels}.

    Raises:
      RuntimeError: if populate_tensor_values was not called.
    """
    if self._alive_vectors is None:
      raise RuntimeError('Call populate_tensor_values (with the values of '
                         '`tensors`) before get_alive_counts.')
    return {name: int(np.sum(vector))
            for name, vector in self._alive_vectors.items()}

  def save_alive_counts(self, f) -> None:
    """Writes the alive counts as JSON to an open file."""
    f.write(json.dumps(self.get_alive_counts(), sort_keys=True, indent=2))

  def create_file_and_save_alive_counts(self, base_dir: str,
                                        global_step: int) -> str:
    """Writes learned_structure/alive_<step> and the latest copy `alive`.

    Returns:
      The path of the step file.
    """
    return structure_files.save_alive_counts_files(self.get_alive_counts(), base_dir,
                                   global_step)
