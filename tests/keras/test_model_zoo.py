"""keras.applications zoo: both regularizer families on real architectures.

For every model, the FLOP cost at initialisation (all channels alive) must
equal the conv/matmul FLOPs that TensorFlow's own profiler counts on the same
model traced at batch 1, and the regularization term must be finite and
positive. Architectures whose batch norms have no scale (InceptionV3) or no
batch norm at all (VGG16) cannot use Gamma regularizers: the error says so.
"""

import math

import keras
import pytest
import tensorflow as tf
from tensorflow.python.profiler import model_analyzer
from tensorflow.python.profiler import option_builder

from morph_net import errors
from morph_net import keras as morph_keras
from morph_net.network_regularizers import flop_regularizer
from morph_net.testing import reference_cost

# name -> smallest input size the architecture accepts (kept small for speed).
ZOO = {
    'ResNet50': 32, 'ResNet101V2': 32, 'MobileNet': 32, 'MobileNetV2': 32,
    'MobileNetV3Small': 32, 'EfficientNetB0': 32, 'DenseNet121': 32,
    'InceptionV3': 75, 'Xception': 71, 'VGG16': 32, 'NASNetMobile': 32,
    'EfficientNetV2B0': 32, 'ConvNeXtTiny': 32,
}
NO_GAMMA = {'InceptionV3': 'scale=True', 'VGG16': 'scale=True',
            'ConvNeXtTiny': 'scale=True'}
# Architectures the graph analysis cannot cost yet, with the reason.
KNOWN_WRONG = {}
# Models with grouped convs inside function calls (see test_zoo_model).
_CALLS = frozenset(['ConvNeXtTiny'])
_FLOP_OP_TYPES = ['Conv2D', 'MatMul', 'DepthwiseConv2dNative',
                  'Conv2DBackpropInput']


def profiler_flops(model, size):
  """Conv/matmul FLOPs of one example, counted by tf.profiler."""
  fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(
      tf.TensorSpec((1, size, size, 3)))
  options = option_builder.ProfileOptionBuilder(
      option_builder.ProfileOptionBuilder.float_operation()
  ).with_empty_output().build()
  options['account_type_regexes'] = _FLOP_OP_TYPES
  return model_analyzer.profile(fn.graph, options=options).total_float_ops


def _params():
  for name in sorted(ZOO):
    marks = ([pytest.mark.xfail(strict=True, reason=KNOWN_WRONG[name])]
             if name in KNOWN_WRONG else [])
    yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize('name', list(_params()))
def test_zoo_model(name):
  keras.backend.clear_session()
  size = ZOO[name]
  model = getattr(keras.applications, name)(
      weights=None, input_shape=(size, size, 3), classes=10)
  # The profiler does not look inside function calls (ConvNeXt's depthwise
  # convs are grouped Conv2Ds that Keras 3 compiles into calls); for those
  # models the reference adds them from the layers' configs.
  expected = (reference_cost.reference_flops(model) if name in _CALLS
              else profiler_flops(model, size))
  assert expected > 0

  lasso = morph_keras.ModelRegularizer(
      model, flop_regularizer.GroupLassoFlopsRegularizer, threshold=1e-9)
  assert float(lasso.cost()) == pytest.approx(expected, rel=1e-6)
  term = float(lasso.term())
  assert math.isfinite(term) and term > 0

  if name in NO_GAMMA:
    with pytest.raises(errors.NoSourceOpsError,
                       match=r'found no batch norm.*' + NO_GAMMA[name]):
      morph_keras.ModelRegularizer(
          model, flop_regularizer.GammaFlopsRegularizer, gamma_threshold=1e-3)
    return
  gamma = morph_keras.ModelRegularizer(
      model, flop_regularizer.GammaFlopsRegularizer, gamma_threshold=1e-3)
  assert float(gamma.cost()) == pytest.approx(expected, rel=1e-6)
  term = float(gamma.term())
  assert math.isfinite(term) and term > 0
  assert gamma.alive_counts()
