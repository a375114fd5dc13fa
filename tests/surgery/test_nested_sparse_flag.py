"""A nested model ending with a product by a constant, flattened.

Found by tests/property/test_random_models.py (MORPHNET_RANDOM_MODELS=110,
--hypothesis-seed=202): Keras marks `x * np.array(...)` sparse (ops.multiply
reads the missing `sparse` attribute of the constant as True); the nested
model's output is dense again, and the custom SqueezeExcite layer after it
was built on that. The flat view of surgery called SqueezeExcite on the
sparse-marked tensor, which failed to infer its output ("Could not
automatically infer the output shape"). The flat view keeps the nested
model's output dense.
"""

import keras
import numpy as np
import pytest

from morph_net.surgery import channel_model
from morph_net.surgery import nesting
from morph_net.surgery import rebuild
from morph_net.testing import custom_layers

L = keras.layers


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  custom_layers.register_squeeze_excite()
  yield


def _model():
  inner_in = keras.Input((4, 8, 2))
  product = inner_in * np.array([0.5, 1.5], 'float32')
  nested = keras.Model(inner_in, product, name='nested')
  x = keras.Input((4, 8, 2), name='image')
  y = custom_layers.SqueezeExcite(ratio=1, hidden=1, name='se')(nested(x))
  return keras.Model(x, L.Dense(3, name='logits')(y)), product


def test_keras_marks_a_product_by_a_constant_sparse():
  # The Keras behaviour this works around; when it changes, the flat view
  # needs nothing.
  _, product = _model()
  assert product.sparse


def test_the_flat_view_keeps_the_nested_output_dense():
  model, _ = _model()
  flat = nesting.flatten_nested(model)
  assert [l.name for l in flat.layers][-2:] == ['se', 'logits']
  assert not flat.get_layer('se')._inbound_nodes[-1].input_tensors[0].sparse  # pylint: disable=protected-access
  data = np.random.default_rng(0).normal(size=(2, 4, 8, 2)).astype(
      'float32')
  np.testing.assert_allclose(flat(data), model(data), rtol=1e-6)


def test_a_model_with_it_rebuilds():
  model, _ = _model()
  channels = channel_model.analyze(model)
  assert channels.original_structure(changeable_only=False) == {
      'logits': 3}
  rebuilt = rebuild.rebuild(model, {}, transfer_weights=True)
  data = np.random.default_rng(0).normal(size=(2, 4, 8, 2)).astype(
      'float32')
  np.testing.assert_allclose(rebuilt(data), model(data), rtol=1e-6)
