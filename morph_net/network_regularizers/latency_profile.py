"""A device's measured latency model: per op kind, rates and a fixed overhead.

The built-in devices (`hardware`) are rooflines from data sheets. A
`LatencyProfile` is measured on the user's own machine (see
`morph_net.keras.latency_calibration` and the `calibrate_latency` tool): for
every op kind it holds

  latency (ns) = max(ns_per_flop x FLOPs, ns_per_byte x bytes) + overhead_ns

per op, where FLOPs and bytes are the op's counts at its alive channels
(`cost_forms.flop_forms`, `cost_forms.memory_forms`; a multiply-add is 2
FLOPs, bytes are activations read and written plus weights) and the overhead
is paid once by an op with any alive output channel, so removing a whole
layer saves it. This is the roofline of Williams et al. 2009 per op kind,
plus the per-op launch cost the roofline leaves out.

Op kinds (`OP_KINDS`) are the op types a traced Keras model runs at
inference, grouped by kernel: conv, depthwise, conv_transpose, matmul,
bias_add, add, mul, activation, pool, pad, concat, batch_norm, reduce. A
profile lists the kinds it was calibrated for; costing an op of a kind it
lacks is an error naming the op and the missing field.

The JSON file (written by the calibration, read by `LatencyProfile.load`):

  {"format": "morph_net.latency_profile", "version": 1, "batch_size": 8,
   "device": "x86_64, 1 intra-op thread",
   "kinds": {"conv": {"ns_per_flop": 0.05, "ns_per_byte": 0.1,
                      "overhead_ns": 4000.0, "fit": {...}}, ...},
   "metadata": {...}}

`fit` (optional, per kind) and `metadata` are kept as they are.
"""

import collections
import json
import math
import numbers
import os
from typing import Dict, Iterable, Mapping, Optional, Tuple

from absl import logging
import tensorflow as tf

from morph_net import errors
from morph_net.network_regularizers import cost_forms
from morph_net.network_regularizers import op_types

__all__ = [
    'FORMAT', 'VERSION', 'OP_KINDS', 'PARAMETER_FIELDS', 'KindParameters',
    'LatencyProfile', 'op_kind', 'op_features', 'profile_forms',
    'is_profile_argument', 'get_profile', 'latency_function_factory',
]

FORMAT = 'morph_net.latency_profile'
VERSION = 1

OP_KINDS = collections.OrderedDict([
    ('conv', op_types.CONV_OP_TYPES),
    ('depthwise', op_types.DEPTHWISE_OP_TYPES),
    ('conv_transpose', op_types.CONV_TRANSPOSE_OP_TYPES),
    ('matmul', op_types.MATMUL_OP_TYPES),
    ('bias_add', frozenset(['BiasAdd'])),
    ('add', frozenset(['Add', 'AddV2', 'AddN', 'Sub'])),
    ('mul', frozenset(['Mul'])),
    ('activation', frozenset(['Relu', 'Relu6', 'Elu', 'Selu', 'LeakyRelu',
                              'Sigmoid', 'Tanh', 'Softplus'])),
    ('pool', frozenset(['MaxPool', 'AvgPool', 'MaxPool3D', 'AvgPool3D'])),
    ('pad', frozenset(['Pad', 'PadV2', 'MirrorPad'])),
    ('concat', frozenset(['ConcatV2'])),
    ('batch_norm', frozenset(['FusedBatchNorm', 'FusedBatchNormV2',
                              'FusedBatchNormV3'])),
    ('reduce', frozenset(['Mean', 'Sum', 'Max'])),
])
_KIND_OF_TYPE = {t: kind for kind, types in OP_KINDS.items() for t in types}
_ALL_TYPES = frozenset(_KIND_OF_TYPE)

KindParameters = collections.namedtuple(
    'KindParameters', ['ns_per_flop', 'ns_per_byte', 'overhead_ns'])
PARAMETER_FIELDS = KindParameters._fields


def op_kind(op_type: str) -> Optional[str]:
  """The kind of an op type ('Conv2D' -> 'conv'), None if not costed."""
  return _KIND_OF_TYPE.get(op_type)


