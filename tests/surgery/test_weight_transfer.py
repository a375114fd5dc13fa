"""Tests for morph_net.surgery.weight_transfer: which channels survive."""

import keras
import numpy as np
import pytest

from morph_net import errors
from morph_net.surgery import channel_model
from morph_net.surgery import plan as plan_lib
from morph_net.surgery import weight_transfer
from morph_net.testing import surgery_models as tm


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _plan(model, structure):
  return plan_lib.RebuildPlan(channel_model.analyze(model), structure)


def test_survivors_by_gamma_by_kernel_norm_and_by_mask():
  model = tm.depthwise_model()
  tm.randomize_batch_norms(model)
  # expand's group is normalised twice (expand_bn, dw_bn): |gammas| add up.
  model.get_layer('expand_bn').gamma.assign(
      np.array([0.1, 3, 0.2, 2, 5, 0.3, 4, 0.4], 'float32'))
  model.get_layer('dw_bn').gamma.assign(np.ones([8], 'float32'))
  kernel = np.zeros([1, 1, 8, 4], 'float32')
  kernel[..., 2] = 3.0
  kernel[..., 0] = 1.0
  model.get_layer('se_reduce').kernel.assign(kernel)
  plan = _plan(model, {'expand': 3, 'se_expand': 3, 'se_reduce': 2,
                       'project': 2})
  kept = weight_transfer.choose_kept_channels(
      model, plan, alive_masks={'project': [0, 1, 0, 0, 1, 0]})
  channels = plan.channels
  np.testing.assert_array_equal(kept[channels.group_of('expand')], [1, 4, 6])
  np.testing.assert_array_equal(kept[channels.group_of('se_reduce')], [0, 2])
  np.testing.assert_array_equal(kept[channels.group_of('project')], [1, 4])


def test_masks_of_unknown_layers_are_refused():
  model = tm.residual_model()
  with pytest.raises(errors.InvalidArgumentError,
                     match=r"alive_masks names layers \['stem_bn'\] that are "
                     "not width-taking layers of model 'residual'"):
    weight_transfer.choose_kept_channels(model, _plan(model, {}),
                                         {'stem_bn': [1] * 8})


def test_masks_that_differ_within_a_group_are_refused():
  model = tm.residual_model()
  masks = {'stem': [1, 1, 0, 0, 1, 1, 1, 1], 'b1_conv2': [1] * 6 + [0, 0]}
  with pytest.raises(errors.InvalidArgumentError,
                     match=r"alive_masks of 'stem' and 'b1_conv2' differ, "
                     'but the layers are in one channel group'):
    weight_transfer.choose_kept_channels(
        model, _plan(model, {'stem': 6, 'b1_conv2': 6}), masks)
