"""ModelRegularizer: a MorphNet network regularizer for a Keras model.

    reg = morph_net.keras.ModelRegularizer(
        model, flop_regularizer.GammaFlopsRegularizer, gamma_threshold=1e-3)
    reg.set_strength_relative_to_cost(1.0)
    model.compile(optimizer='adam',
                  loss=reg.wrap_loss('sparse_categorical_crossentropy'),
                  metrics=['accuracy'] + reg.metrics())
    model.fit(...)
    reg.alive_counts()  # {'conv1': 12, ...}

The model is traced once (a `tracing.TracedModel`, which can be passed
instead of the model to share one trace with `StructureCost`); the term, the
cost and the alive vectors are functions of the traced graph that read the
live variables, so they can be called eagerly, inside `model.fit`'s compiled
train step, and under a `tf.distribute` strategy, and are differentiable with
respect to the model's variables.

`wrap_loss` and `metrics()` return registered, serializable Keras objects
(`losses.MorphNetLoss`, `metrics.MorphNetMetric`): the compiled model saves
and loads as any Keras model, without its regularizer (the loaded loss is
the data loss alone) until `attach` gives it one again.
"""

from typing import Callable, Dict, List, Mapping, Optional

from absl import logging

import numpy as np
import tensorflow as tf

from morph_net import errors
from morph_net.framework import constant_op_regularizer
from morph_net.framework import minimum_alive_regularizer
from morph_net.keras import attention
from morph_net.keras import compile_parts
from morph_net.keras import hidden_size
from morph_net.keras import losses
from morph_net.keras import metrics as metrics_lib
from morph_net.keras import recurrent
from morph_net.keras import regularizable
from morph_net.keras import tracing
from morph_net.keras import strength as strength_lib
from morph_net.keras import vanishing as vanishing_lib
from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import latency_profile
from morph_net.network_regularizers import op_types
from morph_net.network_regularizers import registry
from morph_net.network_regularizers import resource_function
from morph_net.op_handlers import matmul_source_op_handler
from morph_net.op_handlers import op_handlers
from morph_net.structure import structure_files
from morph_net.structure import width_multiplier

__all__ = ['ModelRegularizer', 'model_regularizer', 'model_cost',
           'is_structure_op', 'STRUCTURE_OP_TYPES']

# Ops whose output channels make up a structure: convolutions, transposed
# convolutions and dense layers (the op types of the original's
# StructureExporter).
STRUCTURE_OP_TYPES = (op_types.CONV_OP_TYPES |
                      op_types.CONV_TRANSPOSE_OP_TYPES |
                      frozenset(['MatMul']))


_BATCH_MATMUL_SOURCE = matmul_source_op_handler.BatchMatMulSourceOpHandler(
    0.0)


def is_structure_op(op: tf.Operation) -> bool:
  """Whether `op`'s output channels are part of a structure: a conv,
  transposed conv or matmul, or a function call whose body is one (Keras 3
  compiles grouped convs into a call; see `op_types.costed_op`), or a
  batch matmul by a 2-D kernel (an EinsumDense over the last axis)."""
  return (op_types.costed_op(op).type in STRUCTURE_OP_TYPES or (
      op.type in op_types.MATMUL_OP_TYPES and
      _BATCH_MATMUL_SOURCE.is_source(op)))


