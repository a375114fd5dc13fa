"""Lead variables (morph_net.keras.lead): CostTargetCallback's hook.

A regularizer that provides `lead_variables()` has its lead cost read with
those variables extrapolated, and them held while the controller rescues;
one without takes the default lead, on the regularization values. Runs on
any Keras backend (the gate's own hook needs TensorFlow and is skipped
without it).
"""

import keras
import numpy as np
import pytest

from morph_net import errors
from morph_net import keras as morph_keras
from morph_net.keras import cost_target
from morph_net.keras import lead
from morph_net.testing import layer_models


class _Knobs(object):
  """A custom regularizer: 10 per positive entry of `a` (4 entries), 1 per
  positive entry of `b` (2); `a` and `b` are its lead variables."""

  name = 'Knobs'
  cost_name = 'Knobs'
  initial_cost = 42.0
  model = None

  def __init__(self):
    self.a = keras.Variable(np.ones(4, 'float32'), name='a')
    self.b = keras.Variable(np.ones(2, 'float32'), name='b')
    self.strength = keras.Variable(0.0, name='strength')

  def cost(self):
    return (10.0 * np.sum(self.a.numpy() > 0) +
            1.0 * np.sum(self.b.numpy() > 0))

  def lead_variables(self):
    return [self.a, self.b]


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def test_a_regularizer_with_the_hook_has_its_lead_read_on_its_variables():
  regularizer = _Knobs()
  callback = cost_target.CostTargetCallback(regularizer, 20.0, lead_steps=10,
                                            smoothing=1.0)
  variables = callback.lead_variables
  assert len(variables) == 2
  assert variables[0] is regularizer.a and variables[1] is regularizer.b
  assert callback.gates == []
  callback._observe(1)  # pylint: disable=protected-access
  # Two steps later: a's first two entries fall 0.2 and 0.04 per step
  # (-1.4 and 0.52 ten steps ahead), b's second 0.15 per step (-0.8).
  regularizer.a.assign(np.float32([0.6, 0.92, 1.0, 1.0]))
  regularizer.b.assign(np.float32([1.0, 0.7]))
  callback._observe(2)  # pylint: disable=protected-access
  assert regularizer.cost() == 42.0
  assert callback.lead_cost() == 10.0 * 3 + 1.0 * 1
  # The variables are back as they were.
  np.testing.assert_array_equal(regularizer.a.numpy(),
                                np.float32([0.6, 0.92, 1.0, 1.0]))
  np.testing.assert_array_equal(regularizer.b.numpy(),
                                np.float32([1.0, 0.7]))
  # lead_steps=0: no lead; the cost alone steers.
  callback.lead_steps = 0.0
  assert callback.lead_cost() == 42.0


def test_a_regularizer_with_the_hook_has_its_variables_held_while_rescuing():
  regularizer = _Knobs()
  callback = cost_target.CostTargetCallback(regularizer, 25.0)
  callback.on_train_begin()
  regularizer.a.assign(np.float32([1.0, -1.0, -1.0, 1.0]))
  callback.on_train_batch_end(0, {})
  assert regularizer.cost() == 22.0  # Under the target: rescuing.
  assert callback.controller.rescuing
  # Falls are undone, rises stay.
  regularizer.a.assign(np.float32([0.5, -1.5, -0.5, 1.0]))
  regularizer.b.assign(np.float32([1.0, -0.2]))
  callback.on_train_batch_end(1, {})
  np.testing.assert_array_equal(regularizer.a.numpy(),
                                np.float32([1.0, -1.0, -0.5, 1.0]))
  np.testing.assert_array_equal(regularizer.b.numpy(),
                                np.float32([1.0, 1.0]))
  assert regularizer.cost() == 22.0


class _EmptyLead(morph_keras.ModelRegularizer):
  """A regularizer whose hook names no variable: the default lead."""

  def lead_variables(self):
    return []


@pytest.mark.parametrize('regularizer_class',
                         [morph_keras.ModelRegularizer, _EmptyLead])
def test_a_regularizer_without_lead_variables_takes_the_default_lead(
    regularizer_class):
  model = layer_models.residual_cnn()
  regularizer = regularizer_class(model, 'GammaFlopsRegularizer',
                                  gamma_threshold=0.05)
  callback = morph_keras.CostTargetCallback(
      regularizer, 0.5 * regularizer.initial_cost, lead_steps=10,
      smoothing=1.0)
  assert callback.lead_variables == []
  assert callback.gates == []
  callback._observe(1)  # pylint: disable=protected-access
  gamma = np.float32([0.5, 0.5, 0.5, 1.0, 0.97, 1.0])
  # Three fall 0.25 per step (gone within 10 steps), one 0.015 per step
  # (still alive 10 steps ahead).
  model.get_layer('down_bn').gamma.assign(gamma)
  callback._observe(2)  # pylint: disable=protected-access
  # The regularization values were extrapolated: 3 channels of down left
  # (FLOPs stem 3456 a + res 1152 a^2 + down 288 a d + logits 8 d).
  assert float(regularizer.cost()) == layer_models.RESIDUAL_CNN_FLOPS
  assert callback.lead_cost() == 3456 * 8 + 1152 * 64 + 288 * 8 * 3 + 8 * 3
  # The gammas were not moved.
  np.testing.assert_array_equal(model.get_layer('down_bn').gamma.numpy(),
                                gamma)


def test_a_lead_variables_attribute_that_is_no_method_is_refused():
  regularizer = _Knobs()
  regularizer.lead_variables = ['a']
  with pytest.raises(errors.InvalidArgumentError,
                     match=r"`lead_variables` of the regularizer 'Knobs' "
                     r'\(_Knobs\). Expected a method returning the '
                     r'variables .* Define it as a method'):
    lead.lead_variables(regularizer)


def test_a_gate_s_lead_variables_are_its_log_odds():
  pytest.importorskip('tensorflow')
  from morph_net.probabilistic_gating import activation_gating  # pylint: disable=g-import-not-at-top
  gate = activation_gating.LogisticSigmoidGating(name='g')
  assert gate.lead_variables() == []  # Not built.
  gate.build((None, 4, 4, 3))
  variables = gate.lead_variables()
  assert len(variables) == 1 and variables[0] is gate.log_odds
