"""What each built-in Keras layer kind needs from MorphNet, in one place.

MorphNet reads a Keras model twice: the graph analysis reads the ops the
model traces to (op handlers group their channels, resource functions cost
them, a measured latency profile times them by op kind), and model surgery
reads the layers (a layer rule rebuilds each one). A layer kind is
supported when the four agree (and, for the other Keras backends, a fifth):

* **op handlers** -- every op type its layers trace to has a handler
  registered in the default registries (`op_handlers.get_*_op_handler_dict`),
  not the grouping fallback that warns;
* **layer rule** -- `surgery.builtin_rules.builtin_rule_table()` maps each of
  its layer classes to a rule of the declared class;
* **cost form** -- its op types that the built-in resource functions cost
  (`op_types.COSTED_OP_TYPES`, see `cost_forms`) are exactly the declared
  `cost_op_types`; a layer whose rule holds weights (convs, dense,
  depthwise) has a weighted one (`op_types.WEIGHTED_OP_TYPES`);
* **latency kind** -- the `latency_profile.OP_KINDS` of its op types are
  exactly the declared `latency_kinds`, and every op type with a cost form
  has a latency kind and back, except the op types of `KNOWN_GAPS`, which
  say why not.
* **cost hook** -- a kind that multiplies channels has a rule with a cost
  hook (`LayerRule.costed_ops`), which the layer-level regularizer of the
  other Keras backends reads, or an entry of `LAYER_LEVEL_GAPS` saying why
  not (the layer-level regularizer refuses those layers);
  `check_cost_hooks()` lists the disagreements. An activation count reads
  the rule's activation-count hook (`LayerRule.activation_ops`) too: the
  costed ops whose output channels the graph engine counts, every one by
  default; none for the recurrent kind (the graph engine cuts the loop
  out of its analysis and costs it from config, FLOPs and model size
  only), checked against the graph engine on the test corpus.

`LAYER_KINDS` declares every built-in kind; `check_layer_kinds()` lists the
disagreements, and the test suite fails on any (it also traces every layer
class and checks its ops are the declared ones). Supporting a new Keras
layer kind means a rule in `builtin_rules`, handlers for its ops, a cost
form and a latency kind -- and an entry here, which the test asks for.
"""

import collections
from typing import Dict, Iterable, List, Mapping, Optional

import keras

from morph_net.framework import op_vocabulary
from morph_net.network_regularizers import latency_profile
from morph_net.network_regularizers import op_types
from morph_net.op_handlers import op_handlers
from morph_net.probabilistic_gating import activation_gating
from morph_net.surgery import builtin_rules
from morph_net.surgery import layer_rule

__all__ = ['LayerKind', 'LAYER_KINDS', 'KNOWN_GAPS', 'LAYER_LEVEL_GAPS',
           'layer_kind', 'default_registries', 'check_layer_kinds',
           'check_cost_hooks']

L = keras.layers

LayerKind = collections.namedtuple(
    'LayerKind', ['name', 'layers', 'rule', 'op_types', 'cost_op_types',
                  'latency_kinds'])
LayerKind.__doc__ = """What one kind of built-in Keras layer needs.

Attributes:
  name: a short name ('conv').
  layers: the Keras layer classes of the kind.
  rule: the `builtin_rules` LayerRule class rebuilding them.
  op_types: the op types they trace to in Keras 3 at inference (besides
    constants and variable reads), each with a handler of its own.
  cost_op_types: the op types of `op_types` the built-in resource functions
    cost.
  latency_kinds: the `latency_profile.OP_KINDS` their op types belong to.
"""


def _kind(name, layers, rule, types, cost=(), latency=()):
  return LayerKind(name, tuple(layers), rule, frozenset(types),
                   frozenset(cost), frozenset(latency))


_BIAS_AND_RESHAPES = (['BiasAdd'] + sorted(op_vocabulary.RESHAPE_LIKE_OP_TYPES))
_SHAPE_READS = ['Pack', 'Shape', 'StridedSlice']
_LOOP_SETUP = ['Fill', 'Max', 'Pack', 'Range', 'Shape', 'StridedSlice',
               'TensorListFromTensor', 'TensorListReserve', 'TensorListStack',
               'Transpose']

