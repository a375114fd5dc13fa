"""Measured latency profiles: JSON form, validation, costs of a two-conv net."""

import json
import re

import pytest
import tensorflow as tf

from morph_net import errors
from morph_net.network_regularizers import latency_profile
from morph_net.network_regularizers import latency_regularizer
from morph_net.testing import tf1_layers as layers

_v1 = tf.compat.v1

# ns per FLOP, ns per byte, ns per op.
_KINDS = {
    'conv': {'ns_per_flop': 0.5, 'ns_per_byte': 2.0, 'overhead_ns': 100.0},
    'batch_norm': {'ns_per_flop': 0.0, 'ns_per_byte': 1.0,
                   'overhead_ns': 10.0},
    'activation': {'ns_per_flop': 0.0, 'ns_per_byte': 0.5,
                   'overhead_ns': 5.0},
}


def _profile(**overrides):
  kinds = dict(_KINDS)
  kinds.update(overrides)
  return latency_profile.LatencyProfile(kinds, batch_size=1, device='test')


def _two_convs(hardware, gammas=None, regularizer_class=None):
  """x [1, 4, 4, 2] -> conv a 3x3 (3) -> bn -> relu -> conv b 1x1 (2) -> bn.

  Returns:
    (cost, term) evaluated with `gammas` for a_bn.
  """
  regularizer_class = (regularizer_class or
                       latency_regularizer.GammaLatencyRegularizer)
  with tf.Graph().as_default():
    x = _v1.placeholder(tf.float32, [1, 4, 4, 2])
    y = layers.conv_bn_relu(x, 3, 3, name='a')
    y = layers.conv2d(y, 2, 1, name='b_conv')
    y = layers.batch_norm(y, name='b_bn')
    reg = regularizer_class([y.op], gamma_threshold=1e-3, hardware=hardware,
                            batch_size=1, input_boundary=[x.op])
    return layers.evaluate([reg.get_cost(), reg.get_regularization_term()],
                           gammas and {'a_bn/gamma': gammas})


class TestTwoConvs(object):
  """Latency of the two-conv net by hand (float32: 4 bytes).

  conv a: 1728 FLOPs, 4 x (54 weights + 32 in + 48 out) = 536 bytes:
    max(0.5 x 1728, 2 x 536) + 100 = 1172.
  bn a, relu a: 4 x (48 + 48) = 384 bytes: 384 + 10 = 394; 192 + 5 = 197.
  conv b: 2 x 16 x 3 x 2 = 192 FLOPs, 4 x (6 + 48 + 32) = 344 bytes:
    max(96, 688) + 100 = 788.
  bn b: 4 x (32 + 32) = 256 bytes: 256 + 10 = 266.
  """

  def test_all_alive(self):
    cost, _ = _two_convs(_profile())
    assert cost == pytest.approx(1172 + 394 + 197 + 788 + 266)

  def test_one_dead_channel_and_the_term(self):
    cost, term = _two_convs(_profile(), gammas=[0.5, 0.0, 2.0])
    # conv a 2 -> 2 alive: max(576, 2 x 4 x (36 + 32 + 32)) + 100 = 900;
    # bn a 256 + 10; relu a 128 + 5; conv b 2 -> 2: max(64, 544) + 100.
    assert cost == pytest.approx(900 + 266 + 133 + 644 + 266)
    # Terms of the memory forms (all ops memory bound), no overheads; a's
    # channels sum to 2.5, b's to 2, the input has no regularizer:
    # conv a 72 x (2 x 2.5) + 128 x 2.5; bn a 64 x (2.5 + 2.5);
    # relu a half of that; conv b 8 x (2 x 2 + 2 x 2.5) + 128 x (2.5 + 2);
    # bn b 64 x (2 + 2).
    assert term == pytest.approx(680 + 320 + 160 + 648 + 256)

  def test_ops_without_alive_channels_cost_nothing(self):
    cost, _ = _two_convs(_profile(), gammas=[0.0, 0.0, 0.0])
    # conv a, bn a and relu a are gone with their overheads; conv b keeps
    # writing its outputs: 2 x 4 x 32 + 100.
    assert cost == pytest.approx(356 + 266)

  def test_profile_path_gives_the_same_cost(self, tmp_path):
    path = str(tmp_path / 'device.json')
    with open(path, 'w') as f:
      f.write(_profile().to_json())
    assert _two_convs(path) == _two_convs(_profile())

  def test_missing_kind_names_the_op_and_the_field(self):
    kinds = dict(_KINDS)
    del kinds['activation']
    profile = latency_profile.LatencyProfile(kinds)
    with pytest.raises(errors.ProfileError,
                       match=r'profile has no entry kinds\.activation needed '
                       r'by op a_relu \(Relu\).*calibrate_latency'):
      _two_convs(profile)


