"""TF1 mode: tf_slim Inception V1, V2 and V3 (concats), Gamma and GroupLasso.

Built after `tf.compat.v1.disable_v2_behavior()` in one subprocess (see
`morph_net.testing.slim_nets`), with batch norm scale enabled (Inception's
arg scopes leave it off, which would leave no Gamma source). Inception has
no residual adds: every conv + batch norm is its own group, and each concat
is sliced into its branches' groups.
"""

import functools

from morph_net.testing import slim_nets

_V3 = 'InceptionV3/InceptionV3/'


@functools.lru_cache(maxsize=None)
def _facts():
  return slim_nets.run_in_subprocess(
      ['inception_v1', 'inception_v2', 'inception_v3'])


def test_every_conv_is_its_own_group():
  # (network, batch norms, convs): every conv but the logits conv has a batch
  # norm, except Inception V2's separable stem, whose pointwise conv has none.
  for network, norms, convs in (('inception_v1', 57, 58),
                                ('inception_v2', 68, 70),
                                ('inception_v3', 94, 95)):
    gamma = _facts()[(network, 'gamma')]
    assert gamma['graph_op_types']['FusedBatchNormV3'] == norms, network
    assert gamma['graph_op_types']['Conv2D'] == convs, network
    assert gamma['source_ops'] == norms, network
    assert gamma['groups_with_sources'] == norms, network
    lasso = _facts()[(network, 'group_lasso')]
    assert lasso['source_ops'] == convs, network
    assert lasso['groups_with_sources'] == convs, network


def test_inception_v2_separable_stem():
  # The stem is a separable conv (depth multiplier 8) on the network input,
  # which is outside the analysis: its depthwise conv is one group of all 24
  # channels with the pointwise conv's input, not a group per input channel.
  gamma = _facts()[('inception_v2', 'gamma')]
  assert gamma['graph_op_types']['DepthwiseConv2dNative'] == 1
  depthwise = 'InceptionV2/InceptionV2/Conv2d_1a_7x7/separable_conv2d/depthwise'
  assert gamma['group_of'][depthwise] is not None
  assert depthwise not in gamma['slices']


def test_inception_v3_concat_slices_follow_branches():
  concats = _facts()[('inception_v3', 'gamma')]['concats']
  bn = '/BatchNorm/FusedBatchNormV3'
  mixed_5b = _V3 + 'Mixed_5b/'
  assert concats[mixed_5b + 'concat'] == [
      [64, [mixed_5b + 'Branch_0/Conv2d_0a_1x1' + bn]],
      [64, [mixed_5b + 'Branch_1/Conv2d_0b_5x5' + bn]],
      [96, [mixed_5b + 'Branch_2/Conv2d_0c_3x3' + bn]],
      [32, [mixed_5b + 'Branch_3/Conv2d_0b_1x1' + bn]]]
  # Mixed_7b nests concats inside branches 1 and 2.
  mixed_7b = _V3 + 'Mixed_7b/'
  assert concats[mixed_7b + 'concat'] == [
      [320, [mixed_7b + 'Branch_0/Conv2d_0a_1x1' + bn]],
      [384, [mixed_7b + 'Branch_1/Conv2d_0b_1x3' + bn]],
      [384, [mixed_7b + 'Branch_1/Conv2d_0b_3x1' + bn]],
      [384, [mixed_7b + 'Branch_2/Conv2d_0c_1x3' + bn]],
      [384, [mixed_7b + 'Branch_2/Conv2d_0d_3x1' + bn]],
      [192, [mixed_7b + 'Branch_3/Conv2d_0b_1x1' + bn]]]
  assert concats[mixed_7b + 'Branch_1/concat'] == [
      [384, [mixed_7b + 'Branch_1/Conv2d_0b_1x3' + bn]],
      [384, [mixed_7b + 'Branch_1/Conv2d_0b_3x1' + bn]]]


def test_inception_v3_pool_branch_groups_with_previous_concat():
  # Mixed_5c's pooling branch pools Mixed_5b's concat: the pool is sliced like
  # that concat, slice by slice in the same groups.
  slices = _facts()[('inception_v3', 'gamma')]['slices']
  pool = slices[_V3 + 'Mixed_5c/Branch_3/AvgPool_0a_3x3/AvgPool']
  concat = slices[_V3 + 'Mixed_5b/concat']
  assert pool == concat
  assert [size for _, size, _ in pool] == [64, 64, 96, 32]
