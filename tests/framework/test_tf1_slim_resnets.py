"""TF1 mode: tf_slim ResNets and a separable conv, Gamma and GroupLasso.

The networks are built after `tf.compat.v1.disable_v2_behavior()` (shapes of
`Dimension`, reference variables) in one subprocess; see
`morph_net.testing.slim_nets`. Expected counts follow from the architectures:
ResNet-50 has 16 bottleneck units in 4 blocks, each unit with conv1, conv2,
conv3 (+ BN), the first unit of each block with a projection shortcut.
"""

import functools

from morph_net.testing import slim_nets

_UNIT = 'resnet_v1_50/block2/unit_%d/bottleneck_v1/'


@functools.lru_cache(maxsize=None)
def _facts():
  return slim_nets.run_in_subprocess(
      ['resnet_v1_50', 'resnet_v2_50', 'separable'])


def _groups(network, registry, names):
  group_of = _facts()[(network, registry)]['group_of']
  return [group_of[name] for name in names]


def test_resnet_v1_gamma_counts():
  facts = _facts()[('resnet_v1_50', 'gamma')]
  # 1 root BN + 16 units x 3 BN + 4 projection shortcut BN.
  assert facts['source_ops'] == 53
  assert facts['source_types'] == ['FusedBatchNormV3']
  # root + 16 units x (conv1, conv2) + one residual stream per block.
  assert facts['groups_with_sources'] == 1 + 16 * 2 + 4


def test_resnet_v1_group_lasso_counts():
  facts = _facts()[('resnet_v1_50', 'group_lasso')]
  assert facts['source_ops'] == 54  # The 53 convs above and the logits conv.
  assert facts['source_types'] == ['Conv2D']
  assert facts['groups_with_sources'] == 1 + 16 * 2 + 4 + 1
  assert facts['ops'] == _facts()[('resnet_v1_50', 'gamma')]['ops']


def test_resnet_v1_bottleneck_groups():
  for registry in ('gamma', 'group_lasso'):
    conv1 = _groups('resnet_v1_50', registry, [
        _UNIT % 1 + 'conv1/Conv2D', _UNIT % 1 + 'conv1/BatchNorm/FusedBatchNormV3',
        _UNIT % 1 + 'conv1/Relu'])
    conv2 = _groups('resnet_v1_50', registry, [
        _UNIT % 1 + 'conv2/Conv2D', _UNIT % 1 + 'conv2/Relu'])
    stream = _groups('resnet_v1_50', registry, [
        _UNIT % 1 + 'conv3/Conv2D', _UNIT % 1 + 'conv3/BatchNorm/FusedBatchNormV3',
        _UNIT % 1 + 'shortcut/Conv2D',
        _UNIT % 1 + 'shortcut/BatchNorm/FusedBatchNormV3', _UNIT % 1 + 'add',
        _UNIT % 1 + 'Relu', _UNIT % 2 + 'conv3/Conv2D', _UNIT % 2 + 'add',
        _UNIT % 4 + 'Relu'])
    next_block = _groups('resnet_v1_50', registry, [
        'resnet_v1_50/block3/unit_1/bottleneck_v1/shortcut/Conv2D'])
    assert len(set(conv1)) == 1 and conv1[0] is not None, registry
    assert len(set(conv2)) == 1 and conv2[0] is not None, registry
    assert len(set(stream)) == 1 and stream[0] is not None, registry
    assert len({conv1[0], conv2[0], stream[0], next_block[0]}) == 4, registry


def test_resnet_v2_counts_and_preactivation_stream():
  gamma = _facts()[('resnet_v2_50', 'gamma')]
  # 16 units x (preact, conv1, conv2) BN + the final postnorm BN.
  assert gamma['source_ops'] == 16 * 3 + 1
  # 16 units x (conv1, conv2) + the root stream + one stream per block.
  assert gamma['groups_with_sources'] == 16 * 2 + 1 + 4
  lasso = _facts()[('resnet_v2_50', 'group_lasso')]
  assert lasso['source_ops'] == 54
  assert lasso['groups_with_sources'] == 16 * 2 + 1 + 4 + 1
  unit = 'resnet_v2_50/block2/unit_%d/bottleneck_v2/'
  for registry in ('gamma', 'group_lasso'):
    stream = _groups('resnet_v2_50', registry, [
        unit % 1 + 'conv3/Conv2D', unit % 1 + 'shortcut/Conv2D',
        unit % 1 + 'add', unit % 2 + 'preact/FusedBatchNormV3',
        unit % 2 + 'add'])
    block1_stream, conv1 = _groups('resnet_v2_50', registry, [
        unit % 1 + 'preact/FusedBatchNormV3', unit % 1 + 'conv1/Conv2D'])
    assert len(set(stream)) == 1 and stream[0] is not None, registry
    assert len({stream[0], block1_stream, conv1}) == 3, registry


def test_separable_conv_depth_multiplier_two():
  for registry, sources in (('gamma', 3), ('group_lasso', 2)):
    facts = _facts()[('separable', registry)]
    assert facts['source_ops'] == sources
    # One group per channel of conv1 (with its two depthwise channels), and
    # conv2's group.
    assert facts['groups_with_sources'] == 4
    slices = facts['slices']
    conv1 = [group for _, _, group in slices['conv1/Relu']]
    assert [[0, 1], [1, 1], [2, 1]] == [s[:2] for s in slices['conv1/Relu']]
    assert len(set(conv1)) == 3
    # Output channel 2i + k of the depthwise conv comes from input channel i.
    for name in ('dwise/depthwise', 'dwise/BatchNorm/FusedBatchNormV3',
                 'dwise/Relu'):
      assert [group for _, _, group in slices[name]] == [
          conv1[0], conv1[0], conv1[1], conv1[1], conv1[2], conv1[2]], name
