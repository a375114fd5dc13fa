"""Attention heads of a traced Keras model: costed from config, pruned.

A `keras.layers.MultiHeadAttention` call projects its query, key and value
inputs per head (kernels (d, heads, key_dim) or (d, heads, value_dim),
biases (heads, dim)), multiplies queries with keys and the attention
weights with values per head, and projects the heads back (kernel (heads,
value_dim, out)). Head h is one group: its query, key and value kernel
columns and biases and its rows of the output projection. A head is not a
channel of any tensor the graph analysis reads (the heads are the
second-to-last axis of the projections, and the output mixes them), so
under GroupLasso regularizers the bridge cuts the layer call out of the
analysis, like a recurrent layer's loop (`morph_net.keras.recurrent`): its
inputs are extra output boundaries, its ops extra input boundaries, and its
cost is counted from config with H alive heads:

  FLOPs   = H x (2 Tq dq K + 2 Tk dk K + 2 Tk dv V      (projections)
                 + 2 Tq Tk K + 2 Tq Tk V                (QK^T, attention V)
                 + 2 Tq V out)                          (output projection)
  weights = H x (dq K + dk K + dv V + V out)

Tq, Tk: query and key steps; dq, dk, dv: the alive channels of the query,
key and value inputs; K, V: key_dim, value_dim; out: the alive output
channels.
Biases are not counted (as for dense layers); with every head alive these
are the numbers the graph analysis counts for the layer's ops. The
regularization term is MorphNet's bilinear form of that cost: each product
of two alive counts a x b becomes a x sum(r_b) + b x sum(r_a) (the heads'
regularization sum for H; the attention products have one factor, H).

Head h's regularization is the group-lasso norm of its weights (root mean
square, plus an L1 part with `l1_fraction`, as `GroupLassoRegularizer`
normalizes a conv's output channel); alive above the threshold.
`alive_counts()` lists the layer with its alive heads, rebuild sets
`num_heads` (`builtin_rules.AttentionRule`), `StructureCost` costs the
rebuilt heads with the formula above.

Other families (Gamma, LogisticSigmoid) and other resources (latency,
activations) keep every head: a head has no batch-norm scale or gate of
its own. One warning names those layers; their ops stay in the graph
analysis, costed as before.

The layer's input and output channels (the hidden size of a transformer)
are channel groups of the model: under the same regularizers the output
op of a pruned call is a source of the hidden size (`hidden_ops`, see
`morph_net.keras.hidden_size`), `dq`, `dk`, `dv` and `out` are the alive
channels of those groups, and the term reads their regularization sums.
"""

import dataclasses
import logging
import re
import types
from typing import Dict, List, Optional

import tensorflow as tf

from morph_net import errors
from morph_net.framework import op_vocabulary
from morph_net.keras import hidden_members
from morph_net.keras import recurrent
from morph_net.network_regularizers import resource_function as rf
from morph_net.surgery import builtin_rules

__all__ = ['AttentionCall', 'AttentionCalls', 'head_weights']

_SUFFIX = re.compile(r'_\d+$')

# Resources costed from config, and whether they count the products of the
# attention (activations times activations, which hold no weights).
_RESOURCES = {rf.flop_function: True, rf.model_size_function: False}


def _is_attention(layer) -> bool:
  return builtin_rules.attention_heads(layer) is not None


def head_weights(layer, read) -> Optional[tf.Tensor]:
  """The weights of each head of an attention layer, one column per head.

  Column h holds head h's query, key and value kernel columns and biases
  and its rows of the output projection: the weights that die with it
  (`hidden_members.head_columns`, the one layout both engines use, on the
  tensors `read` gives).

  Args:
    layer: a MultiHeadAttention layer rebuild understands.
    read: maps a Keras variable to a tensor of its value (or None).

  Returns:
    A [weights per head, heads] float32 tensor, or None for another layer
    or a variable that cannot be read.
  """
  return hidden_members.head_columns(layer, read)


