"""Random Keras functional models for property-based tests (`hypothesis`).

`cases()` is a hypothesis strategy of `RandomCase`s: a small random
functional model, the regularizer family to analyse it with and a seed for
the channels, heads and units to kill. The model is composed from every
layer kind the project prunes or passes through:

* convolutions: Conv1D/Conv2D (grouped, channelwise, dilated, strided,
  'same'/'valid'/'causal'), DepthwiseConv1D/2D, SeparableConv1D/2D,
  Conv1DTranspose/Conv2DTranspose; Dense on rank-2, -3 and -4 inputs;
* BatchNormalization, LayerNormalization, activation layers (ReLU,
  Activation, LeakyReLU, ELU, PReLU, Softmax); batch norms after a width
  layer's batch norm or activation (chains) and after concatenations and
  merges;
* merges: residual adds (the Add layer, `ops.add`, `+`), Subtract,
  Multiply, Maximum, Average; concatenations on the channel axis and on
  other axes (the Concatenate layer and `ops.concatenate`);
* Flatten, Reshape, `ops.reshape`, pooling (max, average, global),
  UpSampling, ZeroPadding, Cropping;
* `keras.ops` nodes: elementwise unary ops, binary ops with broadcasting
  (a sigmoid gate of the positions' mean, a one-channel operand, scalars,
  a per-channel constant), reductions over non-channel axes (and, rarely,
  over the channel axis);
* the custom layer with a registered rule (`custom_layers.SqueezeExcite`);
* nested functional and Sequential models; several inputs and outputs;
* MultiHeadAttention (self and cross attention), SimpleRNN, GRU, LSTM and
  Bidirectional wrappers of them.

Sizes are small (at most a few blocks per input, widths up to 8, spatial
sizes up to 12) so that one check (trace, analysis, rebuild, a second
trace) takes seconds.

A model is kept as the Python source that builds it (`RandomCase.code`):
the generator writes one line per layer call and runs each line as it
goes (to know the shapes the next draw must fit), and `RandomCase.build()`
runs the code again to get a fresh model. Hypothesis prints the case, so
a failing example (shrunk to a minimal model) is shown as code that
rebuilds it.

`kill(model, case)` zeroes random channels (batch-norm scales under the
Gamma family; kernel columns, heads and units under GroupLasso), seeded
by the case.
"""

import dataclasses
import random
from typing import Callable, Dict, List, Optional, Tuple

from hypothesis import strategies as st
import keras
import numpy as np

from morph_net.surgery import builtin_rules
from morph_net.testing import custom_layers

__all__ = ['RandomCase', 'cases', 'models', 'kill', 'FAMILIES']

L = keras.layers

FAMILIES = ('gamma', 'group_lasso')

# Limits that keep every model small.
_MAX_WIDTH = 8
_MAX_SPATIAL = 12
_MAX_STEPS = 5


@dataclasses.dataclass(frozen=True)
class RandomCase:
  """A generated model and what to do to it.

  Attributes:
    code: Python source building the model into the variable `model`
      (names `keras`, `L`, `ops`, `np`, `SqueezeExcite` are defined).
    family: 'gamma' (kill batch-norm scales, GammaFlopsRegularizer) or
      'group_lasso' (kill kernel columns, heads and units,
      GroupLassoFlopsRegularizer).
    seed: the seed of the channels to kill.
    max_fraction: at most this fraction of a layer's channels dies.
    allow_all: every channel of a layer may die (a branch may vanish).
    constant: dead batch-norm channels keep their beta (they output a
      constant that rebuild must fold) instead of outputting 0.
  """
  code: str
  family: str
  seed: int
  max_fraction: float
  allow_all: bool
  constant: bool

  def build(self) -> keras.Model:
    """A new model built from `code` (clears the Keras session first)."""
    keras.backend.clear_session()
    namespace = _namespace()
    exec(self.code, namespace)  # pylint: disable=exec-used
    return namespace['model']

  def __repr__(self):
    return ('RandomCase(family=%r, seed=%d, max_fraction=%.2f, '
            'allow_all=%r, constant=%r, code=\n%s)' % (
                self.family, self.seed, self.max_fraction, self.allow_all,
                self.constant, self.code))


def _namespace() -> Dict[str, object]:
  custom_layers.register_squeeze_excite()
  return {'keras': keras, 'L': L, 'ops': keras.ops, 'np': np,
          'SqueezeExcite': custom_layers.SqueezeExcite}


