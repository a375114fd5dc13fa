"""Network regularizers that target activations (outputs of convs, matmuls).

The cost counts alive output channels of conv and matmul ops, as the original
library's `resource_function.activation_count_function` does: one per
channel, whatever the output's spatial size. `activation_size_function`
(positions x channels) is the alternative for a custom CostCalculator or
StructureCost.
"""

from morph_net.network_regularizers import resource_function
from morph_net.network_regularizers import resource_regularizer

__all__ = ['GammaActivationRegularizer', 'GroupLassoActivationRegularizer']


class GammaActivationRegularizer(resource_regularizer.GammaRegularizer):
  """Activation count regularizer whose sources are batch norm gammas."""
  name = 'GammaActivationCount'
  cost_name = 'Activations'
  resource_function = staticmethod(resource_function.activation_count_function)


class GroupLassoActivationRegularizer(
    resource_regularizer.GroupLassoRegularizer):
  """Activation count regularizer whose sources are conv/matmul weights."""
  name = 'GroupLassoActivationCount'
  cost_name = 'Activations'
  resource_function = staticmethod(resource_function.activation_count_function)