LAYER_KINDS = (
    _kind('conv', [L.Conv1D, L.Conv2D, L.Conv3D], builtin_rules.WidthRule,
          # Grouped convs run in a function call (`function_calls`).
          ['Conv2D', 'Conv3D'] + _BIAS_AND_RESHAPES +
          sorted(op_vocabulary.CALL_OP_TYPES),
          cost=['BiasAdd', 'Conv2D', 'Conv3D'] +
          sorted(op_vocabulary.CALL_OP_TYPES),
          latency=['bias_add', 'conv']),
    _kind('conv_transpose',
          [L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose],
          builtin_rules.WidthRule,
          ['Conv2DBackpropInput', 'Conv3DBackpropInputV2', 'ConcatV2'] +
          _BIAS_AND_RESHAPES + _SHAPE_READS,
          cost=['BiasAdd', 'ConcatV2', 'Conv2DBackpropInput',
                'Conv3DBackpropInputV2'],
          latency=['bias_add', 'concat', 'conv_transpose']),
    _kind('separable_conv', [L.SeparableConv1D, L.SeparableConv2D],
          builtin_rules.SeparableConvRule,
          ['Conv2D', 'DepthwiseConv2dNative'] + _BIAS_AND_RESHAPES,
          cost=['BiasAdd', 'Conv2D', 'DepthwiseConv2dNative'],
          latency=['bias_add', 'conv', 'depthwise']),
    _kind('dense', [L.Dense], builtin_rules.WidthRule,
          # Reshapes: a Dense on rank >= 3 (Tensordot).
          ['MatMul'] + _BIAS_AND_RESHAPES,
          cost=['BiasAdd', 'MatMul'], latency=['bias_add', 'matmul']),
    _kind('einsum_dense', [L.EinsumDense], builtin_rules.EinsumDenseRule,
          # Over the last axis a (batch) matmul by the kernel; other
          # equations reshape the kernel or run an Einsum.
          ['BatchMatMulV2', 'BiasAdd', 'Einsum', 'MatMul', 'Reshape'],
          cost=['BatchMatMulV2', 'BiasAdd', 'Einsum', 'MatMul'],
          latency=['bias_add', 'matmul']),
    _kind('depthwise_conv', [L.DepthwiseConv1D, L.DepthwiseConv2D],
          builtin_rules.DepthwiseRule,
          ['DepthwiseConv2dNative'] + _BIAS_AND_RESHAPES,
          cost=['BiasAdd', 'DepthwiseConv2dNative'],
          latency=['bias_add', 'depthwise']),
    _kind('batch_norm', [L.BatchNormalization], builtin_rules.NormalizerRule,
          # Keras 3 decomposes it; tf_keras runs FusedBatchNormV3.
          ['AddV2', 'Mul', 'Rsqrt', 'Sub'] +
          sorted(op_vocabulary.FUSED_BATCH_NORM_OP_TYPES),
          cost=['AddV2', 'Mul', 'Sub'] +
          sorted(op_vocabulary.FUSED_BATCH_NORM_OP_TYPES),
          latency=['add', 'batch_norm', 'mul']),
    _kind('channel_mixing', [L.Softmax], builtin_rules.ChannelMixingRule,
          ['Softmax']),
    _kind('channel_norm', [L.LayerNormalization, L.RMSNormalization],
          builtin_rules.ChannelNormRule,
          ['AddV2', 'Mean', 'Mul', 'Neg', 'Reshape', 'Rsqrt', 'Square',
           'SquaredDifference', 'StopGradient'],
          cost=['AddV2', 'Mul'], latency=['add', 'mul', 'reduce']),
    _kind('embedding', [L.Embedding], builtin_rules.EmbeddingRule,
          # The lookup (a gather) and the wrap of negative ids.
          ['AddV2', 'GatherV2', 'Less', 'SelectV2'] + _SHAPE_READS,
          cost=['AddV2'], latency=['add']),
    _kind('activation',
          [L.Activation, L.ReLU, L.LeakyReLU, L.PReLU, L.ELU],
          builtin_rules.PassThroughRule,
          ['AddV2', 'Elu', 'LeakyRelu', 'Mul', 'Neg', 'Relu'],
          cost=['AddV2', 'Elu', 'LeakyRelu', 'Mul', 'Relu'],
          latency=['activation', 'add', 'mul']),
    _kind('identity_at_inference',
          [L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D,
           L.SpatialDropout3D, L.GaussianNoise, L.GaussianDropout,
           L.AlphaDropout, L.Identity, L.ActivityRegularization],
          builtin_rules.PassThroughRule,
          # ActivityRegularization's batch-size read.
          ['Cast', 'DivNoNan'] + _SHAPE_READS),
    _kind('pooling',
          [L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D,
           L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D],
          builtin_rules.PassThroughRule,
          ['AvgPool', 'AvgPool3D', 'ExpandDims', 'MaxPool', 'MaxPool3D',
           'Squeeze'],
          cost=['AvgPool', 'MaxPool'], latency=['pool']),
    _kind('global_pooling',
          [L.GlobalAveragePooling1D, L.GlobalAveragePooling2D,
           L.GlobalAveragePooling3D, L.GlobalMaxPooling1D,
           L.GlobalMaxPooling2D, L.GlobalMaxPooling3D],
          builtin_rules.PassThroughRule, ['Max', 'Mean'],
          latency=['reduce']),
    _kind('padding', [L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D],
          builtin_rules.PassThroughRule, ['Pad'], latency=['pad']),
    _kind('cropping', [L.Cropping1D, L.Cropping2D, L.Cropping3D],
          builtin_rules.PassThroughRule, ['StridedSlice']),
    _kind('upsampling', [L.UpSampling1D, L.UpSampling2D, L.UpSampling3D],
          builtin_rules.PassThroughRule,
          ['Cast', 'ConcatV2', 'ExpandDims', 'Mul', 'Reshape', 'Tile'] +
          _SHAPE_READS,
          cost=['ConcatV2', 'Mul'], latency=['concat', 'mul']),
    _kind('gating', [activation_gating.LogisticSigmoidGating],
          builtin_rules.PassThroughRule,
          ['AddV2', 'Cast', 'Greater', 'Maximum', 'Mul', 'OneHot', 'Sigmoid',
           'StopGradient', 'Sub'],
          cost=['AddV2', 'Mul', 'Sigmoid', 'Sub'],
          latency=['activation', 'add', 'mul']),
    _kind('recurrent', [L.SimpleRNN, L.GRU, L.LSTM, L.Bidirectional],
          builtin_rules.RecurrentRule,
          # The loop is costed from the layer's config
          # (`morph_net.keras.recurrent`); around it, the input projection
          # and the loop's setup.
          ['AddV2', 'BiasAdd', 'ConcatV2', 'MatMul', 'Mul', 'ReverseV2',
           'Sigmoid', 'Split', 'Squeeze', 'Sub', 'Tanh'] + _LOOP_SETUP +
          sorted(op_vocabulary.LOOP_OP_TYPES),
          cost=['AddV2', 'BiasAdd', 'ConcatV2', 'MatMul', 'Mul', 'Sigmoid',
                'Sub', 'Tanh'],
          latency=['activation', 'add', 'bias_add', 'concat', 'matmul',
                   'mul', 'reduce']),
    _kind('attention', [L.MultiHeadAttention], builtin_rules.AttentionRule,
          # Projections (a matmul on a reshaped kernel), the attention
          # products (Einsum), the scaling and the softmax. Under GroupLasso
          # FLOPs / model size regularizers the heads are costed from config
          # instead (`morph_net.keras.attention`).
          ['AddV2', 'BatchMatMulV2', 'BiasAdd', 'Einsum', 'Mul', 'Reshape',
           'Softmax'] + _SHAPE_READS,
          cost=['AddV2', 'BatchMatMulV2', 'BiasAdd', 'Einsum', 'Mul'],
          latency=['add', 'bias_add', 'matmul', 'mul']),
    _kind('reshape', [L.Reshape], builtin_rules.ReshapeRule,
          ['Reshape'] + _SHAPE_READS),
    _kind('flatten', [L.Flatten], builtin_rules.FlattenRule,
          ['Reshape'] + _SHAPE_READS),
    _kind('concatenate', [L.Concatenate], builtin_rules.ConcatenateRule,
          ['ConcatV2'], cost=['ConcatV2'], latency=['concat']),
    _kind('add', [L.Add], builtin_rules.AddRule, ['AddV2'], cost=['AddV2'],
          latency=['add']),
    _kind('merge',
          [L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum],
          builtin_rules.MergeRule,
          ['AddV2', 'Maximum', 'Minimum', 'Mul', 'RealDiv', 'Sub'],
          cost=['AddV2', 'Mul', 'Sub'], latency=['add', 'mul']),
)