class TestJson(object):

  def test_round_trip(self, tmp_path):
    profile = latency_profile.LatencyProfile(
        {'conv': {'ns_per_flop': 0.25, 'ns_per_byte': 1.5,
                  'overhead_ns': 3000.0,
                  'fit': {'samples': 4, 'rms_relative_error': 0.03}},
         'add': latency_profile.KindParameters(0.0, 0.125, 800.0)},
        batch_size=8, device='cpu', metadata={'threads': {'intra_op': 1}})
    path = tmp_path / 'device.json'
    path.write_text(profile.to_json())
    loaded = latency_profile.LatencyProfile.load(str(path))
    assert loaded == profile
    assert loaded.kinds['add'] == latency_profile.KindParameters(
        0.0, 0.125, 800.0)
    assert loaded.fit('conv') == {'samples': 4, 'rms_relative_error': 0.03}
    assert loaded.batch_size == 8
    assert loaded.metadata == {'threads': {'intra_op': 1}}
    data = json.loads(path.read_text())
    assert data['format'] == 'morph_net.latency_profile'
    assert data['version'] == 3
    assert data['preferred_multiple'] == 1
    assert sorted(data['kinds']) == ['add', 'conv']

  def test_round_trip_keeps_the_preferred_multiple(self, tmp_path):
    profile = latency_profile.LatencyProfile(
        _KINDS, batch_size=2, device='cpu', preferred_multiple=8)
    path = tmp_path / 'aligned.json'
    path.write_text(profile.to_json())
    loaded = latency_profile.LatencyProfile.load(str(path))
    assert loaded == profile
    assert loaded.preferred_multiple == 8
    assert json.loads(path.read_text())['preferred_multiple'] == 8
    assert 'preferred_multiple=8' in repr(loaded)

  def test_version_1_loads_with_multiple_1(self, tmp_path):
    data = _data(version=1)
    del data['preferred_multiple']
    path = tmp_path / 'old.json'
    path.write_text(json.dumps(data))
    loaded = latency_profile.LatencyProfile.load(str(path))
    assert loaded.preferred_multiple == 1
    assert loaded.kinds == _profile().kinds
    assert loaded.to_dict()['version'] == 3

  def test_predict(self):
    profile = _profile()
    assert profile.predict('conv', 1728, 536) == 1172.0
    assert profile.predict('conv', 3000, 536) == 1600.0


def _data(**changes):
  data = _profile().to_dict()
  data.update(changes)
  return data


class TestBadProfiles(object):

  @pytest.mark.parametrize('kinds,message', [
      ({'conv': {'ns_per_flop': 1.0, 'ns_per_byte': 1.0}},
       r'kinds\.conv\.overhead_ns is missing'),
      ({'conv': {'ns_per_flop': 1.0, 'ns_per_byte': -0.5,
                 'overhead_ns': 1.0}},
       r'kinds\.conv\.ns_per_byte must be a finite number >= 0.*-0\.5'),
      ({'conv': {'ns_per_flop': float('nan'), 'ns_per_byte': 1.0,
                 'overhead_ns': 1.0}},
       r'kinds\.conv\.ns_per_flop must be a finite number'),
      ({'conv': {'ns_per_flop': '1', 'ns_per_byte': 1.0,
                 'overhead_ns': 1.0}},
       r"kinds\.conv\.ns_per_flop must be .*Received: '1'"),
      ({'convolution': {'ns_per_flop': 1.0, 'ns_per_byte': 1.0,
                        'overhead_ns': 1.0}},
       r'kinds\.convolution is not an op kind.*conv, depthwise'),
      ({'conv': 3.0}, r'kinds\.conv: expected \{ns_per_flop'),
      ({}, r'field `kinds` must be a non-empty'),
  ])
  def test_field_errors(self, kinds, message):
    with pytest.raises(errors.ProfileError, match=message):
      latency_profile.LatencyProfile.from_dict(_data(kinds=kinds))

  def test_batch_size(self):
    with pytest.raises(errors.ProfileError,
                       match=r'field `batch_size` must be a positive integer'
                       r'.*Received: 0'):
      latency_profile.LatencyProfile.from_dict(_data(batch_size=0))

  def test_wrong_file(self, tmp_path):
    path = tmp_path / 'alive.json'
    path.write_text(json.dumps({'conv1': 12, 'conv2': 20}))
    with pytest.raises(errors.ProfileError,
                       match=r"'.*alive\.json' is not a MorphNet latency "
                       r"profile: field `format` is None, expected "
                       r"'morph_net\.latency_profile'"):
      latency_profile.LatencyProfile.load(str(path))
    path.write_text('conv1: 12')
    with pytest.raises(errors.ProfileError,
                       match=r"alive\.json' is not a MorphNet latency "
                       r'profile: it is not JSON'):
      latency_profile.LatencyProfile.load(str(path))
    with pytest.raises(errors.ProfileError,
                       match=r"Latency profile file '.*missing\.json' does "
                       r'not exist'):
      latency_profile.LatencyProfile.load(str(tmp_path / 'missing.json'))
    with pytest.raises(errors.ProfileError, match=r'not a MorphNet latency '
                       r"profile: field `format` is 'list'"):
      latency_profile.LatencyProfile.from_dict([1, 2])

  def test_version(self):
    with pytest.raises(errors.ProfileError,
                       match=r'field `version` is 4; this MorphNet reads '
                       r'versions 1, 2, 3'):
      latency_profile.LatencyProfile.from_dict(_data(version=4))

  def test_version_2_needs_the_preferred_multiple(self):
    data = _data(version=2)
    del data['preferred_multiple']
    with pytest.raises(errors.ProfileError,
                       match=r'profile: field `preferred_multiple` is '
                       r'missing: a version 2 profile records the channel '
                       r'multiple'):
      latency_profile.LatencyProfile.from_dict(data)

  @pytest.mark.parametrize('value', [0, 2.5, True, '8'])
  def test_bad_preferred_multiple(self, value):
    with pytest.raises(errors.ProfileError,
                       match=r'profile: field `preferred_multiple` must be an '
                       r'integer >= 1 .*Received: %s' % re.escape(repr(value))):
      latency_profile.LatencyProfile.from_dict(
          _data(preferred_multiple=value))

  def test_check_kinds(self):
    with pytest.raises(errors.ProfileError,
                       match=r'no entry kinds\.depthwise\. Calibrate'):
      _profile().check_kinds(['conv', 'depthwise'])
