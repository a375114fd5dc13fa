"""Lead variables: what `CostTargetCallback`'s lead cost is extrapolated on.

`CostTargetCallback` reads, besides the cost, a lead cost: the cost
`lead_steps` optimizer steps ahead. By default it extrapolates every
regularization value (`regularizer.regularization_vectors()`) along its
smoothed velocity and costs the channels still above the alive threshold
(through `StructureCost`). That needs values that move before their
channel dies. A regularizer whose values jump instead says what leads
them by providing one method:

    def lead_variables(self):
      # The variables (TF or Keras; read with .numpy(), written with
      # .assign()) that the regularization values follow.
      return [...]

With a non-empty list the callback then works on those variables:

- **the lead**: each variable is moved `lead_steps` steps along its
  significant smoothed velocity, `regularizer.cost()` is read with them
  there, and they are put back;
- **the rescue**: while the controller rescues (the cost under the
  target), no entry of a variable falls under its value when the rescue
  started (`rescue=0` turns this off).

So the contract is that `cost()` depends on the variables and that raising
an entry never removes a channel. No method, or an empty list: the default
path, unchanged.

The LogisticSigmoid (FiGS) family provides it through its gates: a gate's
regularization value is its inference mask, exactly 0 or 1, which jumps
when its log-odds cross 0, and `LogisticSigmoidGating.lead_variables()` is
its log-odds. The built-in engines' LogisticSigmoid regularizers
(`ModelRegularizer`, `LayerRegularizer`) lead on the log-odds of the
model's gates (`gate_layers`); docs/BUDGET.md says why. Gamma and
GroupLasso regularizers have no lead variables.
"""

from typing import List

from morph_net import errors

__all__ = ['lead_variables', 'gate_layers']


def lead_variables(regularizer) -> List:
  """The variables `regularizer`'s lead cost is extrapolated on.

  Args:
    regularizer: a `ModelRegularizer`, a `LayerRegularizer`, or any object
      `CostTargetCallback` accepts.

  Returns:
    `regularizer.lead_variables()` if it has the method; else, for the
    built-in engines' LogisticSigmoid family, the lead variables of the
    model's gates (their log-odds, in the order of `gate_layers`); else
    [] (the default lead, on the regularization values).

  Raises:
    InvalidArgumentError: when `regularizer.lead_variables` is not a
      method.
  """
  hook = getattr(regularizer, 'lead_variables', None)
  if hook is not None:
    if not callable(hook):
      raise errors.InvalidArgumentError(
          'Invalid value for `lead_variables` of the regularizer %r (%s). '
          'Expected a method returning the variables its lead cost is '
          'extrapolated on (see morph_net.keras.lead). Received: %r. '
          'Define it as a method, or remove it for the default lead.' %
          (getattr(regularizer, 'name', '?'), type(regularizer).__name__,
           hook))
    return list(hook())
  return [variable for gate in gate_layers(regularizer)
          for variable in gate.lead_variables()]


def gate_layers(regularizer) -> List:
  """The built `LogisticSigmoidGating` layers of `regularizer.model` when
  the regularizer is of the built-in engines' LogisticSigmoid family (its
  sources are those gates), else []."""
  network = getattr(regularizer, 'network_regularizer', None)
  if network is not None:
    # Imported here: the graph engine's classes need TensorFlow.
    from morph_net.network_regularizers import logistic_sigmoid_regularizer  # pylint: disable=g-import-not-at-top
    gated = isinstance(network,
                       logistic_sigmoid_regularizer.LogisticSigmoidRegularizer)
  else:
    gated = str(getattr(regularizer, 'name', '')).startswith('LogisticSigmoid')
  model = getattr(regularizer, 'model', None)
  if not gated or model is None:
    return []
  from morph_net.probabilistic_gating import activation_gating  # pylint: disable=g-import-not-at-top
  return [layer for layer in model._flatten_layers(  # pylint: disable=protected-access
      include_self=False, recursive=True)
          if isinstance(layer, activation_gating.LogisticSigmoidGating) and
          layer.log_odds is not None]
