"""A device's measured latency model: per op kind, rates and a fixed overhead.

The built-in devices (`hardware`) are rooflines from data sheets. A
`LatencyProfile` is measured on the user's own machine (see
`morph_net.latency.calibration` and the `calibrate_latency` tool): for
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

Kernels run channels in blocks (a vector register's floats, a blocked
layout's block): a width costs as if rounded up to the profile's
`preferred_multiple` m, that is every op's FLOPs and bytes are taken at
ceil(IN / m) x m input and ceil(OUT / m) x m output channels. A width
that is not a multiple costs more than that: kernels run the remainder
in a slower tail loop or pad it, so on an AMD EPYC (TensorFlow 2.21 CPU,
one thread) MobileNetV2 at 96x96 with every channel group one channel
narrower ran 17% slower than the original, with the same FLOPs. A kind's
`misalignment` p says how much: an op any of whose channel counts (input
or output) is not a multiple of m costs (1 + p) times its rate part at the
rounded-up counts, plus the overhead,

  latency = (1 + p x [misaligned]) x max(ns_per_flop x FLOPs,
                                         ns_per_byte x bytes) + overhead_ns

(at m = 1 nothing is misaligned). The calibration's fit chooses m among
`CANDIDATE_MULTIPLES` by held-out error and fits p with the rates
(`morph_net.latency.fit`); 1 is no alignment. Latency-targeted structures
round their widths to m (`preferred_multiple_of`).

The JSON file (written by the calibration, read by `LatencyProfile.load`):

  {"format": "morph_net.latency_profile", "version": 3, "batch_size": 8,
   "device": "x86_64, 1 intra-op thread", "preferred_multiple": 8,
   "kinds": {"conv": {"ns_per_flop": 0.05, "ns_per_byte": 0.1,
                      "overhead_ns": 4000.0, "misalignment": 0.2,
                      "fit": {...}}, ...},
   "metadata": {...}}

`fit` (optional, per kind) and `metadata` are kept as they are. Version 2
files (no `misalignment`) still load, with a misalignment of 0 for every
kind; version 1 files (no `preferred_multiple` either) with a multiple of 1
too. The latency resource function of a profile is in `profile_resource`.
"""

import collections
import json
import math
import numbers
import os
from typing import Dict, Iterable, Mapping, Optional

import tensorflow as tf

from morph_net import errors
from morph_net.network_regularizers import op_types

__all__ = [
    'FORMAT', 'VERSION', 'READABLE_VERSIONS', 'CANDIDATE_MULTIPLES',
    'OP_KINDS', 'PARAMETER_FIELDS', 'MISALIGNMENT_FIELD', 'KindParameters',
    'LatencyProfile',
    'op_kind', 'get_profile', 'preferred_multiple_of',
]

FORMAT = 'morph_net.latency_profile'
VERSION = 3
# Versions `from_dict` reads: 1 has no `preferred_multiple` (read as 1), 1
# and 2 no `misalignment` (read as 0).
READABLE_VERSIONS = (1, 2, 3)
# The channel multiples a calibration's fit chooses among.
CANDIDATE_MULTIPLES = (1, 4, 8, 16, 32)

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

# misalignment: the factor p above (0: a width that is not a multiple costs
# as its rounded-up width).
KindParameters = collections.namedtuple(
    'KindParameters', ['ns_per_flop', 'ns_per_byte', 'overhead_ns',
                       'misalignment'], defaults=(0.0,))
# The fields every kind needs; `misalignment` is optional in code and in
# files before version 3 (0), required in version 3 files.
PARAMETER_FIELDS = KindParameters._fields[:3]
MISALIGNMENT_FIELD = 'misalignment'


def op_kind(op_type: str) -> Optional[str]:
  """The kind of an op type ('Conv2D' -> 'conv'), None if not costed."""
  return _KIND_OF_TYPE.get(op_type)


