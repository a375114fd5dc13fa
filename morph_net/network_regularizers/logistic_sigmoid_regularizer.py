"""Network regularizers whose sources are probabilistic channel gates (FiGS).

The network must contain `LogisticSigmoidGating` layers (see
`morph_net.probabilistic_gating.activation_gating`), typically one after each
convolution's activation or batch norm. Each gate's mask (or probability) is
the regularization vector of its channel group; groups with several gates
(for example the two sides of a residual add) combine them with
`ProbabilisticGroupingRegularizer` (alive if any gate is open).

Example (TF1 graph or a traced Keras model):

  reg = LogisticSigmoidFlopsRegularizer(output_boundary=[logits.op],
                                        input_boundary=[inputs.op])
  loss = model_loss + strength * reg.get_regularization_term()
"""

from morph_net.framework import probabilistic_grouping_regularizer as pgr
from morph_net.network_regularizers import resource_function
from morph_net.network_regularizers import resource_regularizer
from morph_net.op_handlers import op_handlers

__all__ = [
    'LogisticSigmoidRegularizer', 'LogisticSigmoidFlopsRegularizer',
    'LogisticSigmoidModelSizeRegularizer', 'LogisticSigmoidLatencyRegularizer',
]


class LogisticSigmoidRegularizer(resource_regularizer.ResourceRegularizer):
  """Sources: logistic-sigmoid gates. Subclasses pick the resource.

  Subclasses set `resource_function`, `regularizer_name` and `cost_name_`.

  Args:
    output_boundary: list of tf.Operation where the analysis starts.
    regularize_on_mask: regularize the gate mask (True) or the probability
      sigmoid(log_odds).
    alive_threshold: a channel is alive when its mask (or probability)
      exceeds it.
    mask_as_alive_vector: threshold the mask (True) or the probability.
    regularizer_decorator: optional OpRegularizer class wrapping sources.
    decorator_parameters: keyword arguments of the decorator.
    input_boundary: list of tf.Operation where the analysis stops.
    force_group: regexes of ops to group together.
    regularizer_blacklist: regexes of ops whose groups are not regularized.
    batch_size: passed to the resource function, if not None.

  Raises:
    NoSourceOpsError: when the network has no gate between the boundaries.
  """

  resource_function = staticmethod(resource_function.flop_function)
  regularizer_name = 'LogisticSigmoidFlops'
  cost_name_ = 'FLOPs'

  def __init__(self, output_boundary, regularize_on_mask=True,
               alive_threshold=0.1, mask_as_alive_vector=True,
               regularizer_decorator=None, decorator_parameters=None,
               input_boundary=None, force_group=None,
               regularizer_blacklist=None, batch_size=None):
    super().__init__(
        output_boundary,
        op_handlers.get_logistic_sigmoid_op_handler_dict(
            regularize_on_mask, alive_threshold, mask_as_alive_vector),
        self.resource_function, self.regularizer_name, self.cost_name_,
        input_boundary=input_boundary, force_group=force_group,
        regularizer_blacklist=regularizer_blacklist,
        regularizer_decorator=regularizer_decorator,
        decorator_parameters=decorator_parameters,
        create_grouping_regularizer=(
            pgr.ProbabilisticGroupingRegularizer),
        source_description='probabilistic gating layer '
        '(LogisticSigmoidGating)',
        batch_size=batch_size)

  def _no_source_hint(self, weighted_ops):
    return ('LogisticSigmoid regularizers need gates in the network: add a '
            'morph_net.probabilistic_gating.LogisticSigmoidGating layer after '
            'each convolution (after its activation or batch norm), or use '
            'gated_relu_activation / gated_batch_norm. Weighted ops found: '
            '%s. Without gates, use a Gamma or GroupLasso regularizer.' %
            weighted_ops)


class LogisticSigmoidFlopsRegularizer(LogisticSigmoidRegularizer):
  """FLOP regularizer whose sources are logistic-sigmoid gates."""
  resource_function = staticmethod(resource_function.flop_function)
  regularizer_name = 'LogisticSigmoidFlops'
  cost_name_ = 'FLOPs'


class LogisticSigmoidModelSizeRegularizer(LogisticSigmoidRegularizer):
  """Model size regularizer whose sources are logistic-sigmoid gates."""
  resource_function = staticmethod(resource_function.model_size_function)
  regularizer_name = 'LogisticSigmoidModelSize'
  cost_name_ = 'ModelSize'


class LogisticSigmoidLatencyRegularizer(LogisticSigmoidRegularizer):
  """Latency regularizer whose sources are logistic-sigmoid gates.

  Args:
    output_boundary: list of tf.Operation where the analysis starts.
    hardware: device name (for example 'V100', 'H100') or Hardware tuple.
    batch_size: the batch size of inference.
    regularize_on_mask: see `LogisticSigmoidRegularizer`.
    alive_threshold: see `LogisticSigmoidRegularizer`.
    mask_as_alive_vector: see `LogisticSigmoidRegularizer`.
    **kwargs: regularizer_decorator, decorator_parameters, input_boundary,
      force_group, regularizer_blacklist.
  """
  regularizer_name = 'LogisticSigmoidLatency'
  cost_name_ = 'Latency'

  def __init__(self, output_boundary, hardware, batch_size=1,
               regularize_on_mask=True, alive_threshold=0.1,
               mask_as_alive_vector=True, **kwargs):
    self.resource_function = resource_function.latency_function_factory(
        hardware, batch_size)
    super().__init__(output_boundary, regularize_on_mask=regularize_on_mask,
                     alive_threshold=alive_threshold,
                     mask_as_alive_vector=mask_as_alive_vector, **kwargs)
