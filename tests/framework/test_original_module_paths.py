"""Every module path of the original's framework/ imports, with its names.

The handler modules live in morph_net.op_handlers; the original kept them in
morph_net.framework. Both paths must be the same module object, in every
import form, for `mock.patch` of the original path too, and the classes and
functions keep the original's names and constructor signatures.
"""

import importlib
import inspect
import subprocess
import sys
import textwrap
from unittest import mock

import pytest

from morph_net.framework import op_handler_util

# Modules of the original's morph_net/framework that stayed there, with names
# their users import (tpu_util moved to morph_net.compat: see below).
FRAMEWORK_MODULES = {
    'concat_and_slice_regularizers': ['ConcatRegularizer',
                                      'SlicingReferenceRegularizer'],
    'constant_op_regularizer': ['ConstantOpRegularizer'],
    'generic_regularizers': ['NetworkRegularizer', 'OpRegularizer'],
    'grouping_regularizers': ['L2GroupingRegularizer',
                              'MaxGroupingRegularizer'],
    'op_handler': ['OpHandler'],
    'op_handler_decorator': ['OpHandlerDecorator'],
    'op_handler_util': ['get_op_size', 'group_match'],
    'op_regularizer_manager': ['OpGroup', 'OpRegularizerManager', 'OpSlice',
                               'Slice'],
    'probabilistic_grouping_regularizer': ['ProbabilisticGroupingRegularizer'],
}
# Handler modules of the original's framework/, now in morph_net.op_handlers,
# with the names their users import.
HANDLER_MODULES = {
    'batch_norm_source_op_handler': ['BatchNormSourceOpHandler'],
    'concat_op_handler': ['ConcatOpHandler'],
    'conv2d_transpose_source_op_handler': ['Conv2DTransposeSourceOpHandler'],
    'conv_source_op_handler': ['ConvSourceOpHandler', 'Conv2DSourceOpHandler'],
    'depth_to_space_op_handler': ['DepthToSpaceOpHandler'],
    'depthwise_convolution_op_handler': ['DepthwiseConvolutionOpHandler'],
    'group_lasso_base_op_handler': ['GroupLassoBaseSourceOpHandler'],
    'grouping_op_handler': ['GroupingOpHandler'],
    'leaf_op_handler': ['LeafOpHandler'],
    'logistic_sigmoid_source_op_handler': ['LogisticSigmoidSourceOpHandler'],
    'matmul_source_op_handler': ['MatMulSourceOpHandler'],
    'op_handlers': ['get_gamma_op_handler_dict',
                    'get_group_lasso_op_handler_dict'],
    'output_non_passthrough_op_handler': ['OutputNonPassthroughOpHandler'],
}
# Constructor / function parameters as in the original.
SIGNATURES = {
    ('op_regularizer_manager', 'OpRegularizerManager'): [
        'output_boundary', 'op_handler_dict', 'create_grouping_regularizer',
        'force_group', 'regularizer_blacklist', 'input_boundary',
        'iteration_limit'],
    ('op_regularizer_manager', 'OpGroup'): [
        'op_slice', 'op_groups', 'omit_source_op_slices'],
    ('op_handler_decorator', 'OpHandlerDecorator'): [
        'handler', 'regularizer_decorator', 'decorator_parameters'],
    ('batch_norm_source_op_handler', 'BatchNormSourceOpHandler'): [
        'gamma_threshold'],
    ('conv_source_op_handler', 'ConvSourceOpHandler'): [
        'threshold', 'l1_fraction'],
    ('matmul_source_op_handler', 'MatMulSourceOpHandler'): [
        'threshold', 'l1_fraction'],
    ('grouping_op_handler', 'GroupingOpHandler'): ['grouping_indices'],
    ('logistic_sigmoid_source_op_handler', 'LogisticSigmoidSourceOpHandler'): [
        'regularize_on_mask', 'alive_threshold', 'mask_as_alive_vector'],
    ('op_handler_util', 'get_input_ops'): [
        'op', 'op_reg_manager', 'whitelist_indices'],
    ('op_handler_util', 'group_op_with_inputs_and_outputs'): [
        'op', 'input_op_slices', 'output_op_slices', 'aligned_op_slice_sizes',
        'op_reg_manager'],
    ('op_handler_util', 'group_aligned_input_output_slices'): [
        'op', 'input_ops_to_process', 'output_ops_to_process',
        'input_op_slices', 'output_op_slices', 'aligned_op_slice_sizes',
        'op_reg_manager'],
    ('op_handler_util', 'reslice_concat_ops'): [
        'concat_ops', 'aligned_op_slice_sizes', 'op_reg_manager'],
}
# The original's op_handler_util functions and constants.
UTIL_NAMES = (
    'OP_TYPES_WITH_MULTIPLE_OUTPUTS', 'WEIGHTS_INDEX_DICT',
    'get_aligned_op_slice_sizes', 'get_aligned_sizes',
    'get_concat_input_op_slices', 'get_input_ops', 'get_op_size',
    'get_op_slice_sizes', 'get_op_slices', 'get_ops_without_groups',
    'get_output_ops', 'get_total_slice_size',
    'group_aligned_input_output_slices', 'group_match',
    'group_op_with_inputs_and_outputs', 'remove_non_passthrough_ops',
    'reslice_concat_ops', 'reslice_ops', 'separate_same_size_ops')


