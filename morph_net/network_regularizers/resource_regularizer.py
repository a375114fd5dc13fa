"""The one implementation behind every network regularizer.

A network regularizer is a source family (which ops carry the regularization:
batch norm gammas, weight group lasso, gates) times a resource function (what
is being reduced: FLOPs, weights, latency, activations). The public classes
in `flop_regularizer`, `model_size_regularizer`, `latency_regularizer`,
`activation_regularizer` and `logistic_sigmoid_regularizer` are thin
subclasses that pick the two and declare, as class attributes:

  name: the regularizer's name (for example 'GammaFlops').
  cost_name: the name of its cost (for example 'FLOPs').
  resource_function: the function the cost is computed with. Latency classes
    have none at class level (it depends on the hardware and batch size,
    which only an instance has); every instance has its own, bound to them.
"""

import copy
from typing import Optional, Sequence

from absl import logging

from morph_net import errors
from morph_net.framework import generic_regularizers
from morph_net.framework import manager_util
from morph_net.framework import op_handler_decorator
from morph_net.framework import op_handler_util
from morph_net.framework import op_regularizer_manager as orm
from morph_net.network_regularizers import cost_calculator
from morph_net.network_regularizers import op_types
from morph_net.network_regularizers import resource_function as rf
from morph_net.op_handlers import op_handlers

__all__ = ['ResourceRegularizer', 'GammaRegularizer', 'GroupLassoRegularizer',
           'HardwareBoundResource']


class HardwareBoundResource(object):
  """Class attribute `resource_function` of the latency regularizers.

  On an instance it is the instance's own latency function (bound to its
  hardware and batch size). On the class it raises ResourceNotBoundError
  (an AttributeError) instead of silently giving another resource.
  """

  def __set_name__(self, owner, name):
    self._attribute = name

  @staticmethod
  def bind(regularizer, hardware, batch_size):
    """Gives `regularizer` its latency function and `hardware` attribute.

    Args:
      regularizer: the latency regularizer being constructed.
      hardware: a device name or Hardware pair.
      batch_size: the inference batch size.

    Raises:
      InvalidArgumentError: for an unknown device or a bad batch size.
    """
    function = rf.latency_function_factory(hardware, batch_size)
    regularizer.__dict__['resource_function'] = function
    regularizer.hardware = function.hardware

  def __get__(self, instance, owner):
    if instance is None:
      raise errors.ResourceNotBoundError(
          '%s.%s depends on the hardware and the batch size. Use the %s of a '
          '%s instance, or resource_function.latency_function_factory('
          'hardware, batch_size).' % (owner.__name__, self._attribute,
                                      self._attribute, owner.__name__))
    return instance.__dict__[self._attribute]


