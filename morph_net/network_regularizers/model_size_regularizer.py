"""Network regularizers that target model size (weights of convs, matmuls).

`GammaModelSizeRegularizer`, `GroupLassoModelSizeRegularizer` and
`LogisticSigmoidModelSizeRegularizer` (defined in
`logistic_sigmoid_regularizer`), with the original library's constructor
arguments; see `resource_function.model_size_function`.
"""

from morph_net.network_regularizers import logistic_sigmoid_regularizer
from morph_net.network_regularizers import resource_function
from morph_net.network_regularizers import resource_regularizer

__all__ = ['GammaModelSizeRegularizer', 'GroupLassoModelSizeRegularizer',
           'LogisticSigmoidModelSizeRegularizer']

LogisticSigmoidModelSizeRegularizer = (
    logistic_sigmoid_regularizer.LogisticSigmoidModelSizeRegularizer)


class GammaModelSizeRegularizer(resource_regularizer.GammaRegularizer):
  """Model size regularizer whose sources are batch norm gammas."""
  name = 'GammaModelSize'
  cost_name = 'ModelSize'
  resource_function = staticmethod(resource_function.model_size_function)


class GroupLassoModelSizeRegularizer(
    resource_regularizer.GroupLassoRegularizer):
  """Model size regularizer whose sources are conv/matmul weights."""
  name = 'GroupLassoModelSize'
  cost_name = 'ModelSize'
  resource_function = staticmethod(resource_function.model_size_function)