class ModelRegularizer(object):
  """Builds a network regularizer on a traced Keras model.

  Args:
    model: a built Keras model (Sequential, functional, subclassed; nested
      models and shared layers allowed), or a `tracing.TracedModel` of one.
    regularizer_class: a class of `morph_net.network_regularizers`, for
      example `flop_regularizer.GammaFlopsRegularizer`, or its name
      ('GammaFlopsRegularizer').
    strength: initial regularization strength (the term's multiplier in the
      loss); it lives in a non-trainable variable, see `set_strength`.
    input_shape: input shape without batch (or a list of them); required for
      subclassed models and models with unknown spatial sizes. Not used with
      a TracedModel.
    keep_output_widths: do not regularize the channel groups that reach a
      model output (a classifier keeps its classes; `rebuild` refuses to
      change an output's width). False regularizes them, as the original
      did unless its users blacklisted them.
    min_channels: channels kept alive in every group whose removal would
      disconnect a model output (the convs of a plain chain; a residual
      branch or an Inception tower may still vanish whole): when fewer are
      alive, those with the largest regularization values count as alive.
      0 lets such a group die (the structure then cannot be rebuilt).
    op_handler_dict: {op type: OpHandler} registered over the regularizer
      family's default handlers (`op_handlers.custom_handler_scope`), for
      op types the defaults do not know or handle wrongly, for example
      {'Atan': leaf_op_handler.LeafOpHandler()}.
    **regularizer_kwargs: arguments of `regularizer_class` other than the
      boundaries (for example gamma_threshold=1e-3, hardware='V100'). A
      `regularizer_blacklist` is extended with the ops of the channel
      groups rebuild cannot narrow (see `regularizable`): groups reaching a
      model output and groups surgery's channel model freezes (one warning
      names those layers).

  Raises:
    InvalidArgumentError: for an unbuilt model, an unknown input size, an
      unknown regularizer name, arguments the regularizer class does not
      take (or a required one missing), a negative or non-finite
      strength or alive threshold, a malformed `op_handler_dict`, or one
      that `regularizer_class` does not use (it does not build its
      registry with `op_handlers`' factories).
    InvalidArgumentTypeError: for an `op_handler_dict` that is not a dict.
    NoSourceOpsError: when the model has nothing to regularize (for example
      a Gamma regularizer without batch norm scale).
  """

  def __init__(self, model, regularizer_class, strength: float = 0.0,
               input_shape=None, keep_output_widths: bool = True,
               min_channels: int = 1,
               op_handler_dict: Optional[Mapping[str, object]] = None,
               **regularizer_kwargs):
    strength = errors.check_number('strength', strength)
    if isinstance(regularizer_class, str):
      regularizer_class = registry.get_regularizer_class(regularizer_class)
    registry.check_arguments(regularizer_class, regularizer_kwargs)
    self._class_and_kwargs = (regularizer_class, dict(regularizer_kwargs))
    self._traced = (model if isinstance(model, tracing.TracedModel) else
                    tracing.TracedModel(model, input_shape))
    excluded = regularizable.excluded_ops(self._traced, keep_output_widths)
    # Recurrent loops are cut out of the analysis and costed from config;
    # their units are pruned under GroupLasso regularizers, else kept.
    self._recurrent = recurrent.RecurrentCalls(self._traced)
    excluded = self._recurrent.plan_units(
        regularizer_class, regularizer_kwargs, excluded, min_channels)
    # Attention calls whose heads are pruned are cut out the same way.
    self._attention = attention.AttentionCalls(self._traced)
    excluded = self._attention.plan_heads(
        regularizer_class, regularizer_kwargs, excluded, min_channels)
    # The hidden size (a transformer's residual stream, an embedding's
    # output): sources made of its embeddings and attention outputs.
    self._hidden = hidden_size.HiddenGroups(self._traced, excluded.channels,
                                            self._attention, self._recurrent)
    excluded = self._hidden.plan(regularizer_class, regularizer_kwargs,
                                 excluded, min_channels)
    excluded.warn()
    self._kept_layers = frozenset(excluded.layers)
    if excluded.channels is not None:
      # A recurrent layer keeping its units that may vanish: its outputs
      # are analysed as constant sources, so that its readers' channels
      # can count dead (`_mask_vanishing`).
      self._recurrent.plan_vanishing(vanishing_lib.may_vanish(
          excluded.channels,
          set(excluded.channels.source_layers()) - self._kept_layers))
    # The names a structure may hold: the channel model's width-taking
    # layers (None when rebuild cannot read the model).
    self._channels = excluded.channels
    self._structure_layers = (
        None if excluded.channels is None else
        frozenset(excluded.channels.source_layers()))
    regularizable.warn_uncosted(
        self._traced, self._recurrent.ops() + self._attention.ops())
    custom_handlers = op_handler_dict or {}

    def build():
      with op_handlers.custom_handler_scope(custom_handlers):
        with self._recurrent.unit_sources(), self._hidden.sources():
          return regularizable.build_regularizer(
              self._traced, regularizer_class, excluded, regularizer_kwargs,
              extra_output_ops=(self._recurrent.input_ops() +
                                self._attention.input_ops()),
              extra_input_ops=(self._recurrent.output_ops() +
                               self._attention.boundary_ops()))
    self._network_regularizer = build()
    constant = self._recurrent.constant_sources()
    if constant and not any(
        self.op_regularizer_manager.is_source_op(op)
        for op in self.op_regularizer_manager.ops if op not in constant):
      # Only the constant sources: nothing to regularize, so nothing can
      # vanish. Analysed without them, the model gets the error (or the
      # warning) of a model without sources.
      self._recurrent.plan_vanishing(())
      self._network_regularizer = build()
    _check_handlers_used(self.op_regularizer_manager, regularizer_class,
                         custom_handlers)
    self._hidden.override(self.op_regularizer_manager)
    self._min_channels = max(int(min_channels), 0)
    self._connecting_layers = sorted(set(regularizable.keep_connected(
        self.op_regularizer_manager, self._traced, excluded.channels,
        self._min_channels)) | set(self._recurrent.connecting_layers()) |
        set(self._attention.connecting_layers()) |
        set(self._hidden.connecting_layers()))
    # Sets of groups that disconnect an output only together (parallel
    # branches joined by a concatenation): one of them keeps channels.
    self._connecting_sets = regularizable.keep_sets_connected(
        self.op_regularizer_manager, self._traced, excluded.channels,
        self._min_channels, self._attention.head_regularizers(),
        self._attention.set_head_regularizer)
    # Layers whose every input vanished vanish in rebuild, in cascade:
    # their groups' channels count as dead (see `vanishing`). The masked
    # constant regularizers of channels nothing regularizes are not
    # structure entries.
    self._vanishing_only = set()
    self._vanishing = self._mask_vanishing()
    # The term is called inside compiled train steps, so its function is
    # made now; the cost's and the alive vectors' on first use.
    self._term = self._function_of(self._term_tensor)
    self._cost = None
    self._alive = None
    self._regularization = None
    self._strength = tf.Variable(strength, trainable=False,
                                 dtype=tf.float32,
                                 name='morph_net_strength')
    # The rescue term (see `rescue_term`): 0 unless a cost target sets it.
    self._rescue_strength = tf.Variable(0.0, trainable=False,
                                        dtype=tf.float32,
                                        name='morph_net_rescue_strength')
    self._rescue_band = tf.Variable(2.0 * self.alive_threshold,
                                    trainable=False, dtype=tf.float32,
                                    name='morph_net_rescue_band')
    self._initial_cost = None

  def _op_groups_by_layer(self, names) -> Dict[str, List[object]]:
    """{layer name: the op groups holding its output channels} of the
    width-taking layers `names`: the groups of its conv, dense or
    embedding ops and of its recurrent units (each group once per
    layer)."""
    manager = self.op_regularizer_manager
    owners = {op: name for name, ops in
              self._hidden.embedding_ops().items() for op in ops}
    for call in self._recurrent.unit_calls():
      owners.setdefault(call.unit_ops[0], call.layer.name)
    for op, name in self._recurrent.constant_sources().items():
      owners.setdefault(op, name)
    found = {}
    for op in manager.ops:
      name = owners.get(op)
      if name is None and is_structure_op(op):
        name = self._traced.known_layer_name(op, self._channels.layers)
      if name not in names:
        continue
      of_name = found.setdefault(name, [])
      for op_slice in manager.get_op_slices(op):
        group = manager.get_op_group(op_slice)
        if group is not None and all(g is not group for g in of_name):
          of_name.append(group)
    return found

  def _mask_vanishing(self) -> Optional[vanishing_lib.Vanishing]:
    """Makes dead the channels of the groups whose every width-taking layer
    lost all its inputs (`vanishing.Vanishing.group_live`, computed from
    the alive vectors as they are now), in the manager and in the
    attention heads. Returns the `Vanishing` (None for a model rebuild
    does not read)."""
    if self._channels is None:
      return None
    manager = self.op_regularizer_manager
    # Layers that keep channels whatever the values: never width 0.
    never_zero = set(self._kept_layers)
    if self._min_channels:
      never_zero.update(self._connecting_layers)
    with self._traced.graph.as_default():
      zero = {name: tf.logical_not(tf.reduce_any(alive)) for name, alive in
              self._alive_tensors().items() if name not in never_zero}
      vanishing = vanishing_lib.Vanishing(self._channels, zero, _TF_LOGIC)
      masks = vanishing.group_masks()
      masked = set()
      for name, op_groups in self._op_groups_by_layer(set(masks)).items():
        for group in op_groups:
          if id(group) in masked or not group.op_slices:
            continue
          masked.add(id(group))
          regularizer = manager.get_group_regularizer(group)
          if regularizer is None:
            # Channels no regularizer reads (a Dense without a batch norm
            # under a Gamma regularizer): alive while the layer is.
            regularizer = _masked(constant_op_regularizer.ConstantOpRegularizer(
                group.op_slices[0].slice.size), masks[name])
            self._vanishing_only.add(id(regularizer))
          else:
            regularizer = _masked(regularizer, masks[name])
          manager.set_group_regularizer(group, regularizer)
      for name, regularizer in self._attention.head_regularizers().items():
        if name in masks:
          self._attention.set_head_regularizer(
              name, _masked(regularizer, masks[name]))
    return vanishing

  # --------------------------------------------------------------- the loss.

  @property
  def traced(self) -> tracing.TracedModel:
    """The traced model (graph, boundaries, op -> layer map)."""
    return self._traced

  @property
  def model(self):
    return self._traced.model

  @property
  def network_regularizer(self):
    """The core NetworkRegularizer built on the traced graph."""
    return self._network_regularizer

  @property
  def op_regularizer_manager(self):
    return self._network_regularizer.op_regularizer_manager

  @property
  def name(self) -> str:
    return self._network_regularizer.name

  @property
  def cost_name(self) -> str:
    return self._network_regularizer.cost_name

  @property
  def min_channels(self) -> int:
    """Channels kept alive in each group of `connecting_layers`."""
    return self._min_channels

  @property
  def connecting_layers(self) -> List[str]:
    """Layers whose group's removal would disconnect a model output (they
    keep `min_channels` alive; empty when min_channels is 0)."""
    return list(self._connecting_layers)

  @property
  def connecting_sets(self) -> List[List[List[str]]]:
    """Sets of groups whose removal together would disconnect a model
    output: [[width-taking layer names of one group] per group]. When every
    group of a set is dead, the one with the largest regularization value
    keeps `min_channels` (empty when min_channels is 0)."""
    return [[list(g) for g in one_set] for one_set in self._connecting_sets]

  @property
  def alive_threshold(self) -> float:
    """The alive threshold the regularizer was built with (its class's
    `gamma_threshold`, `threshold` or `alive_threshold`)."""
    return registry.alive_threshold(*self._class_and_kwargs)

  @property
  def strength(self) -> tf.Variable:
    """The non-trainable strength variable; changing it needs no retrace."""
    return self._strength

  def set_strength(self, value: float) -> None:
    """Sets the strength (a finite number >= 0; InvalidArgumentError else)."""
    self._strength.assign(errors.check_number('strength', value))

  @property
  def initial_cost(self) -> float:
    """The cost when the regularizer was first asked for it (cached)."""
    if self._initial_cost is None:
      self._initial_cost = float(self.cost())
    return self._initial_cost

  def set_strength_relative_to_cost(self, multiplier: float) -> float:
    """Sets strength = multiplier / initial cost, the usual starting point.

    With it, the regularization loss starts near `multiplier` times the
    term-to-cost ratio, independently of the network's size.

    Returns:
      The strength set.
    """
    return strength_lib.set_relative_to_cost(self, multiplier)

  def _function_of(self, build_fetches: Callable[[], object]):
    """A function of the live variables computing what `build_fetches`
    builds in the traced graph.

    Outside any function being traced (`tf.init_scope`), so that a first
    use inside a compiled train step builds it eagerly.
    """
    with tf.init_scope():
      with self._traced.graph.as_default():
        fetches = build_fetches()
      return self._traced.function_of(fetches)

  def _costed_ops(self) -> Optional[List[tf.Operation]]:
    """The ops the cost and term sum over (None: all analysed ops); a model
    size counts each kernel once (see `regularizable.each_kernel_once`);
    an attention layer's output projection is costed by its heads
    (`attention.AttentionCalls.projection_sources`), not here."""
    resource = getattr(self._network_regularizer, 'resource_function', None)
    skipped = set(self._attention.projection_sources())
    if resource is not resource_function.model_size_function:
      if not skipped:
        return None
      return [op for op in self.op_regularizer_manager.ops
              if op not in skipped]
    return [op for op in regularizable.each_kernel_once(
        self._traced, self.op_regularizer_manager.ops) if op not in skipped]

  def _total(self, network_part, layer_parts) -> tf.Tensor:
    """A network regularizer total over `_costed_ops()` plus the parts of
    the layers costed from config (recurrent layers, see `recurrent`;
    attention layers with pruned heads, see `attention`), in the traced
    graph."""
    total = network_part(self._costed_ops())
    if not self._recurrent.calls and not self._attention.pruned_calls():
      return total
    function = getattr(self._network_regularizer, 'resource_function', None)
    total = tf.cast(total, tf.float32)
    for part in layer_parts:
      total += part(self.op_regularizer_manager, function)
    return total

  def _term_tensor(self) -> tf.Tensor:
    return self._total(self._network_regularizer.get_regularization_term,
                       [self._recurrent.term, self._attention.term])

  def _cost_tensor(self) -> tf.Tensor:
    vanished = self._vanishing.dead if self._vanishing else {}
    return self._total(
        self._network_cost,
        [lambda manager, function: self._recurrent.cost(
            manager, function, vanished), self._attention.cost])

  def _network_cost(self, ops) -> tf.Tensor:
    """The network regularizer's cost of `ops` (None: all analysed ops),
    where the costed ops of a layer that rebuild removes (`vanishing`)
    count 0 when it does. A layer that lost every input may write
    channels that live on in a group with another writer; a layer of
    width 0 may run ops on channels of another group (the depthwise step
    of a separable conv, on its input's channels). The other ops of a
    layer of width 0 cost 0 by its dead channels already."""
    get_cost = self._network_regularizer.get_cost
    vanished = self._vanishing.dead if self._vanishing else {}
    if not vanished:
      return get_cost(ops)
    lost_inputs = self._vanishing.inputs_dead
    own = self._op_groups_by_layer(set(vanished) - set(lost_inputs))
    manager = self.op_regularizer_manager
    function = getattr(self._network_regularizer, 'resource_function', None)
    costed = getattr(function, 'costed_op_types', op_types.COSTED_OP_TYPES)
    layers = self._channels.layers
    rest, by_layer = [], {}
    for op in (manager.ops if ops is None else ops):
      name = None
      if op.type in costed:
        name = (self._traced.known_layer_name(op, layers) or
                self._traced.scope_layer_name(op, layers) or
                self._traced.scope_operation_name(op))
      if name in vanished and (name in lost_inputs or any(
          all(manager.get_op_group(s) is not g for g in own.get(name, []))
          for s in manager.get_op_slices(op))):
        by_layer.setdefault(name, []).append(op)
      else:
        rest.append(op)
    if not by_layer:
      return get_cost(ops)
    total = (tf.cast(get_cost(rest), tf.float32)
             if any(op.type in costed for op in rest) else
             tf.constant(0.0, tf.float32))
    for name, of_layer in by_layer.items():
      total += tf.where(vanished[name], 0.0,
                        tf.cast(get_cost(of_layer), tf.float32))
    return total

  def term(self) -> tf.Tensor:
    """The regularization term (without strength), a float32 scalar."""
    return self._term()

  def _cost_function(self):
    if self._cost is None:
      self._cost = self._function_of(self._cost_tensor)
    return self._cost

  def cost(self) -> tf.Tensor:
    """The cost with dead channels removed, a float32 scalar."""
    return self._cost_function()()

  @property
  def rescue_strength(self) -> tf.Variable:
    """The non-trainable multiplier of `rescue_term` in `loss()` (0 unless
    `CostTargetCallback` sets it)."""
    return self._rescue_strength

  @property
  def rescue_band(self) -> tf.Variable:
    """The non-trainable upper edge of `rescue_term`'s band (initially
    twice the alive threshold)."""
    return self._rescue_band

  def rescue_term(self) -> tf.Tensor:
    """The alive channels' distance under the rescue band, summed.

    `sum(band - v)` over the regularization values `v` (those of
    `regularization_vectors()`) with `alive_threshold < v < band`: its
    gradient pushes every alive channel near the alive threshold away from
    it, with a force of 1 per channel, and is 0 for the dead channels and
    for the channels above the band. Below a cost target it is the
    negative side of the constraint's multiplier (an equality constraint's
    multiplier has no sign): the network's data loss keeps moving values
    across the threshold after the strength stopped pushing, and no
    positive strength stops them (see `CostTargetController`).

    Returns:
      A float32 scalar >= 0, differentiable in the regularized variables.
    """
    if self._regularization is None:
      self._regularization = self._function_of(self._regularization_tensors)
    threshold = float(self.alive_threshold)
    band = tf.cast(self._rescue_band, tf.float32)
    total = tf.constant(0.0, tf.float32)
    for value in self._regularization().values():
      inside = tf.logical_and(value > threshold, value < band)
      total += tf.reduce_sum(tf.where(inside, band - value,
                                      tf.zeros_like(value)))
    return total

  def loss(self) -> tf.Tensor:
    """strength * term + rescue_strength * rescue_term: what is added to
    the training loss (the original's `strength * term` while the rescue
    strength is 0, as it is unless a cost target sets it).

    Inside a replica context with several replicas, the traced graph reads
    the first replica's variables, so only the first replica's gradient
    sees the term. There it is weighted by the number of replicas (and the
    others add 0), which makes the summed gradient and loss equal to one
    device's.
    """
    value = tf.cast(self._strength, tf.float32) * self.term()
    value += tf.cast(self._rescue_strength, tf.float32) * self.rescue_term()
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context is not None else 1
    if replicas > 1:
      is_first = tf.cast(tf.equal(context.replica_id_in_sync_group, 0),
                         tf.float32)
      value = value * is_first * float(replicas)
    return value

  def wrap_loss(self, loss) -> losses.MorphNetLoss:
    """Returns a loss for `compile` that adds `self.loss()` to `loss`.

    Args:
      loss: the data loss: a loss name, function or Loss instance, as
        `compile` accepts (a `MorphNetLoss`, e.g. of a loaded model, is
        replaced by one of its data loss).

    Returns:
      A `losses.MorphNetLoss`: per example, the data loss plus the
      regularization loss; Keras averages it over the batch, which adds the
      regularization once. It is serializable: a model compiled with it
      saves and loads (without the regularizer, see `attach`).
    """
    return losses.MorphNetLoss(losses.unwrap(loss), regularizer=self)

  def metrics(self) -> List[metrics_lib.MorphNetMetric]:
    """Keras metrics showing the regularization loss and the cost in `fit`.

    Returns:
      Two serializable `metrics.MorphNetMetric`s, averaged over each epoch:
      'morph_net_loss' (strength * term) and the cost (named after
      `cost_name` in lower case, e.g. 'flops').
    """
    self._cost_function()  # Built now, outside the train step.
    return [
        metrics_lib.MorphNetMetric('regularization_loss', self,
                                   name='morph_net_loss'),
        metrics_lib.MorphNetMetric('cost', self,
                                   name=self.cost_name.lower()),
    ]

  def attach(self, model=None) -> int:
    """Attaches this regularizer to the MorphNet loss and metrics of `model`.

    A model saved after compiling with `wrap_loss` and `metrics()` loads with
    a `MorphNetLoss` and `MorphNetMetric`s that have no regularizer (the loss
    is the data loss alone). Build a regularizer on the loaded model and
    attach it to train with MorphNet again:

        model = keras.models.load_model('model.keras')
        regularizer = ModelRegularizer(model, GammaFlopsRegularizer, ...)
        regularizer.attach(model)

    The model is compiled again with its compile arguments, its own
    optimizer (and so its optimizer state) and the attached MorphNet parts.

    Args:
      model: the compiled Keras model this regularizer was built on
        (default: that model).

    Returns:
      The number of MorphNet losses and metrics attached.

    Raises:
      InvalidArgumentError: for another model than the regularizer's.
      NotReadyError: if the model is not compiled, or compiled without a
        `MorphNetLoss`.
    """
    model = self.model if model is None else model
    if model is not self.model:
      raise errors.InvalidArgumentError(
          'Invalid value for argument `model` of attach: %r is not the model '
          '%r this regularizer analyses. Build a ModelRegularizer on the model '
          'you train.' % (getattr(model, 'name', model), self.model.name))
    return compile_parts.attach(self, model)

  # -------------------------------------------------------------- structure.

  def _per_layer_tensors(self, read, kept_value) -> Dict[str, tf.Tensor]:
    """{layer name: a vector per output channel} of regularized conv/dense
    layers (`read(op regularizer)`), and of the conv/dense layers with
    sources that the bridge keeps from regularization (their channels reach
    a model output, or rebuild cannot narrow them, e.g. a grouped conv):
    `kept_value(width)`, they keep their width.

    A layer used by several ops (a shared layer) combines its uses with
    the element-wise maximum (for booleans: alive where any use is). Only
    layers a structure can name are listed: for models rebuild reads, the
    channel model's width-taking layers (not, e.g., the inner Dense of a
    custom layer, or the custom layer itself).
    """
    manager = self.op_regularizer_manager
    by_layer = {}
    embedding_ops = {op: name for name, ops in
                     self._hidden.embedding_ops().items() for op in ops}
    for op in manager.ops:
      if op in embedding_ops:
        regularizer = manager.get_regularizer(op)
        if regularizer is not None:
          name = embedding_ops[op]
          value = read(regularizer)
          by_layer[name] = (_combine(by_layer[name], value)
                            if name in by_layer else value)
        continue
      if not is_structure_op(op):
        continue
      regularizer = manager.get_regularizer(op)
      if regularizer is not None and id(regularizer) in self._vanishing_only:
        regularizer = None
      if self._structure_layers is None:
        name = self._traced.layer_name(op) or op.name
      else:
        name = self._traced.known_layer_name(op, self._channels.layers)
        if name not in self._structure_layers:
          continue
      if regularizer is not None:
        value = read(regularizer)
      elif name in self._kept_layers and _has_sources(
          manager, op, self._recurrent.constant_sources()):
        value = kept_value(int(op.outputs[0].shape[-1]))
      else:
        continue
      by_layer[name] = (_combine(by_layer[name], value)
                        if name in by_layer else value)
    # Recurrent layers whose units are pruned: one channel per unit.
    by_layer.update(self._recurrent.unit_vectors(manager, read))
    # Attention layers whose heads are pruned: one entry per head.
    by_layer.update(self._attention.head_vectors(read))
    return by_layer

  def _alive_tensors(self) -> Dict[str, tf.Tensor]:
    return self._per_layer_tensors(lambda r: r.alive_vector,
                                   lambda n: tf.ones([n], tf.bool))

  def _regularization_tensors(self) -> Dict[str, tf.Tensor]:
    return self._per_layer_tensors(
        lambda r: tf.cast(r.regularization_vector, tf.float32),
        lambda n: tf.fill([n], float('inf')))

  def alive_vectors(self) -> Dict[str, np.ndarray]:
    """{layer name: numpy bool vector of alive output channels}."""
    if self._alive is None:
      self._alive = self._function_of(self._alive_tensors)
    return {k: v.numpy() for k, v in self._alive().items()}

  def regularization_vectors(self) -> Dict[str, np.ndarray]:
    """{layer name: numpy float32 regularization vector of its channels}.

    The values the alive threshold is applied to (|gamma| for Gamma
    regularizers, the weights' group norm for GroupLasso, the gate
    probability for LogisticSigmoid), keyed like `alive_vectors()`; a
    layer kept from regularization has `inf` for every channel.
    """
    if self._regularization is None:
      self._regularization = self._function_of(self._regularization_tensors)
    return {k: v.numpy() for k, v in self._regularization().items()}

  def alive_counts(self) -> Dict[str, int]:
    """{layer name: number of alive output channels}, as in the JSON files."""
    return {k: int(np.sum(v)) for k, v in self.alive_vectors().items()}

  def aligned_counts(self, round_to: Optional[int] = None
                     ) -> Dict[str, int]:
    """`alive_counts()` rounded up to a multiple, capped at the widths.

    A latency profile's kernels run widths in blocks of its
    `preferred_multiple`: the cost (`cost()`) already counts 9 channels
    as 16 at a multiple of 8, so the structure to rebuild keeps 16.

    A profile also charges misaligned widths extra, so a regularizer
    trained to a latency target drove the misaligned alive counts to it
    and the rounded counts cost less (5-8% on MobileNetV2 and a CNN).
    `morph_net.keras.expansion.aligned_structure(regularizer, target)`
    widens them, in steps of the multiple, to the target and not above.

    Args:
      round_to: the multiple; default the latency profile's
        `preferred_multiple` (`latency_profile.preferred_multiple_of`),
        1 (the alive counts as they are) for other regularizers.

    Returns:
      {layer name: width}.
    """
    if round_to is None:
      round_to = latency_profile.preferred_multiple_of(self)
    vectors = self.alive_vectors()
    counts = {k: int(np.sum(v)) for k, v in vectors.items()}
    if round_to == 1:
      return counts
    return width_multiplier.round_up(
        counts, round_to, {k: int(v.size) for k, v in vectors.items()})

  def save_alive_counts(self, base_dir: str, step: int,
                        round_to: Optional[int] = None) -> str:
    """Writes learned_structure/alive_<step> and learned_structure/alive.

    Args:
      base_dir: the run's directory.
      step: the training step.
      round_to: see `aligned_counts`: by default the widths of a latency
        regularizer on an aligned profile are rounded up to its multiple,
        the others are the alive counts.

    Returns:
      The path of the step file.
    """
    return structure_files.save_alive_counts_files(
        self.aligned_counts(round_to), base_dir, step)

  def layer_name(self, op: tf.Operation) -> Optional[str]:
    """The Keras layer whose weights `op` uses, or None."""
    return self._traced.layer_name(op)