class ResourceRegularizer(generic_regularizers.NetworkRegularizer):
  """Analyses a network and regularizes it towards a lower resource cost.

  Subclasses set the class attributes `name`, `cost_name` and
  `resource_function` (see the module docstring) and pass the op handler
  registry of their source family.

  Args:
    output_boundary: list of tf.Operation where the analysis starts.
    op_handler_dict: the op handler registry (an `op_handlers.OpHandlerDict`).
    input_boundary: list of tf.Operation where the analysis stops.
    force_group: regexes of ops to group together.
    regularizer_blacklist: regexes of ops whose groups are not regularized.
    regularizer_decorator: an OpRegularizer class wrapping source regularizers.
    decorator_parameters: keyword arguments of the decorator.
    create_grouping_regularizer: combines the sources of a group.
    source_description: what a source is, for the error when none is found.
    batch_size: passed to the resource function, if not None.

  Raises:
    InvalidArgumentError: for an empty or malformed output boundary (a
      regularizer of no ops is a mistake, unlike a bare manager).
    NoSourceOpsError: when the ops between the boundaries include convs or
      matmuls but none of them can be regularized by this family.
  """

  name = ''
  cost_name = ''

  def __init__(self,
               output_boundary,
               op_handler_dict,
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
    manager_util.check_boundary(output_boundary, 'output_boundary',
                                allow_empty=False)
    self._batch_size = batch_size
    self._manager = orm.OpRegularizerManager(
        output_boundary, op_handler_dict,
        create_grouping_regularizer=create_grouping_regularizer,
        force_group=force_group,
        regularizer_blacklist=regularizer_blacklist,
        input_boundary=input_boundary)
    self._check_sources(source_description)
    self._calculator = self.get_calculator()
    logging.info('%s: %d ops analysed.', self.name, len(self._manager.ops))

  def get_calculator(self) -> cost_calculator.CostCalculator:
    """The CostCalculator of this regularizer (the original's hook).

    Subclasses written for the original override it to pick a resource
    function; by default it costs with `self.resource_function`.
    """
    return cost_calculator.CostCalculator(
        self._manager, self.resource_function, batch_size=self._batch_size)

  def _check_sources(self, source_description):
    manager = self._manager
    if any(manager.is_source_op(op) for op in manager.ops):
      return
    weighted = [op for op in self._manager.ops
                if op.type in op_types.WEIGHTED_OP_TYPES]
    if not weighted:
      logging.warning(
          '%s: no conv or matmul op between the boundaries (%d ops), so '
          'there is nothing to regularize and the cost is 0.',
          type(self).__name__, len(self._manager.ops))
      return
    found = ', '.join(op_handler_util.describe_op(op) for op in weighted[:5])
    raise errors.NoSourceOpsError(
        '%s found no %s between the boundaries (%d ops analysed), so it '
        'would regularize nothing. %s' % (
            type(self).__name__, source_description, len(self._manager.ops),
            self._no_source_hint(found)))

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
  def cost_calculator(self) -> cost_calculator.CostCalculator:
    return self._calculator


class GammaRegularizer(ResourceRegularizer):
  """Sources: batch norm scales (|gamma|), see BatchNormSourceOpHandler.

  Args:
    output_boundary: list of tf.Operation where the analysis starts.
    gamma_threshold: channels with |gamma| at or below it are dead.
    regularizer_decorator: optional OpRegularizer class wrapping sources.
    decorator_parameters: keyword arguments of the decorator.
    input_boundary: list of tf.Operation where the analysis stops.
    force_group: regexes of ops to group together.
    regularizer_blacklist: regexes of ops whose groups are not regularized.
    batch_size: passed to the resource function, if not None.
  """

  def __init__(self, output_boundary, gamma_threshold,
               regularizer_decorator=None, decorator_parameters=None,
               input_boundary=None, force_group=None,
               regularizer_blacklist=None, batch_size=None):
    super().__init__(
        output_boundary,
        op_handlers.get_gamma_op_handler_dict(gamma_threshold),
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

  Args:
    output_boundary: list of tf.Operation where the analysis starts.
    threshold: alive threshold on the group lasso norm.
    l1_fraction: weight of the L1 part of the norm, in [0, 1].
    regularizer_decorator: optional OpRegularizer class wrapping sources.
    decorator_parameters: keyword arguments of the decorator.
    input_boundary: list of tf.Operation where the analysis stops.
    force_group: regexes of ops to group together.
    regularizer_blacklist: regexes of ops whose groups are not regularized.
    batch_size: passed to the resource function, if not None.
  """

  def __init__(self, output_boundary, threshold, l1_fraction=0.0,
               regularizer_decorator=None, decorator_parameters=None,
               input_boundary=None, force_group=None,
               regularizer_blacklist=None, batch_size=None):
    super().__init__(
        output_boundary,
        op_handlers.get_group_lasso_op_handler_dict(threshold, l1_fraction),
        input_boundary=input_boundary, force_group=force_group,
        regularizer_blacklist=regularizer_blacklist,
        regularizer_decorator=regularizer_decorator,
        decorator_parameters=decorator_parameters,
        source_description='Conv2D, Conv3D, transposed conv or MatMul op '
        'with weights (a variable or a constant)', batch_size=batch_size)


def _decorate_sources(op_handler_dict, regularizer_decorator,
                      decorator_parameters):
  """Returns a copy of the registry whose source handlers are decorated.

  The copy keeps the registry's type (and so its default handler); a handler
  registered for several op types gets one decorator.
  """
  decorated = copy.copy(op_handler_dict)
  cache = {}
  for op_type, handler in list(op_handler_dict.items()):
    if handler.is_source_op:
      if id(handler) not in cache:
        cache[id(handler)] = op_handler_decorator.OpHandlerDecorator(
            handler, regularizer_decorator, decorator_parameters)
      decorated[op_type] = cache[id(handler)]
  return decorated
