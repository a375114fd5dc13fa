"""The network regularizer classes: names, resources, signatures, hooks."""

import inspect

import tensorflow as tf

from morph_net import errors
from morph_net.network_regularizers import activation_regularizer as ar
from morph_net.network_regularizers import cost_calculator
from morph_net.network_regularizers import flop_regularizer as fr
from morph_net.network_regularizers import latency_regularizer as lr
from morph_net.network_regularizers import logistic_sigmoid_regularizer as lsr
from morph_net.network_regularizers import model_size_regularizer as msr
from morph_net.network_regularizers import resource_function as rf
from morph_net.testing import tf1_layers as layers

_v1 = tf.compat.v1

# class -> (name, cost_name, class-level resource function).
CLASSES = {
    fr.GammaFlopsRegularizer: ('GammaFlops', 'FLOPs', rf.flop_function),
    fr.GroupLassoFlopsRegularizer: ('GroupLassoFlops', 'FLOPs',
                                    rf.flop_function),
    lsr.LogisticSigmoidFlopsRegularizer: ('LogisticSigmoidFlops', 'FLOPs',
                                          rf.flop_function),
    msr.GammaModelSizeRegularizer: ('GammaModelSize', 'ModelSize',
                                    rf.model_size_function),
    msr.GroupLassoModelSizeRegularizer: ('GroupLassoModelSize', 'ModelSize',
                                         rf.model_size_function),
    lsr.LogisticSigmoidModelSizeRegularizer: (
        'LogisticSigmoidModelSize', 'ModelSize', rf.model_size_function),
    ar.GammaActivationRegularizer: ('GammaActivationCount', 'Activations',
                                    rf.activation_count_function),
    ar.GroupLassoActivationRegularizer: (
        'GroupLassoActivationCount', 'Activations',
        rf.activation_count_function),
}
LATENCY_CLASSES = (lr.GammaLatencyRegularizer, lr.GroupLassoLatencyRegularizer,
                   lsr.LogisticSigmoidLatencyRegularizer)
# The original library's constructor arguments, in order.
ORIGINAL_SIGNATURES = {
    fr.GammaFlopsRegularizer: [
        'output_boundary', 'gamma_threshold', 'regularizer_decorator',
        'decorator_parameters', 'input_boundary', 'force_group',
        'regularizer_blacklist'],
    fr.GroupLassoFlopsRegularizer: [
        'output_boundary', 'threshold', 'l1_fraction', 'regularizer_decorator',
        'decorator_parameters', 'input_boundary', 'force_group',
        'regularizer_blacklist'],
    lr.GammaLatencyRegularizer: [
        'output_boundary', 'gamma_threshold', 'hardware', 'batch_size',
        'regularizer_decorator', 'decorator_parameters', 'input_boundary',
        'force_group', 'regularizer_blacklist'],
    lr.GroupLassoLatencyRegularizer: [
        'output_boundary', 'threshold', 'hardware', 'batch_size',
        'l1_fraction', 'regularizer_decorator', 'decorator_parameters',
        'input_boundary', 'force_group', 'regularizer_blacklist'],
    lsr.LogisticSigmoidRegularizer: [
        'output_boundary', 'regularize_on_mask', 'alive_threshold',
        'mask_as_alive_vector', 'regularizer_decorator',
        'decorator_parameters', 'input_boundary', 'force_group',
        'regularizer_blacklist'],
    lsr.LogisticSigmoidLatencyRegularizer: [
        'output_boundary', 'hardware', 'batch_size', 'regularize_on_mask',
        'alive_threshold', 'mask_as_alive_vector', 'regularizer_decorator',
        'decorator_parameters', 'input_boundary', 'force_group',
        'regularizer_blacklist'],
    ar.GammaActivationRegularizer: [
        'output_boundary', 'gamma_threshold', 'regularizer_decorator',
        'decorator_parameters', 'input_boundary', 'force_group',
        'regularizer_blacklist'],
}


def _chain():
  x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
  a = layers.conv_bn_relu(x, 3, 3, name='a')
  return x, layers.conv_bn_relu(a, 2, 1, name='b')


