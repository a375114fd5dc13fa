"""Tests for morph_net.network_regularizers.registry: names and arguments."""

import keras
import pytest

from morph_net import errors
from morph_net import keras as morph_keras
from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import latency_regularizer
from morph_net.network_regularizers import registry

L = keras.layers


def test_class_by_name_and_threshold_name():
  assert (registry.get_regularizer_class('GammaFlopsRegularizer') is
          flop_regularizer.GammaFlopsRegularizer)
  assert registry.threshold_kwargs('GroupLassoFlopsRegularizer', 0.1) == {
      'threshold': 0.1}


@pytest.mark.parametrize('regularizer_class,kwargs,message', [
    (flop_regularizer.GammaFlopsRegularizer, {'threshold': 0.1},
     "GammaFlopsRegularizer takes no argument 'threshold'. Its arguments: "
     'gamma_threshold, regularizer_decorator, decorator_parameters, '
     'force_group, regularizer_blacklist, batch_size; its alive threshold '
     "is 'gamma_threshold'."),
    (flop_regularizer.GroupLassoFlopsRegularizer, {},
     "GroupLassoFlopsRegularizer needs the argument 'threshold'. Its "
     'arguments: threshold, l1_fraction, regularizer_decorator, '
     'decorator_parameters, force_group, regularizer_blacklist, batch_size; '
     "its alive threshold is 'threshold'."),
    (latency_regularizer.GammaLatencyRegularizer, {'gamma_threshold': 0.1},
     "GammaLatencyRegularizer needs the argument 'hardware'."),
])
def test_check_arguments_names_the_class_and_its_arguments(
    regularizer_class, kwargs, message):
  with pytest.raises(errors.InvalidArgumentError) as context:
    registry.check_arguments(regularizer_class, kwargs)
  assert str(context.value).startswith(message)


def test_check_arguments_accepts_good_ones_and_boundaries():
  registry.check_arguments(flop_regularizer.GammaFlopsRegularizer,
                           {'gamma_threshold': 0.1, 'input_boundary': None})

  class Anything(object):

    def __init__(self, output_boundary, **kwargs):
      del output_boundary, kwargs

  registry.check_arguments(Anything, {'whatever': 1})


def test_model_regularizer_checks_before_tracing():
  keras.backend.clear_session()
  x = keras.Input((4, 4, 3))
  model = keras.Model(x, L.Dense(2)(L.Flatten()(L.Conv2D(3, 1)(x))))
  with pytest.raises(errors.InvalidArgumentError,
                     match="GammaFlopsRegularizer takes no argument "
                     "'threshold'"):
    morph_keras.ModelRegularizer(model, 'GammaFlopsRegularizer',
                                 threshold=0.1)


@pytest.mark.parametrize('kwargs,message', [
    ({'gamma_threshold': -0.05},
     'Invalid value for argument `gamma_threshold`. Expected a non-negative '
     'finite number. Received: gamma_threshold=-0.05'),
    ({'gamma_threshold': float('nan')},
     'Invalid value for argument `gamma_threshold`. Expected a non-negative '
     'finite number. Received: gamma_threshold=nan'),
    ({'gamma_threshold': 'high'},
     'Invalid value for argument `gamma_threshold`. Expected a non-negative '
     "finite number. Received: gamma_threshold='high'"),
])
def test_a_threshold_must_be_a_non_negative_number(kwargs, message):
  with pytest.raises(errors.InvalidArgumentError) as context:
    registry.check_arguments(flop_regularizer.GammaFlopsRegularizer, kwargs)
  assert str(context.value) == message