def _check_parameters(values, where: str) -> KindParameters:
  """KindParameters from a dict or sequence; raises naming the field."""
  if isinstance(values, KindParameters):
    values = values._asdict()
  elif not isinstance(values, Mapping):
    try:
      values = dict(zip(PARAMETER_FIELDS, values))
    except TypeError:
      values = None
    if values is None or len(values) != len(PARAMETER_FIELDS):
      raise errors.ProfileError(
          '%s: expected {ns_per_flop, ns_per_byte, overhead_ns} or a '
          'KindParameters. Received: %r' % (where, values))
  checked = []
  for field in PARAMETER_FIELDS:
    if field not in values:
      raise errors.ProfileError(
          '%s.%s is missing: every op kind needs ns_per_flop (ns per FLOP), '
          'ns_per_byte (ns per byte) and overhead_ns (ns per op).' %
          (where, field))
    value = values[field]
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or
        not math.isfinite(value) or value < 0):
      raise errors.ProfileError(
          '%s.%s must be a finite number >= 0 (a rate or a time cannot be '
          'negative). Received: %r' % (where, field, value))
    checked.append(float(value))
  return KindParameters(*checked)


class LatencyProfile(object):
  """Per-op-kind latency parameters of one device at one batch size.

  Args:
    kinds: {kind: KindParameters, or a dict with ns_per_flop (ns per FLOP),
      ns_per_byte (ns per byte) and overhead_ns (ns per op), optionally
      with a 'fit' entry}; kinds are keys of `OP_KINDS`.
    batch_size: the batch size the parameters were measured at.
    device: a description of the machine.
    metadata: anything else to keep in the file (threads, timings ...).
    source: where the profile came from, for error messages.

  Raises:
    ProfileError: for an unknown kind, a missing or negative parameter, or
      a bad batch size; the message names the field.
  """

  def __init__(self, kinds: Mapping[str, object], batch_size: int = 1,
               device: str = '', metadata: Optional[Dict] = None,
               source: str = 'profile'):
    self.source = source
    if not isinstance(kinds, Mapping) or not kinds:
      raise errors.ProfileError(
          '%s: field `kinds` must be a non-empty {op kind: parameters} '
          'mapping with kinds among %s. Received: %r' % (
              source, ', '.join(OP_KINDS), kinds))
    if (isinstance(batch_size, bool) or not isinstance(batch_size, int) or
        batch_size <= 0):
      raise errors.ProfileError(
          '%s: field `batch_size` must be a positive integer. Received: %r' %
          (source, batch_size))
    self._kinds = collections.OrderedDict()
    self._fits = {}
    for kind in sorted(kinds):
      if kind not in OP_KINDS:
        raise errors.ProfileError(
            '%s: kinds.%s is not an op kind. Expected kinds among %s.' %
            (source, kind, ', '.join(OP_KINDS)))
      values = kinds[kind]
      self._kinds[kind] = _check_parameters(values, 'kinds.%s' % kind)
      if isinstance(values, Mapping) and 'fit' in values:
        self._fits[kind] = values['fit']
    self.batch_size = batch_size
    self.device = device
    self.metadata = dict(metadata or {})

  @property
  def kinds(self) -> Dict[str, KindParameters]:
    return dict(self._kinds)

  @property
  def costed_op_types(self) -> frozenset:
    """Op types the profile's latency function costs (all kinds' types)."""
    return _ALL_TYPES

  def fit(self, kind: str) -> Optional[Dict]:
    """The calibration's fit report of a kind (residuals), if any."""
    return self._fits.get(kind)

  def parameters(self, kind: str,
                 op: Optional[tf.Operation] = None) -> KindParameters:
    """The parameters of `kind`.

    Raises:
      ProfileError: if the profile has no entry for the kind; names the op.
    """
    if kind not in self._kinds:
      what = (' needed by op %s (%s)' % (op.name, op.type)) if op else ''
      raise errors.ProfileError(
          '%s has no entry kinds.%s%s. Calibrate the profile on a model '
          'with such a layer (python -m morph_net.tools.calibrate_latency '
          '--model=...), or add kinds.%s with %s.' % (
              self.source, kind, what, kind, ', '.join(PARAMETER_FIELDS)))
    return self._kinds[kind]

  def check_kinds(self, required: Iterable[str]) -> None:
    """Raises ProfileError naming the first of `required` that is missing."""
    for kind in required:
      self.parameters(kind)

  def predict(self, kind: str, flops: float, num_bytes: float) -> float:
    """ns of one op of `kind` with `flops` FLOPs moving `num_bytes` bytes."""
    p = self.parameters(kind)
    return max(p.ns_per_flop * flops, p.ns_per_byte * num_bytes) + (
        p.overhead_ns)

  # ------------------------------------------------------------ JSON form.

  def to_dict(self) -> Dict:
    kinds = {}
    for kind, p in self._kinds.items():
      kinds[kind] = p._asdict()
      if kind in self._fits:
        kinds[kind]['fit'] = self._fits[kind]
    return {'format': FORMAT, 'version': VERSION, 'batch_size':
            self.batch_size, 'device': self.device, 'kinds': kinds,
            'metadata': self.metadata}

  def to_json(self) -> str:
    """Sorted JSON, indent 2 (write it with `atomic_file`)."""
    return json.dumps(self.to_dict(), sort_keys=True, indent=2)

  @classmethod
  def from_dict(cls, data, source: str = 'profile') -> 'LatencyProfile':
    """Validates and reads the JSON form.

    Raises:
      ProfileError: for data that is not a profile (field `format`), a
        newer version, or bad fields (see the class).
    """
    if not isinstance(data, Mapping) or data.get('format') != FORMAT:
      found = data.get('format') if isinstance(data, Mapping) else type(
          data).__name__
      raise errors.ProfileError(
          '%s is not a MorphNet latency profile: field `format` is %r, '
          'expected %r. Write one with python -m '
          'morph_net.tools.calibrate_latency.' % (source, found, FORMAT))
    if data.get('version') != VERSION:
      raise errors.ProfileError(
          '%s: field `version` is %r; this MorphNet reads version %d.' %
          (source, data.get('version'), VERSION))
    return cls(data.get('kinds'), data.get('batch_size'),
               data.get('device', ''), data.get('metadata'), source=source)

  @classmethod
  def load(cls, path: str) -> 'LatencyProfile':
    """Reads a profile JSON file.

    Raises:
      ProfileError: for a missing file, invalid JSON or a bad profile.
    """
    try:
      with tf.io.gfile.GFile(path) as f:
        data = json.loads(f.read())
    except (tf.errors.NotFoundError, FileNotFoundError):
      raise errors.ProfileError(
          "Latency profile file '%s' does not exist." % path) from None
    except ValueError as e:
      raise errors.ProfileError(
          "'%s' is not a MorphNet latency profile: it is not JSON (%s)." %
          (path, e)) from None
    return cls.from_dict(data, source="'%s'" % path)

  def __eq__(self, other):
    return (isinstance(other, LatencyProfile) and
            self.to_dict() == other.to_dict())

  def __repr__(self):
    return 'LatencyProfile(%s, batch_size=%d, kinds=%s)' % (
        self.source, self.batch_size, ', '.join(self._kinds))