# Op types whose cost form and latency kind disagree, and why. Anything
# else with one has the other.
KNOWN_GAPS = {
    'Mean': 'a measured latency kind (reduce); the roofline memory and '
            'latency functions cost only the original\'s Sum',
    'Max': 'a measured latency kind (reduce); the roofline memory and '
           'latency functions cost only the original\'s Sum',
    'Pad': 'a measured latency kind (pad); the roofline functions do not '
           'cost padding',
    'MaxPool3D': 'a measured latency kind (pool); the roofline functions '
                 'cost 2-D pooling only',
    'AvgPool3D': 'a measured latency kind (pool); the roofline functions '
                 'cost 2-D pooling only',
    'StatefulPartitionedCall': 'costed as the conv it calls (grouped '
                               'convs); a latency profile has no kind for '
                               'calls',
    'PartitionedCall': 'costed as the conv it calls; a latency profile has '
                       'no kind for calls',
    'Einsum': 'the attention products of MultiHeadAttention and the '
              'EinsumDense equations that are no matmul are costed (FLOPs, '
              'weights: einsum_cost); a latency profile has no kind for '
              'two-operand contractions',
}


# Kinds that multiply channels and whose rule has no cost hook yet: the
# layer-level regularizer (other Keras backends) refuses their layers. None
# now (MultiHeadAttention: `builtin_rules.AttentionRule.costed_ops`).
LAYER_LEVEL_GAPS = {}


