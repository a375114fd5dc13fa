"""rebuild with a ModelRegularizer as the structure: its alive set is kept."""

import keras
import numpy as np
import pytest

from morph_net import errors
from morph_net import keras as morph_keras
from morph_net.network_regularizers import flop_regularizer
from morph_net.surgery import rebuild
from morph_net.testing import surgery_models as tm


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _regularized_residual():
  """A residual model whose gamma ranking disagrees with the alive set.

  The stem's group has two batch norms (stem_bn, b1_conv2_bn); the
  regularizer takes the max of their |gamma| per channel, the default
  channel choice of rebuild their sum.
  """
  model = tm.residual_model()
  tm.randomize_batch_norms(model)
  model.get_layer('stem_bn').gamma.assign(
      np.array([0.5, 0.09, 0.2, 0.2, 0.2, 0.2, 0.2, 0.11], 'float32'))
  model.get_layer('b1_conv2_bn').gamma.assign(
      np.array([0.0, 0.09, 0.2, 0.2, 0.2, 0.2, 0.2, 0.0], 'float32'))
  regularizer = morph_keras.ModelRegularizer(
      model, flop_regularizer.GammaFlopsRegularizer, gamma_threshold=0.1)
  return model, regularizer


def test_the_regularizers_alive_channels_survive():
  model, regularizer = _regularized_residual()
  alive = regularizer.alive_vectors()['stem']
  np.testing.assert_array_equal(np.flatnonzero(alive), [0, 2, 3, 4, 5, 6, 7])
  small = rebuild.rebuild(model, regularizer, transfer_weights=True,
                          fold_constants=False)
  np.testing.assert_array_equal(
      small.get_layer('stem').kernel.numpy(),
      model.get_layer('stem').kernel.numpy()[..., [0, 2, 3, 4, 5, 6, 7]])
  # The counts alone keep the channels of the largest |gamma| sums.
  by_gamma = rebuild.rebuild(model, regularizer.alive_counts(),
                             transfer_weights=True, fold_constants=False)
  np.testing.assert_array_equal(
      by_gamma.get_layer('stem').kernel.numpy(),
      model.get_layer('stem').kernel.numpy()[..., [0, 1, 2, 3, 4, 5, 6]])
  # A fresh regularizer on the rebuilt model costs what the trained one did.
  fresh = morph_keras.ModelRegularizer(
      small, flop_regularizer.GammaFlopsRegularizer, gamma_threshold=0.1)
  assert float(fresh.cost()) == float(regularizer.cost())


def test_explicit_alive_masks_override_the_regularizers():
  model, regularizer = _regularized_residual()
  masks = regularizer.alive_vectors()
  masks['stem'] = masks['b1_conv2'] = np.array([0, 1, 1, 1, 1, 1, 1, 1], bool)
  small = rebuild.rebuild(model, regularizer, transfer_weights=True,
                          alive_masks=masks, fold_constants=False)
  np.testing.assert_array_equal(
      small.get_layer('stem').kernel.numpy(),
      model.get_layer('stem').kernel.numpy()[..., 1:])


def test_a_structure_of_another_kind_is_refused():
  with pytest.raises(errors.InvalidArgumentTypeError,
                     match=r'Invalid value for argument `structure`. Expected '
                     r'a dict \{layer name: width\} .* Received: \[8, 6\] '
                     r'\(list\)'):
    rebuild.rebuild(tm.residual_model(), [8, 6])
