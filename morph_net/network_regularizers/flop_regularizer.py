"""Network regularizers that target FLOPs (a multiply-add counts 2).

`GammaFlopsRegularizer` (batch norm gammas), `GroupLassoFlopsRegularizer`
(conv / matmul weights) and `LogisticSigmoidFlopsRegularizer` (probabilistic
gates, defined in `logistic_sigmoid_regularizer`), with the original
library's constructor arguments; see `resource_function.flop_function`.
"""

from morph_net.network_regularizers import logistic_sigmoid_regularizer
from morph_net.network_regularizers import resource_function
from morph_net.network_regularizers import resource_regularizer

__all__ = ['GammaFlopsRegularizer', 'GroupLassoFlopsRegularizer',
           'LogisticSigmoidFlopsRegularizer']

LogisticSigmoidFlopsRegularizer = (
    logistic_sigmoid_regularizer.LogisticSigmoidFlopsRegularizer)


class GammaFlopsRegularizer(resource_regularizer.GammaRegularizer):
  """FLOP regularizer whose sources are batch norm gammas."""
  name = 'GammaFlops'
  cost_name = 'FLOPs'
  resource_function = staticmethod(resource_function.flop_function)


class GroupLassoFlopsRegularizer(resource_regularizer.GroupLassoRegularizer):
  """FLOP regularizer whose sources are conv/matmul weights (group lasso)."""
  name = 'GroupLassoFlops'
  cost_name = 'FLOPs'
  resource_function = staticmethod(resource_function.flop_function)