def op_features(op: tf.Operation, batch_size: int = 1) -> Tuple[str, float,
                                                                float]:
  """(kind, FLOPs, bytes) of `op` with all its channels alive.

  The numbers the profile's rates multiply: `cost_forms.flop_forms` and
  `memory_forms` at the op's static channel counts.

  Raises:
    ProfileError: for an op of no kind.
    UnsupportedGraphError: for unknown channel or spatial sizes.
  """
  kind = op_kind(op.type)
  if kind is None:
    raise errors.ProfileError(
        'Op %s (%s) is of no latency op kind (%s).' % (
            op.name, op.type, ', '.join(OP_KINDS)))
  out_channels = _channels(op.outputs[0], op)
  if op.type in op_types.WEIGHTED_OP_TYPES:
    in_channels = _channels(op_types.get_input_activation(op), op)
  else:
    in_channels = out_channels
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


def profile_forms(op: tf.Operation, profile: LatencyProfile,
                  batch_size: int = 1):
  """[compute form, memory form] of `op` in ns, each with the overhead.

  Returns:
    [] for ops of no kind.

  Raises:
    ProfileError: if the profile lacks the op's kind.
  """
  kind = op_kind(op.type)
  if kind is None:
    return []
  p = profile.parameters(kind, op)
  depthwise = op.type in op_types.DEPTHWISE_OP_TYPES
  compute = (cost_forms.flop_forms(op, batch_size) or
             [cost_forms.Form(0.0, 0.0, 0.0, depthwise)])
  forms = [cost_forms.scale(compute[0], p.ns_per_flop)]
  forms += [cost_forms.scale(f, p.ns_per_byte)
            for f in cost_forms.memory_forms(op, batch_size)]
  return [f._replace(overhead=p.overhead_ns) for f in forms]


def is_profile_argument(hardware) -> bool:
  """Whether `hardware` names a profile (object or JSON path), not a device."""
  if isinstance(hardware, LatencyProfile):
    return True
  return isinstance(hardware, (str, os.PathLike)) and (
      str(hardware).endswith('.json') or os.path.sep in str(hardware) or
      os.path.isfile(hardware))


def get_profile(hardware) -> LatencyProfile:
  """A LatencyProfile, or one loaded from a JSON path.

  Raises:
    ProfileError: see `LatencyProfile.load`.
  """
  if isinstance(hardware, LatencyProfile):
    return hardware
  return LatencyProfile.load(os.fspath(hardware))


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
  profile = get_profile(hardware)
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
