"""ModelRegularizer(op_handler_dict=...): a user's op handler reaches the
analysis of a Keras model, as the unknown-op warning says."""

import copy
from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf

from morph_net import errors
from morph_net import keras as morph_keras
from morph_net.keras import model_regularizer
from morph_net.framework import op_handler_decorator
from morph_net.framework import op_regularizer_manager as orm
from morph_net.network_regularizers import flop_regularizer
from morph_net.network_regularizers import resource_function
from morph_net.network_regularizers import resource_regularizer
from morph_net.op_handlers import grouping_op_handler
from morph_net.op_handlers import leaf_op_handler
from morph_net.op_handlers import op_handlers

GAMMA = flop_regularizer.GammaFlopsRegularizer
# conv1: 8x8x3 -> 8x8x4 (3x3, same); conv2: 8x8x4 -> 4x4x6 (3x3, stride 2);
# dense: 6 -> 3. Two of conv1's four channels are dead (bn1 gamma 0).
CONV1_FLOPS_PER_PAIR = 2 * 8 * 8 * 3 * 3
CONV2_FLOPS_PER_PAIR = 2 * 4 * 4 * 3 * 3
DENSE_FLOPS = 2 * 6 * 3


def atan_model():
  """conv1 -> bn1 -> relu -> atan -> conv2 -> bn2 -> relu -> pool -> dense,
  with bn1's gammas [1, 1, 0, 0]. Atan is an op type the default handlers
  do not know."""
  inputs = keras.Input((8, 8, 3))
  x = keras.layers.Conv2D(4, 3, padding='same', use_bias=False,
                          name='conv1')(inputs)
  x = keras.layers.BatchNormalization(name='bn1')(x)
  x = keras.layers.ReLU(name='relu1')(x)
  x = keras.ops.arctan(x)
  x = keras.layers.Conv2D(6, 3, strides=2, padding='same', use_bias=False,
                          name='conv2')(x)
  x = keras.layers.BatchNormalization(name='bn2')(x)
  x = keras.layers.ReLU(name='relu2')(x)
  x = keras.layers.GlobalAveragePooling2D(name='pool')(x)
  model = keras.Model(inputs, keras.layers.Dense(3, name='dense')(x))
  model.get_layer('bn1').gamma.assign([1.0, 1.0, 0.0, 0.0])
  return model


def _atan_op(regularizer):
  ops = [op for op in regularizer.op_regularizer_manager.ops
         if op.type == 'Atan']
  assert len(ops) == 1
  return ops[0]


def _warnings_naming(warning, text):
  return [c for c in warning.call_args_list
          if text in (c[0][0] % c[0][1:] if len(c[0]) > 1 else c[0][0])]


def test_default_groups_atan_and_warns_how_to_pass_a_handler():
  with mock.patch.object(op_handlers.logging, 'warning') as warning:
    reg = morph_keras.ModelRegularizer(atan_model(), GAMMA,
                                       gamma_threshold=1e-3)
  found = _warnings_naming(warning, 'no op handler for op type Atan')
  assert len(found) == 1
  message = found[0][0][0] % found[0][0][1:]
  assert "op_handler_dict['Atan']" in message
  assert "ModelRegularizer(..., op_handler_dict={'Atan': ...})" in message
  assert "op_handlers.custom_handler_scope({'Atan': ...})" in message
  # Grouped through Atan: conv2 reads conv1's two alive channels.
  assert float(reg.cost()) == (CONV1_FLOPS_PER_PAIR * 3 * 2 +
                               CONV2_FLOPS_PER_PAIR * 2 * 6 + DENSE_FLOPS)


def test_user_handler_is_used_and_costs_as_it_says():
  leaf = leaf_op_handler.LeafOpHandler()
  with mock.patch.object(op_handlers.logging, 'warning') as warning:
    reg = morph_keras.ModelRegularizer(
        atan_model(), GAMMA, gamma_threshold=1e-3,
        op_handler_dict={'Atan': leaf})
  assert not _warnings_naming(warning, 'Atan')
  manager = reg.op_regularizer_manager
  atan = _atan_op(reg)
  assert manager.get_handler(atan) is leaf
  # A leaf: conv2's input channels are a space of their own, not conv1's
  # group, so all four count although two of conv1's are dead.
  assert float(reg.cost()) == (CONV1_FLOPS_PER_PAIR * 3 * 2 +
                               CONV2_FLOPS_PER_PAIR * 4 * 6 + DENSE_FLOPS)
  assert reg.alive_counts()['conv1'] == 2
  conv1_group = manager.get_op_group(manager.get_op_slices(
      atan.inputs[0].op)[0])
  assert atan not in {s.op for s in conv1_group.op_slices}


def test_user_handler_does_not_leak_into_later_registries():
  leaf = leaf_op_handler.LeafOpHandler()
  morph_keras.ModelRegularizer(atan_model(), GAMMA, gamma_threshold=1e-3,
                               op_handler_dict={'Atan': leaf})
  assert 'Atan' not in op_handlers.get_gamma_op_handler_dict()
  reg = morph_keras.ModelRegularizer(atan_model(), GAMMA,
                                     gamma_threshold=1e-3)
  assert reg.op_regularizer_manager.get_handler(_atan_op(reg)) is not leaf


