"""The resource function of a measured profile, and op features."""

import pytest
import tensorflow as tf

from morph_net import errors
from morph_net.network_regularizers import cost_forms
from morph_net.network_regularizers import latency_profile
from morph_net.network_regularizers import profile_resource
from morph_net.network_regularizers import resource_function
from morph_net.testing import latency_models
from morph_net.testing import tf1_layers as layers

_v1 = tf.compat.v1


def _profile(**overrides):
  kinds = latency_models.fixed_profile().kinds
  kinds.update(overrides)
  return latency_profile.LatencyProfile(kinds)


class TestHardwareArgument(object):

  def test_names_stay_devices_and_paths_are_profiles(self):
    assert not profile_resource.is_profile_argument('V100')
    assert profile_resource.is_profile_argument('device.json')
    assert profile_resource.is_profile_argument('/tmp/profiles/device')
    assert profile_resource.is_profile_argument(_profile())
    function = resource_function.latency_function_factory(_profile(), 1)
    assert isinstance(function.hardware, latency_profile.LatencyProfile)
    assert 'Pad' in function.costed_op_types
    with pytest.raises(errors.ProfileError, match='does not exist'):
      resource_function.latency_function_factory('nowhere/device.json')

  def test_unknown_device_mentions_profiles(self):
    with pytest.raises(errors.InvalidArgumentError,
                       match=r'or a measured latency profile \(a \.json '
                       r"path or a LatencyProfile\).*hardware='V1000'"):
      resource_function.get_hardware('V1000')

  def test_other_batch_size_warns(self, caplog):
    with caplog.at_level('WARNING'):
      resource_function.latency_function_factory(_profile(), 4)
    assert 'measured at batch size 1; costing at batch size 4' in caplog.text


def test_op_features_and_forms():
  with tf.Graph().as_default():
    x = _v1.placeholder(tf.float32, [2, 4, 4, 2])
    y = layers.conv2d(x, 3, 3, name='a')
    padded = tf.pad(y, [[0, 0], [1, 1], [1, 1], [0, 0]])
  assert profile_resource.op_features(y.op, 2) == ('conv', 2 * 1728.0,
                                                  4.0 * (54 + 2 * 80))
  # Pad reads 16 and writes 36 positions per channel; the paddings are not
  # activations.
  assert profile_resource.op_features(padded.op, 2) == (
      'pad', 0.0, 2 * 4.0 * (16 + 36) * 3)
  profile = _profile(pad={'ns_per_flop': 0.0, 'ns_per_byte': 1.0,
                          'overhead_ns': 7.0})
  forms = profile_resource.profile_forms(padded.op, profile, 2)
  assert [f.overhead for f in forms] == [7.0, 7.0]
  assert cost_forms.evaluate(forms, False, 3, 3, 0.0, 0.0) == (
      2 * 4.0 * 52 * 3 + 7.0)
  assert cost_forms.evaluate(forms, False, 0, 0, 0.0, 0.0) == 0.0
  with pytest.raises(errors.ProfileError, match=r'Op .* \(Placeholder\) is '
                     r'of no latency op kind'):
    profile_resource.op_features(x.op)


def test_op_features_need_static_shapes():
  with tf.Graph().as_default():
    channels = tf.nn.relu(_v1.placeholder(tf.float32, [1, 4, 4, None]),
                          name='no_channels')
    spatial = tf.nn.relu(_v1.placeholder(tf.float32, [1, None, None, 3]),
                         name='no_size')
  with pytest.raises(errors.UnsupportedGraphError,
                     match=r'Op no_channels \(Relu\): tensor no_channels:0 '
                     r'has no static channel dimension'):
    profile_resource.op_features(channels.op)
  with pytest.raises(errors.UnsupportedGraphError,
                     match=r'Op no_size \(Relu\) has a spatial size known '
                     r'only at run time; a latency profile needs static'):
    profile_resource.op_features(spatial.op)