class _Writer(object):
  """Writes and runs the lines of a model's code.

  Args:
    draw: hypothesis's draw function.
    namespace: where the lines run.
    prefix: prefix of the variables and layer names (nested models).
  """

  def __init__(self, draw, namespace, prefix=''):
    self.draw = draw
    self.namespace = namespace
    self.prefix = prefix
    self.lines: List[str] = []
    self._count = 0

  def name(self, kind: str) -> str:
    """`prefix + kind + count`, unless Keras may give an operation node
    that name: then `prefix + kind + '_layer' + count`."""
    self._count += 1
    name = '%s%s%d' % (self.prefix, kind, self._count)
    if _is_op_name(name):
      name = '%s%s_layer%d' % (self.prefix, kind, self._count)
    return name

  def emit(self, expression: str) -> str:
    """Runs `var = expression`; returns the new variable."""
    var = self.name('t')
    line = '%s = %s' % (var, expression)
    exec(line, self.namespace)  # pylint: disable=exec-used
    self.lines.append(line)
    return var

  def shape(self, var: str) -> Tuple:
    return tuple(self.namespace[var].shape)

  def rank(self, var: str) -> int:
    return len(self.shape(var))

  def channels(self, var: str) -> int:
    return int(self.shape(var)[-1])

  def spatial(self, var: str) -> Tuple[int, ...]:
    return tuple(int(d) for d in self.shape(var)[1:-1])

  def integer(self, low: int, high: int) -> int:
    return self.draw(st.integers(low, max(low, high)))

  def choice(self, values):
    return self.draw(st.sampled_from(list(values)))

  def chance(self, probability_in_eighths: int) -> bool:
    """True with about the given chance (in eighths); shrinks to False."""
    return self.draw(st.integers(0, 7)) >= 8 - probability_in_eighths


def _is_op_name(name: str) -> bool:
  """Whether a `keras.ops` node may be named `name`.

  Keras names an operation node after its op's class, in snake case
  ('relu6' for `ops.relu6`, then 'relu6_1', ...), and a functional model
  refuses two operations of one name: a layer named 'relu6' (the 6th name
  of a writer, for a ReLU) next to an `ops.relu6` node raised "The name
  "relu6" is used 2 times in the model" (seed 11017). The writer's names
  have no underscore but after a nested model's prefix, so they can only
  meet the op names without a counter: those of `keras.ops` functions
  (for Keras 3.15, the op classes whose names end in a digit are
  arctan2, exp2, expm1, fft2, i0, ifft2, log10, log2, logaddexp2, relu6
  and rot90, each a `keras.ops` function).
  """
  return hasattr(keras.ops, name)


# ----------------------------------------------------------------- blocks.
# A block takes the writer and an input variable and returns the output
# variable (or None when it does not fit the input).

_ACTIVATION_NAMES = ('relu', 'tanh', 'gelu', 'swish', 'elu', 'selu',
                     'softplus', 'sigmoid', 'linear')
_UNARY_OPS = ('ops.relu(%s)', 'ops.tanh(%s)', 'ops.gelu(%s)',
              'ops.silu(%s)', 'ops.abs(%s)', 'ops.square(%s)',
              'ops.negative(%s)', 'ops.leaky_relu(%s)', 'ops.relu6(%s)',
              'ops.clip(%s, -1.0, 1.0)', 'ops.sigmoid(%s)',
              'ops.softplus(%s)', 'ops.cast(%s, "float32")')


def _activation(w, x):
  """An activation layer or a keras.ops unary op."""
  kind = w.integer(0, 6)
  if kind == 0:
    return w.emit("L.ReLU(name=%r)(%s)" % (w.name('relu'), x))
  if kind == 1:
    return w.emit('L.Activation(%r, name=%r)(%s)' % (
        w.choice(_ACTIVATION_NAMES), w.name('act'), x))
  if kind == 2:
    return w.emit('L.LeakyReLU(name=%r)(%s)' % (w.name('leaky'), x))
  if kind == 3:
    return w.emit('L.ELU(name=%r)(%s)' % (w.name('elu'), x))
  if kind == 4 and w.rank(x) >= 3:
    shared = list(range(1, w.rank(x) - 1))
    return w.emit('L.PReLU(shared_axes=%r, name=%r)(%s)' % (
        shared, w.name('prelu'), x))
  return w.emit(w.choice(_UNARY_OPS) % x)


def _batch_norm(w, x):
  return w.emit('L.BatchNormalization(name=%r)(%s)' % (w.name('bn'), x))


def _after_width_layer(w, x):
  """Optional batch norm, then an optional activation; rarely one or two
  more batch norms (chains: batch norm, batch norm; activation, batch
  norm), whose input channels died before them."""
  if w.chance(6):
    x = _batch_norm(w, x)
  if w.chance(5):
    x = _activation(w, x)
  for _ in range(2):
    if not w.chance(1):
      break
    x = _batch_norm(w, x)
  return x