def _check_parameters(values, where: str) -> KindParameters:
  """KindParameters from a dict or sequence; raises naming the field."""
  if isinstance(values, KindParameters):
    values = values._asdict()
  elif not isinstance(values, Mapping):
    try:
      items = list(values)
    except TypeError:
      items = None
    if items is None or len(items) not in (len(PARAMETER_FIELDS),
                                           len(KindParameters._fields)):
      raise errors.ProfileError(
          '%s: expected {ns_per_flop, ns_per_byte, overhead_ns} or a '
          'KindParameters. Received: %r' % (where, values))
    values = dict(zip(KindParameters._fields, items))
  checked = []
  for field in KindParameters._fields:
    if field not in values:
      if field == MISALIGNMENT_FIELD:
        checked.append(0.0)
        continue
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
      ns_per_byte (ns per byte), overhead_ns (ns per op), optionally
      misalignment (the factor of a width that is not a multiple of
      `preferred_multiple`, default 0) and a 'fit' entry}; kinds are keys
      of `OP_KINDS`.
    batch_size: the batch size the parameters were measured at.
    device: a description of the machine.
    metadata: anything else to keep in the file (threads, timings ...).
    source: where the profile came from, for error messages.
    preferred_multiple: the channel multiple widths cost as if rounded up
      to (1: no alignment).

  Raises:
    ProfileError: for an unknown kind, a missing or negative parameter, a
      bad batch size or multiple; the message names the field.
  """

  def __init__(self, kinds: Mapping[str, object], batch_size: int = 1,
               device: str = '', metadata: Optional[Dict] = None,
               source: str = 'profile', preferred_multiple: int = 1):
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
    if (isinstance(preferred_multiple, bool) or
        not isinstance(preferred_multiple, int) or preferred_multiple < 1):
      raise errors.ProfileError(
          '%s: field `preferred_multiple` must be an integer >= 1 (the '
          'channel multiple widths cost as if rounded up to; 1 for none). '
          'Received: %r' % (source, preferred_multiple))
    self.preferred_multiple = preferred_multiple
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

  def predict(self, kind: str, flops: float, num_bytes: float,
              misaligned: bool = False) -> float:
    """ns of one op of `kind` with `flops` FLOPs moving `num_bytes` bytes.

    Args:
      kind: the op's kind.
      flops: its FLOPs, at channel counts rounded up to the profile's
        `preferred_multiple`.
      num_bytes: its bytes, at the same counts.
      misaligned: whether a channel count of the op is not a multiple of
        `preferred_multiple` (its rate part then costs 1 + misalignment
        times as much).

    Returns:
      The latency in ns.
    """
    p = self.parameters(kind)
    rate = max(p.ns_per_flop * flops, p.ns_per_byte * num_bytes)
    if misaligned and self.preferred_multiple > 1:
      rate *= 1.0 + p.misalignment
    return rate + p.overhead_ns

  # ------------------------------------------------------------ JSON form.

  def to_dict(self) -> Dict:
    kinds = {}
    for kind, p in self._kinds.items():
      kinds[kind] = p._asdict()
      if kind in self._fits:
        kinds[kind]['fit'] = self._fits[kind]
    return {'format': FORMAT, 'version': VERSION, 'batch_size':
            self.batch_size, 'device': self.device, 'kinds': kinds,
            'preferred_multiple': self.preferred_multiple,
            'metadata': self.metadata}

  def to_json(self) -> str:
    """Sorted JSON, indent 2 (write it with `atomic_file`)."""
    return json.dumps(self.to_dict(), sort_keys=True, indent=2)

  @classmethod
  def from_dict(cls, data, source: str = 'profile') -> 'LatencyProfile':
    """Validates and reads the JSON form.

    Raises:
      ProfileError: for data that is not a profile (field `format`), a
        version not in READABLE_VERSIONS, a version 2 or 3 without
        `preferred_multiple`, a version 3 kind without `misalignment`, or
        bad fields (see the class). A version 1 or 2 kind is read with a
        misalignment of 0 (or the one it holds).
    """
    if not isinstance(data, Mapping) or data.get('format') != FORMAT:
      found = data.get('format') if isinstance(data, Mapping) else type(
          data).__name__
      raise errors.ProfileError(
          '%s is not a MorphNet latency profile: field `format` is %r, '
          'expected %r. Write one with python -m '
          'morph_net.tools.calibrate_latency.' % (source, found, FORMAT))
    version = data.get('version')
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
      raise errors.ProfileError(
          '%s: field `version` is %r; this MorphNet reads versions %s.' %
          (source, version, ', '.join(str(v) for v in READABLE_VERSIONS)))
    if version >= 2 and 'preferred_multiple' not in data:
      raise errors.ProfileError(
          '%s: field `preferred_multiple` is missing: a version %d profile '
          'records the channel multiple widths cost as if rounded up to (1 '
          'for none).' % (source, version))
    profile = cls(data.get('kinds'), data.get('batch_size'),
                  data.get('device', ''), data.get('metadata'), source=source,
                  preferred_multiple=data.get('preferred_multiple', 1))
    if version >= 3:  # The other fields are valid: the constructor checked.
      for kind, values in sorted(data['kinds'].items()):
        if isinstance(values, Mapping) and MISALIGNMENT_FIELD not in values:
          raise errors.ProfileError(
              '%s: field kinds.%s.misalignment is missing: a version %d '
              'profile records, per kind, the factor p of an op whose '
              'channel counts are not multiples of preferred_multiple (it '
              'costs 1 + p times as much; 0 for none).' % (
                  source, kind, version))
    return profile

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
    multiple = ('' if self.preferred_multiple == 1 else
                ', preferred_multiple=%d' % self.preferred_multiple)
    return 'LatencyProfile(%s, batch_size=%d%s, kinds=%s)' % (
        self.source, self.batch_size, multiple, ', '.join(self._kinds))


def get_profile(hardware) -> LatencyProfile:
  """A LatencyProfile, or one loaded from a JSON path.

  Raises:
    ProfileError: see `LatencyProfile.load`.
  """
  if isinstance(hardware, LatencyProfile):
    return hardware
  return LatencyProfile.load(os.fspath(hardware))


def preferred_multiple_of(hardware) -> int:
  """The channel multiple latency-targeted widths should round to.

  Args:
    hardware: a LatencyProfile, or an object holding one through its
      `hardware`, `network_regularizer` or `resource_function` attributes
      (a latency regularizer, a `ModelRegularizer`, a `StructureCost`, a
      latency resource function), or anything else.

  Returns:
    The profile's `preferred_multiple`; 1 for anything that is not (and
    does not hold) a profile: a FLOP regularizer, a roofline device.
  """
  todo = [hardware]
  for _ in range(4):  # ModelRegularizer -> regularizer -> function -> profile.
    found = []
    for value in todo:
      if isinstance(value, LatencyProfile):
        return value.preferred_multiple
      for attribute in ('hardware', 'network_regularizer',
                        'resource_function'):
        inner = getattr(value, attribute, None)
        if inner is not None and not isinstance(inner, (str, bytes)):
          found.append(inner)
    todo = found
  return 1
