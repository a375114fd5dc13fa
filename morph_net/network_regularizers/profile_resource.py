"""The latency resource function of a measured LatencyProfile.

`latency_function_factory(profile, batch_size)` is what
`resource_function.latency_function_factory` returns for a profile (object
or JSON path): per op, [compute form, memory form] scaled by the op kind's
ns_per_flop and ns_per_byte, each carrying the kind's overhead_ns (see
`cost_forms` for how a form with an overhead is costed), so the cost
calculator evaluates a whole network with its usual vector ops.
`op_features` gives one op's (kind, FLOPs, bytes) with all channels alive
(at channel counts rounded up to a multiple, for an aligned profile): the
numbers calibration measurements are fitted to. A profile's
`preferred_multiple` goes into its forms (`cost_forms.Form.multiple`): an
op costs as if its alive counts were rounded up to it, and 1 + the kind's
`misalignment` times that when a count is not a multiple
(`cost_forms.Form.misalignment`).
"""

import os
from typing import Tuple

from absl import logging
import tensorflow as tf

from morph_net import errors
from morph_net.network_regularizers import cost_forms
from morph_net.network_regularizers import latency_profile
from morph_net.network_regularizers import op_types

__all__ = ['op_features', 'profile_forms', 'is_profile_argument',
           'latency_function_factory']


def op_features(op: tf.Operation, batch_size: int = 1,
                multiple: int = 1) -> Tuple[str, float, float]:
  """(kind, FLOPs, bytes) of `op` with all its channels alive.

  The numbers the profile's rates multiply: `cost_forms.flop_forms` and
  `memory_forms` at the op's static channel counts, each rounded up to a
  multiple of `multiple` (`cost_forms.aligned`; 1: as they are).

  Raises:
    ProfileError: for an op of no kind.
    UnsupportedGraphError: for unknown channel or spatial sizes.
  """
  kind = latency_profile.op_kind(op.type)
  if kind is None:
    raise errors.ProfileError(
        'Op %s (%s) is of no latency op kind (%s).' % (
            op.name, op.type, ', '.join(latency_profile.OP_KINDS)))
  out_channels = _channels(op.outputs[0], op)
  if op.type in op_types.WEIGHTED_OP_TYPES:
    in_channels = _channels(op_types.get_input_activation(op), op)
  else:
    in_channels = out_channels
  in_channels = cost_forms.aligned(in_channels, multiple)
  out_channels = cost_forms.aligned(out_channels, multiple)
  values = []
  with op.graph.as_default():  # Unknown sizes make tf.shape ops there.
    for forms in (cost_forms.flop_forms(op, batch_size),
                  cost_forms.memory_forms(op, batch_size)):
      values.append(cost_forms.evaluate(forms, False, in_channels,
                                        out_channels, 0.0, 0.0))
  for value in values:
    if not isinstance(value, (int, float)):
      raise errors.UnsupportedGraphError(
          'Op %s (%s) has a spatial size known only at run time; a latency '
          'profile needs static shapes.' % (op.name, op.type))
  return kind, float(values[0]), float(values[1])


def _channels(tensor, op) -> int:
  channels = (tf.compat.dimension_value(tensor.shape[-1])
              if tensor.shape.rank else None)
  if channels is None:
    raise errors.UnsupportedGraphError(
        'Op %s (%s): tensor %s has no static channel dimension.' % (
            op.name, op.type, tensor.name))
  return int(channels)


def profile_forms(op: tf.Operation, profile: latency_profile.LatencyProfile,
                  batch_size: int = 1):
  """[compute form, memory form] of `op` in ns, each with the overhead.

  Both forms carry the profile's `preferred_multiple` (None for 1) and,
  with a multiple, the kind's `misalignment` (None for 0).

  Returns:
    [] for ops of no kind.

  Raises:
    ProfileError: if the profile lacks the op's kind.
  """
  kind = latency_profile.op_kind(op.type)
  if kind is None:
    return []
  p = profile.parameters(kind, op)
  depthwise = op.type in op_types.DEPTHWISE_OP_TYPES
  compute = (cost_forms.flop_forms(op, batch_size) or
             [cost_forms.Form(0.0, 0.0, 0.0, depthwise)])
  forms = [cost_forms.scale(compute[0], p.ns_per_flop)]
  forms += [cost_forms.scale(f, p.ns_per_byte)
            for f in cost_forms.memory_forms(op, batch_size)]
  multiple = (profile.preferred_multiple
              if profile.preferred_multiple > 1 else None)
  misalignment = (p.misalignment if multiple and p.misalignment > 0
                  else None)
  return [f._replace(overhead=p.overhead_ns, multiple=multiple,
                     misalignment=misalignment) for f in forms]


def is_profile_argument(hardware) -> bool:
  """Whether `hardware` names a profile (object or JSON path), not a device."""
  if isinstance(hardware, latency_profile.LatencyProfile):
    return True
  return isinstance(hardware, (str, os.PathLike)) and (
      str(hardware).endswith('.json') or os.path.sep in str(hardware) or
      os.path.isfile(hardware))


def latency_function_factory(hardware, batch_size: int = 1):
  """The latency resource function of a measured profile.

  Args:
    hardware: a LatencyProfile or the path of its JSON file.
    batch_size: the inference batch size; a warning says so when it is not
      the batch size the profile was measured at (the rates scale with the
      batch, the overheads do not; the profile was not measured there).

  Returns:
    A resource function of the original's six-argument signature, with
    attributes `hardware` (the profile), `batch_size`, `costed_op_types`
    and `forms`.

  Raises:
    ProfileError: for a profile that cannot be read.
  """
  profile = latency_profile.get_profile(hardware)
  if batch_size != profile.batch_size:
    logging.warning(
        'Latency profile %s was measured at batch size %d; costing at batch '
        'size %d extrapolates it. Calibrate at --batch_size=%d for exact '
        'predictions.', profile.source, profile.batch_size, batch_size,
        batch_size)
  bound_batch_size = batch_size

  def forms(op, batch_size=bound_batch_size):
    return profile_forms(op, profile, batch_size)

  def profile_latency(op, is_regularization, num_alive_inputs,
                      num_alive_outputs, reg_inputs, reg_outputs,
                      batch_size=bound_batch_size):
    return tf.convert_to_tensor(cost_forms.evaluate(
        forms(op, batch_size), is_regularization, num_alive_inputs,
        num_alive_outputs, reg_inputs, reg_outputs), tf.float32)

  profile_latency.hardware = profile
  profile_latency.batch_size = bound_batch_size
  profile_latency.costed_op_types = profile.costed_op_types
  profile_latency.forms = forms
  return profile_latency