def _width(w, low=1) -> int:
  return w.integer(low, _MAX_WIDTH)


def _conv_kwargs(w, x, allow_causal=False):
  """kernel_size, strides, padding, dilation that fit input `x`."""
  spatial = w.spatial(x)
  kernel = w.integer(1, min(3, min(spatial)))
  padding = w.choice(('same', 'valid', 'causal') if allow_causal else
                     ('same', 'valid'))
  strides, dilation = 1, 1
  if w.chance(2) and min(spatial) >= 2:
    strides = 2
  elif w.chance(1) and kernel > 1 and min(spatial) >= 2 * kernel - 1:
    dilation = 2
  return {'kernel_size': kernel, 'strides': strides, 'padding': padding,
          'dilation_rate': dilation}


def _kwargs_text(kwargs) -> str:
  return ', '.join('%s=%r' % item for item in sorted(kwargs.items()))


def _conv(w, x):
  """Conv1D / Conv2D, maybe grouped."""
  rank = w.rank(x)
  if rank not in (3, 4):
    return None
  cin = w.channels(x)
  kwargs = _conv_kwargs(w, x, allow_causal=rank == 3)
  divisors = [g for g in range(2, cin + 1) if cin % g == 0]
  groups = 1
  if divisors and w.chance(2):
    groups = w.choice(divisors)
  filters = groups * w.integer(1, max(1, _MAX_WIDTH // groups))
  kwargs.update(filters=filters, groups=groups, use_bias=w.chance(3),
                name=w.name('conv'))
  cls = 'Conv1D' if rank == 3 else 'Conv2D'
  return _after_width_layer(w, w.emit('L.%s(%s)(%s)' % (
      cls, _kwargs_text(kwargs), x)))


def _depthwise(w, x):
  rank = w.rank(x)
  if rank not in (3, 4):
    return None
  kwargs = _conv_kwargs(w, x)
  kwargs.update(depth_multiplier=w.integer(1, 2), use_bias=w.chance(3),
                name=w.name('dw'))
  cls = 'DepthwiseConv1D' if rank == 3 else 'DepthwiseConv2D'
  return _after_width_layer(w, w.emit('L.%s(%s)(%s)' % (
      cls, _kwargs_text(kwargs), x)))


def _separable(w, x):
  rank = w.rank(x)
  if rank not in (3, 4):
    return None
  kwargs = _conv_kwargs(w, x)
  kwargs.update(filters=_width(w), depth_multiplier=w.integer(1, 2),
                use_bias=w.chance(3), name=w.name('sep'))
  cls = 'SeparableConv1D' if rank == 3 else 'SeparableConv2D'
  return _after_width_layer(w, w.emit('L.%s(%s)(%s)' % (
      cls, _kwargs_text(kwargs), x)))


def _transposed(w, x):
  rank = w.rank(x)
  if rank not in (3, 4) or max(w.spatial(x)) > _MAX_SPATIAL // 2:
    return None
  kwargs = {'filters': _width(w), 'kernel_size': w.integer(1, 3),
            'strides': w.integer(1, 2), 'padding': w.choice(('same',
                                                             'valid')),
            'use_bias': w.chance(3), 'name': w.name('tconv')}
  cls = 'Conv1DTranspose' if rank == 3 else 'Conv2DTranspose'
  return _after_width_layer(w, w.emit('L.%s(%s)(%s)' % (
      cls, _kwargs_text(kwargs), x)))


def _dense(w, x):
  kwargs = {'units': _width(w), 'use_bias': w.chance(4),
            'name': w.name('dense')}
  return _after_width_layer(w, w.emit('L.Dense(%s)(%s)' % (
      _kwargs_text(kwargs), x)))


def _normalize(w, x):
  if w.chance(4):
    return w.emit('L.BatchNormalization(name=%r)(%s)' % (w.name('bn'), x))
  if w.chance(4):
    return w.emit('L.LayerNormalization(name=%r)(%s)' % (w.name('ln'), x))
  return w.emit('L.Softmax(name=%r)(%s)' % (w.name('softmax'), x))


def _residual(w, x):
  """x + branch(x), the branch a width layer of x's width."""
  c = w.channels(x)
  rank = w.rank(x)
  if rank in (3, 4) and w.chance(5):
    branch = w.emit('L.%s(%d, %d, padding="same", use_bias=False, '
                    'name=%r)(%s)' % ('Conv1D' if rank == 3 else 'Conv2D',
                                      c, w.integer(1, 3), w.name('res'), x))
  else:
    branch = w.emit('L.Dense(%d, use_bias=False, name=%r)(%s)' % (
        c, w.name('res'), x))
  if w.chance(5):
    branch = w.emit('L.BatchNormalization(name=%r)(%s)' % (w.name('bn'),
                                                           branch))
  how = w.integer(0, 6)
  if how == 0:
    y = w.emit('L.Add(name=%r)([%s, %s])' % (w.name('add'), x, branch))
  elif how == 1:
    y = w.emit('ops.add(%s, %s)' % (x, branch))
  elif how == 2:
    y = w.emit('%s + %s' % (x, branch))
  else:
    merge = ('Subtract', 'Multiply', 'Maximum', 'Average')[how - 3]
    y = w.emit('L.%s(name=%r)([%s, %s])' % (merge, w.name(merge.lower()),
                                             x, branch))
  # A batch norm reading the merge (of dead channels, sometimes).
  return _batch_norm(w, y) if w.chance(1) else y


def _branch(w, x, width: int) -> str:
  """A width layer of `width` on x (a 1x1 conv or a Dense)."""
  rank = w.rank(x)
  if rank in (3, 4) and w.chance(4):
    return w.emit('L.%s(%d, 1, use_bias=False, name=%r)(%s)' % (
        'Conv1D' if rank == 3 else 'Conv2D', width, w.name('branch'), x))
  return w.emit('L.Dense(%d, use_bias=False, name=%r)(%s)' % (
      width, w.name('branch'), x))


def _concat_channels(w, x):
  """Concatenation on the channel axis of x (or a branch) and branches."""
  parts = [x] if w.chance(4) else []
  for _ in range(w.integer(2 - len(parts), 2)):
    branch = _branch(w, x, _width(w))
    parts.append(_after_width_layer(w, branch))
  if len(parts) == 1:
    parts.append(_branch(w, x, _width(w)))
  axis = w.choice((-1, w.rank(x) - 1))
  if w.chance(4):
    y = w.emit('L.Concatenate(axis=%d, name=%r)([%s])' % (
        axis, w.name('concat'), ', '.join(parts)))
  else:
    y = w.emit('ops.concatenate([%s], axis=%d)' % (', '.join(parts), axis))
  # A batch norm reading the concatenation (of dead channels, sometimes).
  return _batch_norm(w, y) if w.chance(1) else y


def _concat_other_axis(w, x):
  """Concatenation of x and a branch of its width along a position axis."""
  rank = w.rank(x)
  if rank < 3 or max(w.spatial(x)) > _MAX_SPATIAL // 2:
    return None
  branch = _after_width_layer(w, _branch(w, x, w.channels(x)))
  axis = w.integer(1, rank - 2)
  if w.chance(4):
    axis -= rank  # The same axis, counted from the end.
  if w.chance(4):
    return w.emit('L.Concatenate(axis=%d, name=%r)([%s, %s])' % (
        axis, w.name('concat'), x, branch))
  return w.emit('ops.concatenate([%s, %s], axis=%d)' % (x, branch, axis))


def _broadcast(w, x):
  """keras.ops binary operations with broadcasting."""
  rank = w.rank(x)
  kind = w.integer(0, 5)
  if kind == 0:
    return w.emit('%s * %r' % (x, w.choice((2.0, 0.5, -1.0))))
  if kind == 1:
    return w.emit('ops.add(%s, %r)' % (x, w.choice((1.0, -0.5))))
  if kind == 2 and rank >= 3:
    axes = list(range(1, rank - 1))
    gate = w.emit('ops.sigmoid(ops.mean(%s, axis=%r, keepdims=True))' % (
        x, axes))
    return w.emit('ops.multiply(%s, %s)' % (x, gate))
  if kind == 3:
    one = _branch(w, x, 1)
    return w.emit('%s * ops.sigmoid(%s)' % (x, one))
  if kind == 4:
    return w.emit('ops.maximum(%s, %s)' % (x, _branch(w, x, w.channels(x))))
  scale = np.round(np.linspace(0.5, 1.5, w.channels(x)), 3).tolist()
  return w.emit('%s * np.array(%r, "float32")' % (x, scale))


def _reduce(w, x):
  """A reduction over position axes (or, rarely, the channel axis)."""
  rank = w.rank(x)
  if rank < 3:
    return None
  op = w.choice(('mean', 'max', 'sum', 'min'))
  if w.chance(1):
    gate = w.emit('ops.%s(%s, axis=-1, keepdims=True)' % (op, x))
    return w.emit('%s * ops.sigmoid(%s)' % (x, gate))
  axes = list(range(1, rank - 1))
  if w.chance(3):
    axes = [w.choice(axes)]
  return w.emit('ops.%s(%s, axis=%r, keepdims=%r)' % (op, x, axes,
                                                       w.chance(2)))


def _pool(w, x):
  rank = w.rank(x)
  if rank not in (3, 4):
    return None
  dims = '1D' if rank == 3 else '2D'
  spatial = w.spatial(x)
  kind = w.integer(0, 6)
  if kind <= 1 and min(spatial) >= 2:
    cls = ('MaxPooling', 'AveragePooling')[kind]
    return w.emit('L.%s%s(2, padding=%r, name=%r)(%s)' % (
        cls, dims, w.choice(('valid', 'same')), w.name('pool'), x))
  if kind == 2:
    cls = w.choice(('GlobalAveragePooling', 'GlobalMaxPooling'))
    return w.emit('L.%s%s(name=%r)(%s)' % (cls, dims, w.name('gpool'), x))
  if kind == 3 and max(spatial) <= _MAX_SPATIAL // 2:
    return w.emit('L.UpSampling%s(2, name=%r)(%s)' % (dims, w.name('up'),
                                                      x))
  if kind == 4 and max(spatial) < _MAX_SPATIAL:
    return w.emit('L.ZeroPadding%s(1, name=%r)(%s)' % (dims, w.name('pad'),
                                                       x))
  if kind == 5 and min(spatial) >= 3:
    return w.emit('L.Cropping%s(1, name=%r)(%s)' % (dims, w.name('crop'),
                                                    x))
  return w.emit('L.GlobalAveragePooling%s(name=%r)(%s)' % (
      dims, w.name('gpool'), x))


def _reshape(w, x):
  """Flatten, or a reshape that keeps the channel axis or makes tokens."""
  rank = w.rank(x)
  c = w.channels(x)
  positions = int(np.prod(w.spatial(x))) if rank >= 3 else 1
  kind = w.integer(0, 3)
  if kind == 0 and rank >= 3:
    return w.emit('L.Flatten(name=%r)(%s)' % (w.name('flatten'), x))
  if kind == 1 and rank == 4:
    return w.emit('L.Reshape((%d, %d), name=%r)(%s)' % (
        positions, c, w.name('reshape'), x))
  if kind == 2 and rank >= 3:
    return w.emit('ops.reshape(%s, (-1, %d))' % (x, positions * c))
  if rank == 2 and c % 2 == 0 and c > 2:
    return w.emit('L.Reshape((2, %d), name=%r)(%s)' % (
        c // 2, w.name('reshape'), x))
  if rank == 3:
    return w.emit('ops.reshape(%s, (-1, %d, %d))' % (x, positions, c))
  return w.emit('L.Reshape((%d,), name=%r)(%s)' % (
      positions * c, w.name('reshape'), x))


def _squeeze_excite(w, x):
  if w.rank(x) != 4:
    return None
  hidden = 'None' if w.chance(4) else str(w.integer(1, 4))
  return w.emit('SqueezeExcite(ratio=%d, hidden=%s, name=%r)(%s)' % (
      w.integer(1, 4), hidden, w.name('se'), x))


def _attention(w, x, memory: Optional[str] = None):
  """Self attention (or cross attention over `memory`), maybe residual."""
  if w.rank(x) != 3:
    return None
  kwargs = {'num_heads': w.integer(1, 3), 'key_dim': w.integer(1, 3),
            'name': w.name('mha')}
  if w.chance(3):
    kwargs['value_dim'] = w.integer(1, 3)
  # Skipped combination (docs/analysis.md, "Random models"): heads x
  # key_dim (or value_dim) equal to the query's width makes the graph
  # analysis of the projections' BiasAdd ops not converge under Gamma
  # regularizers when a keras.ops node feeds the layer.
  width = w.channels(x)
  for key in ('key_dim', 'value_dim'):
    if kwargs.get(key, 0) * kwargs['num_heads'] == width:
      kwargs[key] += 1
  if w.chance(1):
    kwargs['use_bias'] = False
  if w.chance(1):
    kwargs['output_shape'] = (w.integer(1, 4),)  # Keeps its heads.
  value = memory if memory is not None else x
  y = w.emit('L.MultiHeadAttention(%s)(%s, %s)' % (_kwargs_text(kwargs), x,
                                                   value))
  if 'output_shape' not in kwargs and w.chance(4):
    y = w.emit('L.Add(name=%r)([%s, %s])' % (w.name('add'), x, y))
  return y


def _recurrent(w, x):
  if w.rank(x) != 3:
    return None
  cell = w.choice(('SimpleRNN', 'GRU', 'LSTM'))
  kwargs = {'units': w.integer(1, 5),
            'return_sequences': w.chance(5)}
  if cell == 'SimpleRNN' and w.chance(2):
    kwargs['activation'] = w.choice(('relu', 'sigmoid'))
  if w.chance(3):
    inner = 'L.%s(%s)' % (cell, _kwargs_text(kwargs))
    merge = w.choice(('concat', 'sum', 'ave', 'mul'))
    return w.emit('L.Bidirectional(%s, merge_mode=%r, name=%r)(%s)' % (
        inner, merge, w.name('bi'), x))
  kwargs['name'] = w.name(cell.lower())
  return w.emit('L.%s(%s)(%s)' % (cell, _kwargs_text(kwargs), x))


# (block, ranks of the inputs it takes, weight), the simplest first: what
# shrinking tends to. Attention and recurrent layers weigh more, for rank-3
# inputs are rarer than the others.
_ANY = (2, 3, 4)
_BLOCKS = (
    (_conv, (3, 4), 2), (_dense, _ANY, 1), (_residual, _ANY, 1),
    (_concat_channels, _ANY, 1), (_activation, _ANY, 1),
    (_normalize, _ANY, 1), (_depthwise, (3, 4), 1),
    (_separable, (3, 4), 1), (_transposed, (3, 4), 1), (_pool, (3, 4), 1),
    (_reshape, _ANY, 1), (_broadcast, _ANY, 1), (_reduce, (3, 4), 1),
    (_concat_other_axis, (3, 4), 1), (_squeeze_excite, (4,), 1),
    (_attention, (3,), 3), (_recurrent, (3,), 3))


def _block(w, x):
  """One random block that fits `x` (tries others when one does not)."""
  rank = w.rank(x)
  choices = [block for block, ranks, weight in _BLOCKS if rank in ranks
             for _ in range(weight)]
  for _ in range(3):
    y = w.choice(choices)(w, x)
    if y is not None:
      return y
  return _dense(w, x)


def _nested(w, x):
  """A nested functional model of one or two blocks, or a Sequential."""
  index = w.name('nested')
  shape = w.shape(x)[1:]
  if w.chance(3):
    layers = ['L.%s(%d, %d, padding="same", use_bias=False, name=%r)' % (
        'Conv1D' if len(shape) == 2 else 'Conv2D', _width(w),
        w.integer(1, 3), index + '_conv')] if len(shape) in (2, 3) else [
            'L.Dense(%d, use_bias=False, name=%r)' % (_width(w),
                                                      index + '_dense')]
    layers.append('L.BatchNormalization(name=%r)' % (index + '_bn'))
    if w.chance(4):
      layers.append('L.ReLU(name=%r)' % (index + '_relu'))
    seq = w.emit('keras.Sequential([keras.Input(%r), %s], name=%r)' % (
        shape, ', '.join(layers), index))
    return w.emit('%s(%s)' % (seq, x))
  inner = _Writer(w.draw, w.namespace, prefix=index + '_')
  inner_in = inner.emit('keras.Input(%r)' % (shape,))
  y = inner_in
  for _ in range(w.integer(1, 2)):
    y = _block(inner, y)
  w.lines.extend(inner.lines)
  sub = w.emit('keras.Model(%s, %s, name=%r)' % (inner_in, y, index))
  return w.emit('%s(%s)' % (sub, x))


def _input(w, index: int) -> str:
  kind = w.integer(0, 4)
  if kind <= 1:
    shape = (w.integer(3, 8), w.integer(3, 8), w.integer(1, 4))
  elif kind <= 3:
    shape = (w.integer(2, 6), w.integer(1, 5))
  else:
    shape = (w.integer(1, 6),)
  return w.emit('keras.Input(%r, name=%r)' % (shape, 'input%d' % index))


@st.composite
def models(draw) -> str:
  """A strategy of model code (see `RandomCase.code`)."""
  # Building layers draws their initial weights from Python's `random`
  # (seeded by Keras): keep its state, as hypothesis asks of strategies.
  state = random.getstate()
  try:
    return _model_code(draw)
  finally:
    random.setstate(state)


def _model_code(draw) -> str:
  keras.backend.clear_session()
  w = _Writer(draw, _namespace())
  inputs = [_input(w, i) for i in range(w.integer(1, 2))]
  streams = []
  for x in inputs:
    for _ in range(w.integer(1, _MAX_STEPS)):
      if w.chance(1):
        x = _nested(w, x)
      elif (len(inputs) == 2 and w.rank(inputs[0]) == 3 and
            w.rank(inputs[1]) == 3 and w.rank(x) == 3 and w.chance(1)):
        other = inputs[1] if x != inputs[1] else inputs[0]
        x = _attention(w, x, memory=other)
      else:
        x = _block(w, x)
    streams.append(x)
  outputs = []
  if len(streams) == 2 and w.chance(4):
    pooled = []
    for x in streams:
      while w.rank(x) > 2:
        x = w.emit('L.Flatten(name=%r)(%s)' % (w.name('flatten'), x))
      pooled.append(x)
    streams = [w.emit('L.Concatenate(name=%r)([%s])' % (
        w.name('join'), ', '.join(pooled)))]
  for x in streams:
    if w.chance(6):
      x = w.emit('L.Dense(%d, name=%r)(%s)' % (w.integer(1, 4),
                                               w.name('logits'), x))
    outputs.append(x)
  def listed(names):
    return names[0] if len(names) == 1 else '[%s]' % ', '.join(names)
  w.lines.append('model = keras.Model(%s, %s)' % (listed(inputs),
                                                  listed(outputs)))
  return '\n'.join(w.lines)


@st.composite
def cases(draw) -> RandomCase:
  """A strategy of `RandomCase`s: a model, a family that has something to
  regularize in it, and what to kill."""
  code = draw(models())
  families = FAMILIES if 'L.BatchNormalization(' in code else (
      'group_lasso',)
  return RandomCase(
      code=code, family=draw(st.sampled_from(families)),
      seed=draw(st.integers(0, 2 ** 16)),
      max_fraction=draw(st.sampled_from((0.5, 0.25, 1.0))),
      allow_all=draw(st.booleans()), constant=draw(st.booleans()))


# ------------------------------------------------------------- killing.


def _layers(model):
  """The layers of `model` and of the models nested in it (not the layers
  inside other layers: a Bidirectional's directions, a custom layer's)."""
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      yield from _layers(layer)
    else:
      yield layer


def _choose(rng, size, max_fraction, allow_all) -> np.ndarray:
  limit = size if allow_all else size - 1
  top = max(0, min(limit, int(np.ceil(size * max_fraction))))
  count = int(rng.integers(0, top + 1))
  return np.sort(rng.choice(size, size=count, replace=False))


def _randomize_batch_norms(model, rng) -> None:
  """Random scales, offsets and statistics, so batch norms are not near
  identities and the outputs check the transferred weights."""
  for layer in _layers(model):
    if isinstance(layer, L.BatchNormalization):
      n = int(layer.moving_mean.shape[0])
      layer.moving_mean.assign(rng.normal(0.0, 0.5, n).astype('float32'))
      layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype(
          'float32'))
      if layer.gamma is not None:
        layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype('float32'))
      if layer.beta is not None:
        layer.beta.assign(rng.normal(0.0, 0.5, n).astype('float32'))


def _zero(variable, axis, dead) -> None:
  values = np.moveaxis(variable.numpy(), axis, 0)
  values[dead] = 0.0
  variable.assign(np.moveaxis(values, 0, axis))


def _kill_gammas(layer, dead, constant) -> None:
  if layer.gamma is None:
    return
  _zero(layer.gamma, 0, dead)
  if not constant and layer.beta is not None:
    # With beta and the mean's shift zero the channel outputs exactly 0.
    _zero(layer.beta, 0, dead)


_TRANSPOSED = (L.Conv1DTranspose, L.Conv2DTranspose)
_FILTER_LAYERS = (L.Conv1D, L.Conv2D, L.SeparableConv1D, L.SeparableConv2D,
                  L.Dense) + _TRANSPOSED


def _kill_filters(layer, dead) -> None:
  kernel = getattr(layer, 'pointwise_kernel', None)
  if kernel is None:
    kernel = layer.kernel
  _zero(kernel, kernel.ndim - (2 if isinstance(layer, _TRANSPOSED) else 1),
        dead)
  if getattr(layer, 'bias', None) is not None:
    _zero(layer.bias, 0, dead)


def _kill_heads(layer, dead) -> None:
  for variable, axis in builtin_rules.attention_head_axes(layer):
    _zero(variable, axis, dead)


def _kill_units(layer, dead) -> None:
  for rnn in builtin_rules.recurrent_directions(layer):
    units = int(rnn.units)
    for variable in rnn.weights:
      values = variable.numpy()
      gates = values.shape[-1] // units
      values[..., [g * units + d for g in range(gates) for d in dead]] = 0.0
      if variable.path.endswith('recurrent_kernel'):
        values[dead, :] = 0.0
      variable.assign(values)


def kill(model, case: RandomCase) -> Dict[str, List[int]]:
  """Randomizes the batch norms of `model` and kills channels as `case`
  says.

  Under 'gamma', batch-norm scales (and, unless `case.constant`, offsets)
  of random channels are zeroed. Under 'group_lasso', the output columns
  (and biases) of conv, separable-conv, transposed-conv and dense kernels,
  every weight of random heads of MultiHeadAttention layers and of random
  units of recurrent layers; unless `case.constant`, the batch norms right
  after a killed layer output 0 for its dead channels (offset and mean 0).

  Args:
    model: the model `case.build()` returned.
    case: the case.

  Returns:
    {layer name: killed channel, head or unit indices}.
  """
  rng = np.random.default_rng(case.seed)
  _randomize_batch_norms(model, rng)
  may_vanish = _layers_that_may_vanish(model)
  killed = {}
  for layer in _layers(model):
    if case.family == 'gamma':
      if not isinstance(layer, L.BatchNormalization):
        continue
      size = int(layer.moving_mean.shape[0])
    elif isinstance(layer, _FILTER_LAYERS):
      size = int(layer.filters if hasattr(layer, 'filters') else
                 layer.units)
    elif builtin_rules.attention_heads(layer) is not None:
      size = int(layer.num_heads)
    elif builtin_rules.recurrent_units(layer) is not None:
      size = builtin_rules.recurrent_units(layer)
    else:
      continue
    if rng.random() < 0.2:
      continue
    # Skipped combination: an attention layer losing every head vanishes
    # in rebuild with the layers reading it, which get_cost() still counts
    # (docs/analysis.md, "Random models").
    dead = _choose(rng, size, case.max_fraction,
                   case.allow_all and layer.name in may_vanish and
                   not isinstance(layer, L.MultiHeadAttention))
    if not dead.size:
      continue
    killed[layer.name] = dead.tolist()
    if case.family == 'gamma':
      _kill_gammas(layer, dead, case.constant)
    elif isinstance(layer, _FILTER_LAYERS):
      _kill_filters(layer, dead)
    elif isinstance(layer, L.MultiHeadAttention):
      _kill_heads(layer, dead)
    else:
      _kill_units(layer, dead)
  if case.family == 'group_lasso' and not case.constant:
    _silence_batch_norms_after(model, killed)
  return killed


def _layers_that_may_vanish(model) -> set:
  """Names of the layers that may lose every channel: those reading a
  model input or a tensor that other layers read too.

  Skipped combination: a layer that alone reads the output of another
  (a chain conv -> conv) and loses every channel leaves that producer a
  dead end, which rebuild drops but `get_cost()` and `StructureCost` still
  count (reachability of a model output is not part of the regularizer's
  cost); see docs/analysis.md, "Random models".
  """
  readers, producers, inputs, names = {}, {}, set(), set()

  def visit(functional, top):
    for depth in functional._nodes_by_depth:  # pylint: disable=protected-access
      for node in functional._nodes_by_depth[depth]:  # pylint: disable=protected-access
        if node.is_input:
          if top:
            inputs.update(id(t) for t in node.outputs)
          continue
        if isinstance(node.operation, keras.Model):
          visit(getattr(node.operation, '_functional', None) or
                node.operation, False)
        for tensor in node.input_tensors:
          readers.setdefault(id(tensor), []).append(node.operation)
        for tensor in node.outputs:
          producers[id(tensor)] = node.operation

  visit(getattr(model, '_functional', None) or model, True)
  for tensor_id, layers in readers.items():
    for layer in layers:
      if tensor_id in inputs or len(layers) > 1:
        names.add(layer.name)
  # A batch norm dies with the layer before it (under Gamma regularizers).
  for tensor_id, layers in readers.items():
    producer = producers.get(tensor_id)
    for layer in layers:
      if (isinstance(layer, L.BatchNormalization) and producer is not None
          and producer.name in names):
        names.add(layer.name)
  return names


def _silence_batch_norms_after(model, killed) -> None:
  """Batch norms reading a killed layer's output output 0 on its dead
  channels (beta and the moving mean zeroed there)."""
  for layer in _layers(model):
    if not isinstance(layer, L.BatchNormalization):
      continue
    for node in getattr(layer, '_inbound_nodes', []):
      for tensor in node.input_tensors:
        history = getattr(tensor, '_keras_history', None)
        source = history[0] if history else None
        dead = killed.get(getattr(source, 'name', None))
        if dead and isinstance(source, _FILTER_LAYERS):
          _zero(layer.moving_mean, 0, dead)
          if layer.beta is not None:
            _zero(layer.beta, 0, dead)