@dataclasses.dataclass
class AttentionCall:
  """One call of a MultiHeadAttention layer in the trace.

  Attributes:
    layer: the Keras layer.
    query, key, value: the graph tensors its projections read (batch,
      steps, channels).
    ops: every op of its scope.
    pruned: whether its heads are pruned (see `AttentionCalls.plan_heads`).
    hidden_ops: its output ops made sources of the hidden size (see
      `morph_net.keras.hidden_size`; analysed, not cut out).
  """
  layer: object
  query: tf.Tensor
  key: tf.Tensor
  value: tf.Tensor
  ops: List[tf.Operation]
  pruned: bool = False
  hidden_ops: List[tf.Operation] = dataclasses.field(default_factory=list)

  @property
  def name(self) -> str:
    return self.layer.name

  @property
  def output_channels(self) -> int:
    return int(self.layer._output_dense.kernel.shape[-1])  # pylint: disable=protected-access

  def per_head(self, resource_function, dq, dk, dv,
               out=None) -> Optional[float]:
    """The cost of one head at input widths dq, dk, dv and output width
    `out` (numbers or float32 tensors; default: the layer's output
    channels), or None for a resource not costed from config."""
    if resource_function not in _RESOURCES:
      return None
    layer = self.layer
    key_dim, value_dim = int(layer.key_dim), int(layer.value_dim)
    if out is None:
      out = float(self.output_channels)
    if not _RESOURCES[resource_function]:
      return (dq * key_dim + dk * key_dim + dv * value_dim +
              value_dim * out)
    tq, tk = int(self.query.shape[1]), int(self.key.shape[1])
    return (2 * tq * key_dim * dq + 2 * tk * key_dim * dk +
            2 * tk * value_dim * dv + 2 * tq * value_dim * out +
            float(2 * tq * tk * key_dim + 2 * tq * tk * value_dim))


def _role(op_name: str, prefix: str) -> Optional[str]:
  """'query', 'key' or 'value' for an op in that projection's scope under
  the layer scope `prefix`, else None."""
  rest = op_name[len(prefix) + 1:].split('/')
  if len(rest) < 2:
    return None
  role = _SUFFIX.sub('', rest[0])
  return role if role in ('query', 'key', 'value') else None