def layer_kind(layer_class: type) -> Optional[LayerKind]:
  """The kind of a Keras layer class (exact class), or None."""
  for kind in LAYER_KINDS:
    if layer_class in kind.layers:
      return kind
  return None


def default_registries() -> Dict[str, Mapping]:
  """{family: a fresh default op handler registry} of the three families."""
  return {'gamma': op_handlers.get_gamma_op_handler_dict(),
          'group_lasso': op_handlers.get_group_lasso_op_handler_dict(),
          'logistic_sigmoid':
              op_handlers.get_logistic_sigmoid_op_handler_dict()}


def _names(types: Iterable[str]) -> str:
  return ', '.join(sorted(types)) or 'none'


def _check_rules(kinds, rule_table) -> List[str]:
  problems = []
  declared = {}
  for kind in kinds:
    for cls in kind.layers:
      if cls in declared:
        problems.append('%s is in kinds %r and %r.' % (
            cls.__name__, declared[cls], kind.name))
      declared[cls] = kind.name
      rule = rule_table.get(cls)
      if rule is None:
        problems.append(
            "%s (kind %r) has no layer rule in builtin_rules."
            'builtin_rule_table(); add a %s there.' % (
                cls.__name__, kind.name, kind.rule.__name__))
      elif type(rule) is not kind.rule:  # pylint: disable=unidiomatic-typecheck
        problems.append('%s (kind %r) has layer rule %s, not %s.' % (
            cls.__name__, kind.name, type(rule).__name__,
            kind.rule.__name__))
  for cls in sorted(set(rule_table) - set(declared),
                    key=lambda c: c.__name__):
    problems.append(
        '%s has a layer rule (%s) but no entry in layer_kinds.LAYER_KINDS: '
        'declare its op types, cost form and latency kind there.' % (
            cls.__name__, type(rule_table[cls]).__name__))
  return problems


def _check_handlers(kind, registries) -> List[str]:
  problems = []
  for family, registry in sorted(registries.items()):
    missing = [t for t in kind.op_types if t not in registry]
    if missing:
      problems.append(
          'Kind %r: op type(s) %s have no handler in the %s registry '
          '(op_handlers); register one.' % (kind.name, _names(missing),
                                             family))
  return problems