def test_user_handler_is_decorated_with_the_sources():
  # A user's source handler gets the regularizer's decorator, as the
  # family's own sources do; the check sees through the decorator.
  source = op_handlers.get_gamma_op_handler_dict(1e-3)['FusedBatchNormV3']
  reg = morph_keras.ModelRegularizer(
      atan_model(), GAMMA, gamma_threshold=1e-3,
      op_handler_dict={'Mul': source},
      regularizer_decorator=op_handler_decorator.ScalingRegularizer)
  mul = next(op for op in reg.op_regularizer_manager.ops
             if op.type == 'Mul' and source.is_source(op))
  used = reg.op_regularizer_manager.get_handler(mul)
  assert used is not source and used._op_handler is source


def test_handler_for_an_op_type_the_model_does_not_run_warns():
  with mock.patch.object(model_regularizer.logging, 'warning') as warning:
    morph_keras.ModelRegularizer(
        atan_model(), GAMMA, gamma_threshold=1e-3,
        op_handler_dict={'Atan': leaf_op_handler.LeafOpHandler(),
                         'Erfinv': leaf_op_handler.LeafOpHandler()})
  found = _warnings_naming(warning, 'op_handler_dict has handlers')
  assert len(found) == 1
  assert (found[0][0][0] % found[0][0][1:] ==
          'op_handler_dict has handlers for op types the model does not run '
          'between its inputs and outputs: Erfinv.')


_FROZEN_REGISTRY = op_handlers.get_gamma_op_handler_dict(1e-3)


class OwnRegistryFlops(resource_regularizer.ResourceRegularizer):
  """A regularizer whose registry is made once, outside any scope."""

  name = 'OwnRegistryFlops'
  cost_name = 'FLOPs'
  resource_function = staticmethod(resource_function.flop_function)

  def __init__(self, output_boundary, input_boundary=None, force_group=None,
               regularizer_blacklist=None):
    super().__init__(output_boundary, copy.copy(_FROZEN_REGISTRY),
                     input_boundary=input_boundary, force_group=force_group,
                     regularizer_blacklist=regularizer_blacklist)


def test_a_class_that_ignores_the_handlers_raises():
  with pytest.raises(errors.InvalidArgumentError) as raised:
    morph_keras.ModelRegularizer(
        atan_model(), OwnRegistryFlops,
        op_handler_dict={'Atan': leaf_op_handler.LeafOpHandler()})
  message = str(raised.value)
  assert message.startswith(
      "op_handler_dict['Atan'] was not used: OwnRegistryFlops analysed op ")
  assert message.endswith(
      "(Atan) with GroupingOpHandler. Its registry is not built with "
      "morph_net.op_handlers.op_handlers' factories "
      '(get_gamma_op_handler_dict, ...); register the handler in that '
      'registry instead.')


@pytest.mark.parametrize('handlers, error, text', [
    ([('Atan', None)], errors.InvalidArgumentTypeError,
     'Invalid value for argument `op_handler_dict`. Expected a dict of op '
     'type -> OpHandler, such as {"Atan": leaf_op_handler.LeafOpHandler()}.'
     " Received: op_handler_dict=[('Atan', None)] (list)"),
    ({1: leaf_op_handler.LeafOpHandler()}, errors.InvalidArgumentError,
     'Invalid key of argument `op_handler_dict`. Expected an op type name '
     '(a str such as "Atan"). Received: 1 (int)'),
    ({'Atan': 'leaf'}, errors.InvalidArgumentError,
     "Invalid handler for op type 'Atan' in argument `op_handler_dict`. "
     'Expected an OpHandler (morph_net.framework.op_handler.OpHandler, for '
     "example leaf_op_handler.LeafOpHandler()). Received: 'leaf' (str)"),
])
def test_malformed_handlers_raise(handlers, error, text):
  with pytest.raises(error) as raised:
    morph_keras.ModelRegularizer(atan_model(), GAMMA, gamma_threshold=1e-3,
                                 op_handler_dict=handlers)
  assert str(raised.value) == text


def test_scopes_nest_and_restore():
  leaf = leaf_op_handler.LeafOpHandler()
  grouping = grouping_op_handler.GroupingOpHandler()
  with op_handlers.custom_handler_scope({'Atan': leaf, 'Erfinv': leaf}):
    with op_handlers.custom_handler_scope({'Atan': grouping}):
      inner = op_handlers.get_group_lasso_op_handler_dict()
    outer = op_handlers.get_logistic_sigmoid_op_handler_dict()
  after = op_handlers.get_gamma_op_handler_dict()
  assert inner['Atan'] is grouping and inner['Erfinv'] is leaf
  assert outer['Atan'] is leaf and outer['Erfinv'] is leaf
  assert 'Atan' not in after and 'Erfinv' not in after


def test_scope_reaches_a_tf1_network_regularizer():
  leaf = leaf_op_handler.LeafOpHandler()
  with tf.Graph().as_default():
    x = tf.compat.v1.placeholder(tf.float32, [1, 4, 4, 2])
    kernel = tf.constant(np.ones([1, 1, 2, 3], np.float32))
    y = tf.math.atan(tf.nn.conv2d(x, kernel, 1, 'SAME'), name='atan')
    with op_handlers.custom_handler_scope({'Atan': leaf}):
      reg = flop_regularizer.GroupLassoFlopsRegularizer(
          [y.op], threshold=1e-3, input_boundary=[x.op])
    atan = tf.compat.v1.get_default_graph().get_operation_by_name('atan')
    assert isinstance(reg.op_regularizer_manager, orm.OpRegularizerManager)
    assert reg.op_regularizer_manager.get_handler(atan) is leaf