class AttentionCalls(object):
  """The MultiHeadAttention calls of a traced model.

  Args:
    traced: a `tracing.TracedModel`.
  """

  def __init__(self, traced):
    self._traced = traced
    layers = recurrent.layers_of_kind(traced, _is_attention)
    self.calls: List[AttentionCall] = []
    self._settings = None  # recurrent.LayerSourceSettings when pruned.
    self._regularizers = {}  # layer name -> OpRegularizer of its heads.
    for (prefix, name), ops in recurrent.layer_scopes(traced,
                                                      layers).items():
      call = self._call(layers[name], prefix, ops)
      if call is not None:
        self.calls.append(call)

  @staticmethod
  def _call(layer, prefix, ops) -> Optional[AttentionCall]:
    inside = set(ops)
    inputs = {}
    for op in ops:
      role = _role(op.name, prefix)
      if role is None:
        continue
      for tensor in op.inputs:
        if (tensor.op not in inside and tensor.dtype.is_floating and
            tensor.shape.rank == 3):
          inputs.setdefault(role, tensor)
    if sorted(inputs) != ['key', 'query', 'value']:
      logging.warning(
          'Attention layer %r (%s): its query, key and value inputs were not '
          'found in the trace; its heads keep their number.', layer.name,
          type(layer).__name__)
      return None
    return AttentionCall(layer, inputs['query'], inputs['key'],
                         inputs['value'], list(ops))

  # ------------------------------------------------------------ the heads.

  def plan_heads(self, regularizer_class, regularizer_kwargs, excluded,
                 min_channels: int = 1):
    """Decides which calls' heads are pruned, before the analysis.

    Heads are pruned under GroupLasso regularizers of FLOPs or model size
    for the layers surgery's channel model gives a head group. Other
    families and resources keep every head (one warning names the layers).
    The attention layers, whose input and output channels always keep
    their width, are taken out of the kept-layers warning (their heads are
    what a structure sets).

    Args:
      regularizer_class: the network regularizer class.
      regularizer_kwargs: its arguments (threshold, l1_fraction ...).
      excluded: the `regularizable.ExcludedOps` of the model.
      min_channels: heads kept alive in a layer whose removal would
        disconnect a model output.

    Returns:
      The excluded ops, without the attention layers in `warned`.
    """
    self._warn_unsupported()
    channels = excluded.channels
    if channels is None or not self.calls:
      return excluded
    sources = set(channels.source_layers())
    candidates = [c for c in self.calls if c.name in sources]
    if not candidates:
      return excluded
    from morph_net.keras import regularizable  # pylint: disable=g-import-not-at-top
    names = {c.name for c in candidates}
    excluded = regularizable.ExcludedOps(
        excluded.op_names, excluded.layers,
        [n for n in excluded.warned if n not in names], channels)
    resource = _class_resource(regularizer_class)
    family = getattr(regularizer_class, '__name__', regularizer_class)
    if recurrent.is_group_lasso(regularizer_class) and resource in _RESOURCES:
      self._settings = recurrent.layer_source_settings(
          regularizer_class, regularizer_kwargs, channels, min_channels)
      for call in candidates:
        call.pruned = True
      return excluded
    why = ('a head has no batch-norm scale or gate of its own; only '
           'GroupLasso regularizers of FLOPs or model size prune heads'
           if not recurrent.is_group_lasso(regularizer_class) else
           'only the FLOPs and model size of attention heads are costed '
           'from their number')
    logging.warning(
        'Attention layer(s) %s: %s regularizes no attention heads (%s), so '
        'they keep every head.',
        ', '.join('%r (%s)' % (n, type(channels.layers[n]).__name__)
                  for n in sorted(names)), family, why)
    return excluded

  def _warn_unsupported(self) -> None:
    """One warning naming the MultiHeadAttention layers whose heads no
    structure can set (see `builtin_rules.attention_heads`)."""
    names = sorted(
        l.name for l in self._traced.model._flatten_layers(  # pylint: disable=protected-access
            include_self=False, recursive=True)
        if isinstance(l, builtin_rules.L.MultiHeadAttention) and
        not _is_attention(l))
    if names:
      logging.warning(
          'Attention layer(s) %s keep every head: rebuild removes the heads '
          'of MultiHeadAttention layers without a gate, with the default '
          'output shape, attending over the steps of rank-3 inputs.',
          ', '.join('%r (MultiHeadAttention)' % n for n in names))

  def pruned_calls(self) -> List[AttentionCall]:
    return [call for call in self.calls if call.pruned]

  def input_ops(self) -> List[tf.Operation]:
    """Ops producing the pruned calls' inputs (extra output boundary)."""
    return [t.op for call in self.pruned_calls()
            for t in (call.query, call.key, call.value)]

  def ops(self) -> List[tf.Operation]:
    """Every op of the pruned calls (costed here)."""
    return [op for call in self.pruned_calls() for op in call.ops]

  def boundary_ops(self) -> List[tf.Operation]:
    """The pruned calls' ops but the hidden-size sources (extra input
    boundary)."""
    return [op for call in self.pruned_calls() for op in call.ops
            if op not in call.hidden_ops]

  def projection_sources(self) -> List[tf.Operation]:
    """The hidden-size sources that multiply by the output projection's
    kernel (a layer without an output bias ends in that product): analysed
    by the graph engine as sources, but costed here (the output term of
    `per_head`, at the alive heads), so the network cost must skip them."""
    costed = op_vocabulary.MATMUL_OP_TYPES | op_vocabulary.EINSUM_OP_TYPES
    return [op for call in self.pruned_calls() for op in call.hidden_ops
            if op.type in costed]

  def connecting_layers(self) -> List[str]:
    """The layers with pruned heads that keep `min_channels` alive."""
    if self._settings is None:
      return []
    return sorted({c.name for c in self.pruned_calls()
                   if c.name in self._settings.connecting})

  def _heads(self, call):
    """The OpRegularizer of `call`'s heads (one per layer), made in the
    traced graph on first use."""
    if call.name not in self._regularizers:
      graph = self._traced.graph
      weights = head_weights(call.layer,
                             lambda v: recurrent.variable_tensor(graph, v))
      with graph.as_default():
        self._regularizers[call.name] = recurrent.layer_source_regularizer(
            weights, call.name, self._settings)
    return self._regularizers[call.name]

  def head_regularizers(self) -> Dict[str, object]:
    """{layer name: the OpRegularizer of its heads} of the pruned calls
    (made in the traced graph)."""
    with self._traced.graph.as_default():
      return {call.name: self._heads(call) for call in self.pruned_calls()}

  def set_head_regularizer(self, name: str, regularizer) -> None:
    """Replaces the OpRegularizer of layer `name`'s heads (before the cost
    and term are built)."""
    self._regularizers[name] = regularizer

  def head_vectors(self, read) -> Dict[str, tf.Tensor]:
    """{layer name: read(heads)} of the layers whose heads are pruned,
    where `heads` has the `alive_vector` and `regularization_vector` of its
    heads."""
    result = {}
    for call in self.pruned_calls():
      if call.name not in result:
        regularizer = self._heads(call)
        result[call.name] = read(types.SimpleNamespace(
            alive_vector=regularizer.alive_vector,
            regularization_vector=regularizer.regularization_vector))
    return result

  # --------------------------------------------------------- cost and term.

  @staticmethod
  def _input(manager, tensor):
    """(alive count, regularization sum) of an input tensor."""
    regularizer = manager.get_regularizer(tensor.op)
    if regularizer is None:
      return tf.constant(float(tensor.shape[-1])), 0.0
    alive = tf.reduce_sum(tf.cast(regularizer.alive_vector, tf.float32))
    return alive, tf.reduce_sum(tf.cast(regularizer.regularization_vector,
                                        tf.float32))

  def _output(self, manager, call):
    """(alive count, regularization sum) of a call's output channels: the
    hidden size's when its output op is a source of it, else every
    channel with sum 0."""
    if call.hidden_ops:
      return self._input(manager, call.hidden_ops[0].outputs[0])
    return tf.constant(float(call.output_channels)), 0.0

  def _sum(self, manager, resource_function, per_call) -> tf.Tensor:
    total = tf.constant(0.0)
    counted = set()
    for call in self.pruned_calls():
      if resource_function not in _RESOURCES:
        continue
      if not _RESOURCES[resource_function]:
        # A model size counts a shared layer's weights once.
        if call.name in counted:
          continue
        counted.add(call.name)
      heads = self._heads(call)
      alive = tf.reduce_sum(tf.cast(heads.alive_vector, tf.float32))
      head_sum = tf.reduce_sum(tf.cast(heads.regularization_vector,
                                       tf.float32))
      inputs = [self._input(manager, t)
                for t in (call.query, call.key, call.value)]
      inputs.append(self._output(manager, call))
      total += per_call(call, resource_function, alive, head_sum, inputs)
    return total

  def cost(self, manager, resource_function) -> tf.Tensor:
    """The pruned attention layers' cost (float32 scalar), traced graph."""
    def per_call(call, function, alive, head_sum, inputs):
      del head_sum
      (dq, _), (dk, _), (dv, _), (out, _) = inputs
      return alive * call.per_head(function, dq, dk, dv, out)
    return self._sum(manager, resource_function, per_call)

  def term(self, manager, resource_function) -> tf.Tensor:
    """Their regularization term (float32 scalar): the bilinear form."""
    def per_call(call, function, alive, head_sum, inputs):
      (dq, rq), (dk, rk), (dv, rv), (out, ro) = inputs
      # The cost is linear in each width: its part per channel is
      # per_head at that width 1 minus per_head at 0.
      base = call.per_head(function, 0, 0, 0, 0)
      slopes = [call.per_head(function, 1, 0, 0, 0) - base,
                call.per_head(function, 0, 1, 0, 0) - base,
                call.per_head(function, 0, 0, 1, 0) - base,
                call.per_head(function, 0, 0, 0, 1) - base]
      return (head_sum * call.per_head(function, dq, dk, dv, out) +
              alive * (slopes[0] * rq + slopes[1] * rk + slopes[2] * rv +
                       slopes[3] * ro))
    return self._sum(manager, resource_function, per_call)

  def structure_cost(self, resource_function, widths) -> Optional[float]:
    """The attention layers' cost in a rebuilt model.

    Args:
      resource_function: the resource costed.
      widths: callable(call) -> (heads, dq, dk, dv, out) in the rebuilt
        model, or None for a layer that vanished.

    Returns:
      The cost of every call whose layer has a head group (pruned or not),
      or None for a resource not costed from config.
    """
    if resource_function not in _RESOURCES:
      return None
    total, counted = 0.0, set()
    for call in self.calls:
      if not _RESOURCES[resource_function]:
        if call.name in counted:
          continue
        counted.add(call.name)
      rebuilt = widths(call)
      if rebuilt is None:
        continue
      heads, dq, dk, dv, out = rebuilt
      total += heads * call.per_head(resource_function, dq, dk, dv, out)
    return total


def _class_resource(regularizer_class):
  """The class-level resource function of a network regularizer class, or
  None (latency classes bind theirs per instance)."""
  try:
    return getattr(regularizer_class, 'resource_function', None)
  except errors.ResourceNotBoundError:
    return None
