"""The one implementation behind every network regularizer.

A network regularizer is a source family (which ops carry the regularization:
batch norm gammas, weight group lasso, gates) times a resource function (what
is being reduced: FLOPs, weights, latency, activations). The public classes
in `flop_regularizer`, `model_size_regularizer`, `latency_regularizer` and
`activation_regularizer` are thin subclasses that pick the two.
"""

from typing import Callable, Optional, Sequence

from absl import logging

from morph_net import errors
from morph_net.framework import generic_regularizers
from morph_net.framework import op_handler_decorator
from morph_net.framework import op_handler_util
from morph_net.framework import op_regularizer_manager as orm
from morph_net.network_regularizers import cost_calculator
from morph_net.network_regularizers import resource_function as rf
from morph_net.op_handlers import op_handlers


class ResourceRegularizer(generic_regularizers.NetworkRegularizer):
  """Analyses a network and regularizes it towards a lower resource cost.

  Args:
    output_boundary: list of tf.Operation where the analysis starts.
    op_handler_dict: the op handler registry (an `op_handlers.OpHandlerDict`).
    resource_function: cost of one op, see `resource_function`.
    name: the regularizer's name (for example 'GammaFlops').
    cost_name: the name of the cost (for example 'FLOPs').
    input_boundary: list of tf.Operation where the analysis stops.
    force_group: regexes of ops to group together.
    regularizer_blacklist: regexes of ops whose groups are not regularized.
    regularizer_decorator: an OpRegularizer class wrapping source regularizers.
    decorator_parameters: keyword arguments of the decorator.
    create_grouping_regularizer: combines the sources of a group.
    source_description: what a source is, for the error when none is found.
    batch_size: passed to the resource function, if not None.

  Raises:
    NoSourceOpsError: when no op between the boundaries can be regularized.
  """

  def __init__(self,
               output_boundary,
               op_handler_dict,
               resource_function: Callable,
               name: str,
               cost_name: str,
               input_boundary=None,
               force_group: Optional[Sequence[str]] = None,
               regularizer_blacklist: Optional[Sequence[str]] = None,
               regularizer_decorator=None,
               decorator_parameters=None,
               create_grouping_regularizer=None,
               source_description: str = 'source',
               batch_size: Optional[int] = None):
    if regularizer_decorator is not None:
      op_handler_dict = _decorate_sources(op_handler_dict,
                                          regularizer_decorator,
                                          decorator_parameters)
    self._name = name
    self._cost_name = cost_name
    self._manager = orm.OpRegularizerManager(
        output_boundary, op_handler_dict,
        create_grouping_regularizer=create_grouping_regularizer,
        force_group=force_group,
        regularizer_blacklist=regularizer_blacklist,
        input_boundary=input_boundary)
    if not self._manager.source_ops:
      raise errors.NoSourceOpsError(
          self._no_source_message(source_description))
    self._calculator = cost_calculator.CostCalculator(
        self._manager, resource_function, batch_size=batch_size)
    logging.info('%s: %d ops, %d groups, %d sources.', name,
                 len(self._manager.ops), len(self._manager.op_groups),
                 len(self._manager.source_ops))

  def _no_source_message(self, source_description):
    weighted = [op for op in self._manager.ops
                if op.type in rf.WEIGHTED_OP_TYPES]
    found = ', '.join(op_handler_util.describe_op(op) for op in weighted[:5])
    return ('%s found no %s between the boundaries (%d ops analysed), so it '
            'would regularize nothing. %s' %
            (type(self).__name__, source_description, len(self._manager.ops),
             self._no_source_hint(found or 'none')))

  def _no_source_hint(self, weighted_ops):
    return 'Weighted ops found: %s.' % weighted_ops

  def get_regularization_term(self, ops=None):
    return self._calculator.get_regularization_term(ops)

  def get_cost(self, ops=None):
    return self._calculator.get_cost(ops)

  @property
  def op_regularizer_manager(self):
    return self._manager

  @property
  def cost_calculator(self):
    return self._calculator

  @property
  def name(self):
    return self._name

  @property
  def cost_name(self):
    return self._cost_name


