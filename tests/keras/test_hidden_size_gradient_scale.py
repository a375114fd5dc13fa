"""hidden_size.GRADIENT_SCALE: the hidden size's gradient, values unchanged.

The model: Embedding(20, 4) on 6 tokens -> fc Dense(3) -> average over
the tokens -> logits Dense(2), every weight 1. The embedding's output is a
hidden size (`hidden_size`): a channel holds its 20 embedding entries and
its 3 fc rows, value sqrt(23 / 23) = 1. The FLOPs term of fc is
2 x 6 x (d F + f R), R and F the sums of the hidden and fc values, d = 4
and f = 3 their alive counts (the lookup costs nothing, the logits reach
the output); so d term / d R_c = 12 f = 36, and the gradient on one
embedding entry is 36 x d R_c / d e = 36 x e / (23 R_c) = 36 / 23 (MorphNet's,
scale 1), `scale` x 36 / 23 with `GRADIENT_SCALE = scale`.
"""

import keras
import numpy as np
import pytest

from morph_net import errors
from morph_net.keras import hidden_members
from morph_net.keras import layer_regularizer

tf = pytest.importorskip('tensorflow')
from morph_net.keras import hidden_size  # pylint: disable=g-import-not-at-top,wrong-import-position
from morph_net.keras import model_regularizer  # pylint: disable=g-import-not-at-top,wrong-import-position

L = keras.layers
THRESHOLD = 1e-3


def _model():
  keras.backend.clear_session()
  x = keras.Input((6,), dtype='int32')
  h = L.Dense(3, name='fc')(L.Embedding(20, 4, name='emb')(x))
  model = keras.Model(x, L.Dense(2, name='logits')(
      L.GlobalAveragePooling1D(name='pool')(h)))
  for variable in model.weights:
    variable.assign(np.ones(variable.shape, np.float32))
  return model


def _engine(name, model):
  if name == 'layer':
    return layer_regularizer.LayerRegularizer(
        model, 'GroupLassoFlopsRegularizer', threshold=THRESHOLD)
  return model_regularizer.ModelRegularizer(
      model, 'GroupLassoFlopsRegularizer', threshold=THRESHOLD)


def _term_and_gradient(regularizer, model):
  embeddings = model.get_layer('emb').embeddings
  with tf.GradientTape() as tape:
    term = regularizer.term()
  return float(term), tf.convert_to_tensor(
      tape.gradient(term, embeddings)).numpy()


@pytest.mark.parametrize('engine', ['graph', 'layer'])
@pytest.mark.parametrize('scale', [1.0, 4.0, 16.0])
def test_the_gradient_is_scaled_and_nothing_else(engine, scale, monkeypatch):
  monkeypatch.setattr(hidden_size, 'GRADIENT_SCALE', scale)
  assert hidden_members.gradient_scale() == scale
  model = _model()
  regularizer = _engine(engine, model)
  term, gradient = _term_and_gradient(regularizer, model)
  np.testing.assert_allclose(gradient, np.full((20, 4), scale * 36 / 23),
                             rtol=1e-6)
  # The values, alive channels, cost and term are MorphNet's: hidden 1,
  # fc filters sqrt(4 / 4) = 1; term 2 x 6 x (4 x 3 + 3 x 4) + logits
  # 2 x 2 x 3 (F) = 300; FLOPs 2 x 6 x 4 x 3 + 2 x 3 x 2 = 156.
  assert regularizer.regularization_vectors()['emb'].tolist() == [1.0] * 4
  assert regularizer.alive_counts() == {'emb': 4, 'fc': 3, 'logits': 2}
  assert term == pytest.approx(300.0, rel=1e-6)
  assert float(regularizer.cost()) == 156.0


@pytest.mark.parametrize('engine', ['graph', 'layer'])
@pytest.mark.parametrize('value', [0.0, -2.0, float('inf'), 'big', True])
def test_a_scale_that_is_not_a_positive_number_fails(engine, value,
                                                     monkeypatch):
  monkeypatch.setattr(hidden_size, 'GRADIENT_SCALE', value)
  with pytest.raises(errors.InvalidArgumentError) as e:
    _engine(engine, _model())
  assert str(e.value) == (
      "hidden_size.GRADIENT_SCALE is %r; expected a finite number > 0, "
      "e.g. 1.0, MorphNet's (hidden size of layer(s) 'emb')." % (value,))