def _check_costs(kind, rule_table) -> List[str]:
  problems = []
  costed = kind.op_types & op_types.COSTED_OP_TYPES
  if costed != kind.cost_op_types:
    problems.append(
        'Kind %r declares cost forms for %s; the resource functions cost %s '
        '(op_types.COSTED_OP_TYPES).' % (kind.name,
                                         _names(kind.cost_op_types),
                                         _names(costed)))
  rules = [rule_table[c] for c in kind.layers if c in rule_table]
  if (any(rule.affine for rule in rules) and
      not kind.cost_op_types & op_types.WEIGHTED_OP_TYPES):
    problems.append(
        'Kind %r has a layer rule with weights (%s) but no weighted cost '
        'form: none of %s is in op_types.WEIGHTED_OP_TYPES.' % (
            kind.name, kind.rule.__name__, _names(kind.op_types)))
  return problems


def check_cost_hooks(kinds=LAYER_KINDS) -> List[str]:
  """The kinds that multiply channels without a cost hook, and back.

  A kind with a weighted cost form (it multiplies channels) needs a rule
  whose cost hook (`LayerRule.costed_ops`) the layer-level regularizer
  reads, unless `LAYER_LEVEL_GAPS` says why not; a kind listed there must
  still need the entry.

  Args:
    kinds: the layer kinds to check (default `LAYER_KINDS`).

  Returns:
    One sentence per disagreement; empty when everything agrees.
  """
  problems = []
  for kind in kinds:
    problems += _check_cost_hook(kind)
  return problems


def _check_cost_hook(kind) -> List[str]:
  weighted = kind.cost_op_types & op_types.WEIGHTED_OP_TYPES
  hooked = kind.rule.costed_ops is not layer_rule.LayerRule.costed_ops
  if weighted and not hooked and kind.name not in LAYER_LEVEL_GAPS:
    return [
        'Kind %r multiplies channels (%s) but its rule %s has no cost hook: '
        'give it a costed_ops method (morph_net.surgery.layer_cost) or say '
        'why not in layer_kinds.LAYER_LEVEL_GAPS.' % (
            kind.name, _names(weighted), kind.rule.__name__)]
  if kind.name in LAYER_LEVEL_GAPS and (hooked or not weighted):
    return ['Kind %r is in layer_kinds.LAYER_LEVEL_GAPS but its rule %s '
            'costs it (or it multiplies nothing): remove the entry.' % (
                kind.name, kind.rule.__name__)]
  return []


def _check_latency(kind) -> List[str]:
  problems = []
  measured = {t: latency_profile.op_kind(t) for t in kind.op_types}
  kinds = {k for k in measured.values() if k is not None}
  if kinds != kind.latency_kinds:
    problems.append(
        'Kind %r declares latency kinds %s; latency_profile.OP_KINDS gives '
        'its op types %s.' % (kind.name, _names(kind.latency_kinds),
                              _names(kinds)))
  for op_type in sorted(kind.op_types - set(KNOWN_GAPS)):
    has_cost = op_type in op_types.COSTED_OP_TYPES
    has_kind = measured[op_type] is not None
    if has_cost and not has_kind:
      problems.append(
          'Kind %r: op type %s has a cost form but no latency kind in '
          'latency_profile.OP_KINDS.' % (kind.name, op_type))
    elif has_kind and not has_cost:
      problems.append(
          'Kind %r: op type %s has latency kind %r but no cost form in '
          'op_types.COSTED_OP_TYPES.' % (kind.name, op_type,
                                         measured[op_type]))
  return problems


def check_layer_kinds(kinds=LAYER_KINDS, rule_table=None,
                      registries=None) -> List[str]:
  """The disagreements between the declared kinds and the registries.

  Args:
    kinds: the layer kinds to check (default `LAYER_KINDS`).
    rule_table: {layer class: rule} (default
      `builtin_rules.builtin_rule_table()`).
    registries: {family: op handler registry} (default
      `default_registries()`).

  Returns:
    One sentence per disagreement, naming the kind, what is missing and
    where it goes; empty when everything agrees.
  """
  rule_table = (builtin_rules.builtin_rule_table() if rule_table is None
                else rule_table)
  registries = default_registries() if registries is None else registries
  problems = _check_rules(kinds, rule_table)
  for kind in kinds:
    problems += _check_handlers(kind, registries)
    problems += _check_costs(kind, rule_table)
    problems += _check_latency(kind)
  return problems