@pytest.mark.parametrize('name', sorted(FRAMEWORK_MODULES))
def test_framework_module_imports(name):
  module = importlib.import_module('morph_net.framework.' + name)
  assert module.__name__ == 'morph_net.framework.' + name
  for attribute in FRAMEWORK_MODULES[name]:
    assert hasattr(module, attribute), attribute


@pytest.mark.parametrize('name', sorted(HANDLER_MODULES))
def test_handler_module_is_the_implementation(name):
  original_path = importlib.import_module('morph_net.framework.' + name)
  implementation = importlib.import_module('morph_net.op_handlers.' + name)
  assert original_path is implementation
  framework = importlib.import_module('morph_net.framework')
  assert getattr(framework, name) is implementation
  for attribute in HANDLER_MODULES[name]:
    assert getattr(original_path, attribute) is getattr(implementation,
                                                         attribute)
  for attribute in implementation.__all__:
    assert hasattr(original_path, attribute), attribute


def test_tpu_util_original_path_is_the_compat_module():
  original_path = importlib.import_module('morph_net.framework.tpu_util')
  implementation = importlib.import_module('morph_net.compat.tpu_util')
  assert original_path is implementation
  assert importlib.import_module('morph_net.framework').tpu_util is (
      implementation)
  for name in ('run_on_cpu', 'is_on_cpu', 'get_variable_name',
               'maybe_convert_to_variable', 'var_store', 'write_to_variable',
               'read_from_variable', 'is_intermediate_var'):
    assert name in implementation.__all__, name
    assert getattr(original_path, name) is getattr(implementation, name)


def test_the_import_hook_lives_in_compat():
  framework = importlib.import_module('morph_net.framework')
  hooks = [finder for finder in sys.meta_path
           if getattr(finder, 'is_morph_net_original_path_alias', False)]
  assert len(hooks) == 1
  assert type(hooks[0]).__module__ == 'morph_net.compat.original_paths'
  from morph_net.compat import original_paths  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  assert framework.HANDLER_MODULES is original_paths.HANDLER_MODULES
  assert set(HANDLER_MODULES) <= original_paths.HANDLER_MODULES
  assert original_paths.ORIGINAL_PATHS['tpu_util'] == (
      'morph_net.compat.tpu_util')


@pytest.mark.parametrize('key', sorted(SIGNATURES))
def test_original_signatures(key):
  module = importlib.import_module('morph_net.framework.' + key[0])
  parameters = list(inspect.signature(getattr(module, key[1])).parameters)
  assert parameters == SIGNATURES[key]


def test_op_handler_util_names():
  for name in UTIL_NAMES:
    assert name in op_handler_util.__all__, name
    assert hasattr(op_handler_util, name), name
  assert op_handler_util.WEIGHTS_INDEX_DICT['Conv2D'] == 1
  assert 'SplitV' in op_handler_util.OP_TYPES_WITH_MULTIPLE_OUTPUTS


def test_mock_patch_of_original_path_patches_the_implementation():
  from morph_net.op_handlers import leaf_op_handler  # pylint: disable=g-import-not-at-top
  with mock.patch(
      'morph_net.framework.leaf_op_handler.group_with_outputs') as patched:
    assert leaf_op_handler.group_with_outputs is patched
    leaf_op_handler.LeafOpHandler().assign_grouping('op', 'manager')
  patched.assert_called_once_with('op', 'manager')
  assert leaf_op_handler.group_with_outputs is not patched


def test_first_import_through_each_form():
  # A fresh interpreter: the first import of each module goes through the
  # original path, in the three forms users write.
  script = textwrap.dedent('''
      import sys
      import morph_net.framework.concat_op_handler as first
      from morph_net.framework import leaf_op_handler as second
      from morph_net.framework.op_handlers import get_gamma_op_handler_dict
      import morph_net.op_handlers.concat_op_handler as concat
      import morph_net.op_handlers.leaf_op_handler as leaf
      import morph_net.op_handlers.op_handlers as registry
      print(first is concat, second is leaf,
            get_gamma_op_handler_dict is registry.get_gamma_op_handler_dict,
            sys.modules['morph_net.framework.concat_op_handler'] is concat)
      ''')
  result = subprocess.run([sys.executable, '-c', script], capture_output=True,
                          text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.split() == ['True', 'True', 'True', 'True']
