"""Network regularizers whose sources are probabilistic channel gates (FiGS).

The network must contain `LogisticSigmoidGating` layers (see
`morph_net.probabilistic_gating.activation_gating`), typically one after each
convolution's activation or batch norm. Each gate's mask (or probability) is
the regularization vector of its channel group; groups with several gates
(for example the two sides of a residual add) combine them with
`ProbabilisticGroupingRegularizer` (alive if any gate is open).

The FLOP, model size and latency classes are also reachable from
`flop_regularizer`, `model_size_regularizer` and `latency_regularizer`, where
the original library had them. A subclass written for the original (which
overrides `get_calculator`) works unchanged.

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
  """Sources: logistic-sigmoid gates; costs FLOPs unless a subclass says else.

  Args:
    output_boundary: list of tf.Operation where the analysis starts.
    regularize_on_mask: regularize the gate mask (True) or the probability
      sigmoid(log_odds).
    alive_threshold: a channel is alive when its mask (or probability) is at
      least this.
    mask_as_alive_vector: threshold the mask (True) or the probability.
    regularizer_decorator: optional OpRegularizer class wrapping sources.
    decorator_parameters: keyword arguments of the decorator.
    input_boundary: list of tf.Operation where the analysis stops.
    force_group: regexes of ops to group together.
    regularizer_blacklist: regexes of ops whose groups are not regularized.
    batch_size: passed to the resource function, if not None.

  Raises:
    NoSourceOpsError: when the network has convs but no gate between the
      boundaries.
  """

  name = 'LogisticSigmoidFlops'
  cost_name = 'FLOPs'
  resource_function = staticmethod(resource_function.flop_function)

  def __init__(self, output_boundary, regularize_on_mask=True,
               alive_threshold=0.1, mask_as_alive_vector=True,
               regularizer_decorator=None, decorator_parameters=None,
               input_boundary=None, force_group=None,
               regularizer_blacklist=None, batch_size=None):
    super().__init__(
        output_boundary,
        op_handlers.get_logistic_sigmoid_op_handler_dict(
            regularize_on_mask, alive_threshold, mask_as_alive_vector),
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
  name = 'LogisticSigmoidFlops'
  cost_name = 'FLOPs'
  resource_function = staticmethod(resource_function.flop_function)


class LogisticSigmoidModelSizeRegularizer(LogisticSigmoidRegularizer):
  """Model size regularizer whose sources are logistic-sigmoid gates."""
  name = 'LogisticSigmoidModelSize'
  cost_name = 'ModelSize'
  resource_function = staticmethod(resource_function.model_size_function)


class LogisticSigmoidLatencyRegularizer(LogisticSigmoidRegularizer):
  """Latency regularizer whose sources are logistic-sigmoid gates.

  Args (others: see `LogisticSigmoidRegularizer`):
    hardware, batch_size: as in
      `latency_regularizer.GammaLatencyRegularizer` (a device name, Hardware
      tuple or measured latency profile; the inference batch size).

  Raises:
    InvalidArgumentError, ProfileError: as `GammaLatencyRegularizer`.
  """
  name = 'LogisticSigmoidLatency'
  cost_name = 'Latency'
  resource_function = resource_regularizer.HardwareBoundResource()

  def __init__(self, output_boundary, hardware, batch_size=1,
               regularize_on_mask=True, alive_threshold=0.1,
               mask_as_alive_vector=True, regularizer_decorator=None,
               decorator_parameters=None, input_boundary=None,
               force_group=None, regularizer_blacklist=None):
    resource_regularizer.HardwareBoundResource.bind(self, hardware,
                                                    batch_size)
    super().__init__(
        output_boundary, regularize_on_mask=regularize_on_mask,
        alive_threshold=alive_threshold,
        mask_as_alive_vector=mask_as_alive_vector,
        regularizer_decorator=regularizer_decorator,
        decorator_parameters=decorator_parameters,
        input_boundary=input_boundary, force_group=force_group,
        regularizer_blacklist=regularizer_blacklist)