class ClassAttributesTest(tf.test.TestCase):

  def test_names_and_resource_functions(self):
    for cls, (name, cost_name, function) in CLASSES.items():
      self.assertEqual((name, cost_name), (cls.name, cls.cost_name))
      self.assertIs(function, cls.resource_function)
      self.assertFalse(hasattr(cls, 'cost_name_'), cls.__name__)
    for cls in LATENCY_CLASSES:
      self.assertEqual('Latency', cls.cost_name)
      self.assertFalse(hasattr(cls, 'cost_name_'), cls.__name__)

  def test_latency_classes_have_no_class_level_function(self):
    for cls in LATENCY_CLASSES:
      self.assertFalse(hasattr(cls, 'resource_function'))
      with self.assertRaisesRegex(
          errors.ResourceNotBoundError,
          '%s.resource_function depends on the hardware and the batch size. '
          'Use the resource_function of a %s instance' % (cls.__name__,
                                                          cls.__name__)):
        cls.resource_function  # pylint: disable=pointless-statement

  def test_instances_cost_with_their_resource_function(self):
    with tf.Graph().as_default():
      x, y = _chain()
      flops = fr.GammaFlopsRegularizer([y.op], gamma_threshold=0.1,
                                       input_boundary=[x.op])
      latency = lr.GammaLatencyRegularizer(
          [y.op], gamma_threshold=0.1, hardware='P100', batch_size=4,
          input_boundary=[x.op])
      self.assertIs(rf.flop_function, flops.resource_function)
      self.assertIs(flops.resource_function,
                    flops.cost_calculator.resource_function)
      function = latency.resource_function
      self.assertIs(function, latency.cost_calculator.resource_function)
      self.assertEqual((rf.Hardware(9300.0, 732.0), 4),
                       (function.hardware, function.batch_size))
      self.assertEqual(rf.Hardware(9300.0, 732.0), latency.hardware)
      expected = cost_calculator.CostCalculator(
          latency.op_regularizer_manager,
          rf.latency_function_factory('P100', 4)).get_cost()
      cost, again = layers.evaluate([latency.get_cost(), expected])
    self.assertAllClose(again, cost)

  def test_logistic_sigmoid_classes_where_the_original_had_them(self):
    self.assertIs(lsr.LogisticSigmoidFlopsRegularizer,
                  fr.LogisticSigmoidFlopsRegularizer)
    self.assertIs(lsr.LogisticSigmoidModelSizeRegularizer,
                  msr.LogisticSigmoidModelSizeRegularizer)
    self.assertIs(lsr.LogisticSigmoidLatencyRegularizer,
                  lr.LogisticSigmoidLatencyRegularizer)

  def test_original_argument_order(self):
    for cls, names in ORIGINAL_SIGNATURES.items():
      parameters = list(inspect.signature(cls).parameters)
      self.assertEqual(names, parameters[:len(names)], cls.__name__)


class HooksTest(tf.test.TestCase):

  def test_get_calculator_of_a_subclass_written_for_the_original(self):

    class ModelSizeGates(lsr.LogisticSigmoidRegularizer):

      def get_calculator(self):
        return cost_calculator.CostCalculator(self._manager,
                                              rf.model_size_function)

      @property
      def name(self):
        return 'ModelSizeGates'

    with tf.Graph().as_default():
      x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
      reg_input = layers.conv2d(x, 3, 3, name='conv')
      from morph_net.probabilistic_gating import activation_gating  # pylint: disable=g-import-not-at-top
      gated = activation_gating.logistic_sigmoid_gating(
          reg_input, -1, False, log_odds_init=5.0, scope='gate')
      reg = ModelSizeGates([gated.op], input_boundary=[x.op])
      self.assertEqual('ModelSizeGates', reg.name)
      cost = layers.evaluate(reg.get_cost())
    self.assertEqual(3 * 3 * 2 * 3, cost)

  def test_boundaries_enclosing_nothing_warn(self):
    with tf.Graph().as_default():
      x, y = _chain()
      with self.assertLogs(level='WARNING') as logs:
        reg = fr.GammaFlopsRegularizer([y.op], gamma_threshold=0.1,
                                       input_boundary=[y.op])
      self.assertIn('GammaFlopsRegularizer: no conv or matmul op between the '
                    'boundaries (0 ops)', '\n'.join(logs.output))
      self.assertEqual(0.0, layers.evaluate(reg.get_cost()))
      self.assertEqual([], reg.op_regularizer_manager.ops)
      del x


if __name__ == '__main__':
  tf.test.main()