class GammaRegularizer(ResourceRegularizer):
  """Sources: batch norm scales (|gamma|), see BatchNormSourceOpHandler.

  Subclasses set `resource_function`, `regularizer_name` and `cost_name`.

  Args:
    output_boundary: list of tf.Operation where the analysis starts.
    gamma_threshold: channels with |gamma| at or below it are dead.
    regularizer_decorator: optional OpRegularizer class wrapping sources.
    decorator_parameters: keyword arguments of the decorator.
    input_boundary: list of tf.Operation where the analysis stops.
    force_group: regexes of ops to group together.
    regularizer_blacklist: regexes of ops whose groups are not regularized.
  """

  resource_function = staticmethod(rf.flop_function)
  regularizer_name = 'GammaFlops'
  cost_name_ = 'FLOPs'

  def __init__(self, output_boundary, gamma_threshold,
               regularizer_decorator=None, decorator_parameters=None,
               input_boundary=None, force_group=None,
               regularizer_blacklist=None, batch_size=None):
    super().__init__(
        output_boundary,
        op_handlers.get_gamma_op_handler_dict(gamma_threshold),
        self.resource_function, self.regularizer_name, self.cost_name_,
        input_boundary=input_boundary, force_group=force_group,
        regularizer_blacklist=regularizer_blacklist,
        regularizer_decorator=regularizer_decorator,
        decorator_parameters=decorator_parameters,
        source_description='batch norm with a learned scale (gamma)',
        batch_size=batch_size)

  def _no_source_hint(self, weighted_ops):
    return ('Gamma regularizers need batch norm with scale=True after the '
            'convolutions (found %s); use a GroupLasso regularizer or enable '
            'scale.' % weighted_ops)


class GroupLassoRegularizer(ResourceRegularizer):
  """Sources: conv / matmul weights (group lasso per output channel).

  Subclasses set `resource_function`, `regularizer_name` and `cost_name_`.

  Args:
    output_boundary: list of tf.Operation where the analysis starts.
    threshold: alive threshold on the group lasso norm.
    l1_fraction: weight of the L1 part of the norm, in [0, 1].
    regularizer_decorator: optional OpRegularizer class wrapping sources.
    decorator_parameters: keyword arguments of the decorator.
    input_boundary: list of tf.Operation where the analysis stops.
    force_group: regexes of ops to group together.
    regularizer_blacklist: regexes of ops whose groups are not regularized.
  """

  resource_function = staticmethod(rf.flop_function)
  regularizer_name = 'GroupLassoFlops'
  cost_name_ = 'FLOPs'

  def __init__(self, output_boundary, threshold, l1_fraction=0.0,
               regularizer_decorator=None, decorator_parameters=None,
               input_boundary=None, force_group=None,
               regularizer_blacklist=None, batch_size=None):
    super().__init__(
        output_boundary,
        op_handlers.get_group_lasso_op_handler_dict(threshold, l1_fraction),
        self.resource_function, self.regularizer_name, self.cost_name_,
        input_boundary=input_boundary, force_group=force_group,
        regularizer_blacklist=regularizer_blacklist,
        regularizer_decorator=regularizer_decorator,
        decorator_parameters=decorator_parameters,
        source_description='Conv2D, Conv3D, transposed conv or MatMul op '
        'with variable weights', batch_size=batch_size)


def _decorate_sources(op_handler_dict, regularizer_decorator,
                      decorator_parameters):
  """Returns a copy of the registry whose source handlers are decorated."""
  decorated = op_handlers.OpHandlerDict()
  cache = {}
  for op_type, handler in op_handler_dict.items():
    if handler.is_source_op:
      if id(handler) not in cache:
        cache[id(handler)] = op_handler_decorator.OpHandlerDecorator(
            handler, regularizer_decorator, decorator_parameters)
      handler = cache[id(handler)]
    decorated[op_type] = handler
  return decorated