# Scalar bool tensors of the traced graph, for `vanishing.Vanishing`.
_TF_LOGIC = vanishing_lib.Logic(
    all_of=lambda flags: tf.reduce_all(tf.stack(flags)),
    any_of=lambda flags: tf.reduce_any(tf.stack(flags)),
    not_=tf.logical_not, true=lambda: tf.constant(True))


def _masked(regularizer, live: tf.Tensor):
  """`regularizer` whose channels are all dead where `live` is False (its
  regularization vector unchanged)."""
  return minimum_alive_regularizer.AliveVectorRegularizer(
      regularizer, tf.logical_and(regularizer.alive_vector, live))


def _combine(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
  """Element-wise 'any' of two bool vectors, or maximum of float ones."""
  if a.dtype == tf.bool:
    return tf.logical_or(a, b)
  return tf.maximum(a, b)


def _check_handlers_used(manager, regularizer_class,
                         handlers: Mapping[str, object]) -> None:
  """Raises if the analysis did not use the handlers the user passed.

  A handler for an op type the analysed graph does not run is reported by
  one warning.

  Raises:
    InvalidArgumentError: when an op of a type in `handlers` was analysed
      with another handler (`regularizer_class` builds its registry
      without `op_handlers`' factories).
  """
  if not handlers:
    return
  seen = {}
  for op in manager.ops:
    if op.type in handlers and op.type not in seen:
      seen[op.type] = op
  for op_type, op in sorted(seen.items()):
    used = manager.get_handler(op)
    wrapped = getattr(used, '_op_handler', None)  # OpHandlerDecorator.
    if used is not handlers[op_type] and wrapped is not handlers[op_type]:
      raise errors.InvalidArgumentError(
          "op_handler_dict[%r] was not used: %s analysed op %r (%s) with %s. "
          'Its registry is not built with morph_net.op_handlers.op_handlers\' '
          'factories (get_gamma_op_handler_dict, ...); register the handler '
          'in that registry instead.' % (
              op_type, regularizer_class.__name__, op.name, op.type,
              type(used).__name__))
  unused = sorted(set(handlers) - set(seen))
  if unused:
    logging.warning(
        'op_handler_dict has handlers for op types the model does not run '
        'between its inputs and outputs: %s.', ', '.join(unused))


def _has_sources(manager, op, constant_sources) -> bool:
  """Whether a group of `op`'s output has sources (would be regularized but
  for the blacklist) other than `constant_sources` (ops)."""
  for op_slice in manager.get_op_slices(op):
    group = manager.get_op_group(op_slice)
    if group is not None and any(s.op not in constant_sources
                                 for s in group.source_op_slices):
      return True
  return False


def model_regularizer(model, regularizer_class=None, threshold=1e-3,
                      input_shape=None, **kwargs) -> ModelRegularizer:
  """A ModelRegularizer (strength 0) whose threshold is named for its class.

  Args:
    model: a built Keras model or a `tracing.TracedModel`.
    regularizer_class: a network regularizer class (default
      GammaFlopsRegularizer).
    threshold: its alive threshold (gamma_threshold for Gamma*, threshold
      for GroupLasso*, alive_threshold for LogisticSigmoid*).
    input_shape: input shape without batch, for models whose input shape
      is not static.
    **kwargs: other arguments of the regularizer (e.g. hardware='V100').

  Returns:
    The ModelRegularizer.

  Raises:
    InvalidArgumentError: for a class without a known threshold argument,
      and as `ModelRegularizer`.
  """
  regularizer_class = (regularizer_class or
                       flop_regularizer.GammaFlopsRegularizer)
  kwargs.update(registry.threshold_kwargs(regularizer_class, threshold))
  return ModelRegularizer(model, regularizer_class, input_shape=input_shape,
                          **kwargs)


def model_cost(model, regularizer_class=None, threshold=1e-3,
               input_shape=None) -> float:
  """The regularizer's cost of `model` with its dead channels removed."""
  return float(model_regularizer(model, regularizer_class, threshold,
                                 input_shape).cost())
