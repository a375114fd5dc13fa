"""Network regularizers that target activations (outputs of convs, matmuls).

The cost counts output activations, positions x channels
(`resource_function.activation_size_function`); the original library counted
output channels only (`resource_function.activation_count_function`).
"""

from morph_net.network_regularizers import resource_function
from morph_net.network_regularizers import resource_regularizer

__all__ = ['GammaActivationRegularizer', 'GroupLassoActivationRegularizer']


class GammaActivationRegularizer(resource_regularizer.GammaRegularizer):
  """Activation regularizer whose sources are batch norm gammas."""
  name = 'GammaActivationCount'
  cost_name = 'Activations'
  resource_function = staticmethod(resource_function.activation_size_function)


class GroupLassoActivationRegularizer(
    resource_regularizer.GroupLassoRegularizer):
  """Activation regularizer whose sources are conv/matmul weights."""
  name = 'GroupLassoActivationCount'
  cost_name = 'Activations'
  resource_function = staticmethod(resource_function.activation_size_function)
