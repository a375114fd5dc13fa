"""ConfigurableOps: build a TF1 network whose widths come from a structure.

The TF1 (graph-mode) counterpart of the structure exporter, as in the original
MorphNet: a *parameterization* maps op names to numbers of output channels,
for example `{'conv1/Conv2D': 12, 'fc/MatMul': 40}` as written by
`structure_exporter`, and `ConfigurableOps` creates tf_slim layers whose
`num_outputs` argument is replaced by the parameterized width. The name looked
up is the one of the op the layer creates: `<name scope>/<scope>/Conv2D` for
`conv2d`, `.../separable_conv2d` for `separable_conv2d` and `.../MatMul` for
`fully_connected`. `hijack_module_functions` swaps the layer functions of a
model-building module (a tf_slim net, say) for these, so an existing network
is rebuilt with the learned widths without editing its code.

A width of 0 makes a layer *vanish*: instead of a tensor, the function returns
`VANISHED` and adds no op. Every function given a vanished input returns
`VANISHED` in turn, `concat` and `add_n` drop vanished inputs (and vanish when
all inputs did), and because `VANISHED` is the float 0.0, `x + VANISHED` is
`x`: a residual branch whose convolution vanished leaves its shortcut. Ops
upstream of a vanished op are still created.

`ConfigurableConv2D`, `ConfigurableSeparableConv2D` and `ConfigurableDense`
are the same for tf_keras (Keras 2) layers built in a TF1 graph, with
`hijack_keras_module` to swap the classes of a module and
`PassThroughKerasLayerWrapper` for the layers in between.

Dependencies: this module needs tf_slim and tf_keras (`pip install
"morph-net[slim]"`); importing it without them raises
`errors.MissingDependencyError` with that command.
"""

import collections

from absl import logging
import tensorflow as tf

from morph_net import errors
from morph_net.compat import slim as slim_compat
from morph_net.tools import _configurable_common as common
from morph_net.tools import _configurable_keras_v1 as keras_v1

# Raises MissingDependencyError (with the pip command) when tf_slim is absent.
tf_slim = slim_compat.import_slim()
# `tf.compat.v1.layers` as TF exports it with TF_USE_LEGACY_KERAS=1.
tf_layers = keras_v1.tf_layers

__all__ = [
    'VANISHED', 'DEFAULT_FUNCTION_DICT', 'FallbackRule', 'ConfigurableOps',
    'get_function_dict', 'is_vanished', 'hijack_module_functions',
    'recover_module_functions', 'decorator_from_parameterization_file',
    'ConfigurableConv2D', 'ConfigurableSeparableConv2D', 'ConfigurableDense',
    'PassThroughKerasLayerWrapper', 'hijack_keras_module']

VANISHED = common.VANISHED
FallbackRule = common.FallbackRule
is_vanished = common.is_vanished
ConfigurableConv2D = keras_v1.ConfigurableConv2D
ConfigurableSeparableConv2D = keras_v1.ConfigurableSeparableConv2D
ConfigurableDense = keras_v1.ConfigurableDense
PassThroughKerasLayerWrapper = keras_v1.PassThroughKerasLayerWrapper
hijack_keras_module = keras_v1.hijack_keras_module

_DEFAULT_NUM_OUTPUTS_KWARG = 'num_outputs'

DEFAULT_FUNCTION_DICT = {
    'fully_connected': tf_slim.layers.fully_connected,
    'conv2d': tf_slim.layers.conv2d,
    'separable_conv2d': tf_slim.layers.separable_conv2d,
    'concat': tf.concat,
    'add_n': tf.add_n,
    'avg_pool2d': tf_slim.layers.avg_pool2d,
    'max_pool2d': tf_slim.layers.max_pool2d,
    'batch_norm': tf_slim.layers.batch_norm,
}

# The scope a layer function uses when called without `scope` or `name`.
_OP_SCOPE_DEFAULTS = {
    tf_layers.conv2d: 'conv2d',
    tf_slim.layers.conv2d: 'Conv',
    tf_layers.separable_conv2d: 'separable_conv2d',
    tf_slim.layers.separable_conv2d: 'SeparableConv2d',
    tf_layers.dense: 'dense',
    tf_slim.layers.fully_connected: 'fully_connected',
}

# tf.layers functions name `num_outputs` differently.
_NUM_OUTPUTS_KWARGS = {
    tf_layers.conv2d: 'filters',
    tf_layers.separable_conv2d: 'filters',
    tf_layers.dense: 'units',
}

# The last part of the name of the op whose output channels a function sets.
_SUFFIX_DICT = {
    'fully_connected': 'MatMul',
    'conv2d': 'Conv2D',
    'separable_conv2d': 'separable_conv2d',
}


def get_function_dict(overrides=None):
  """Returns a copy of `DEFAULT_FUNCTION_DICT` updated with `overrides`.

  Args:
    overrides: optional {function name: function} replacing defaults.

  Returns:
    A new {function name: function} dict for `ConfigurableOps`.
  """
  function_dict = dict(DEFAULT_FUNCTION_DICT)
  function_dict.update(overrides or {})
  return function_dict


def _get_from_args_or_kwargs(name, index, args, kwargs, is_required=True):
  """Returns kwargs[name], else args[index] (None when optional and absent).

  Raises:
    InvalidArgumentError: if a required argument is in neither.
  """
  if name in kwargs:
    return kwargs[name]
  if index < len(args):
    return args[index]
  if is_required:
    raise errors.InvalidArgumentError(
        'Argument `%s` is required (as keyword or as positional argument %d).'
        % (name, index))
  return None


def _get_function_name(function) -> str:
  """`module.name` of a function, for messages."""
  return '%s.%s' % (getattr(function, '__module__', '?'),
                    getattr(function, '__name__', repr(function)))


class ConfigurableOps(object):
  """Layer functions whose `num_outputs` comes from a parameterization.

  `conv2d`, `separable_conv2d` and `fully_connected` call the functions of
  `function_dict` (tf_slim layers by default) with the width the
  parameterization gives the op they create, or the fallback (see
  `FallbackRule`). `concat`, `add_n`, the pools and `batch_norm` pass their
  inputs through, dropping or propagating `VANISHED` (see the module
  docstring). Every width used is recorded in `constructed_ops`.

  Args:
    parameterization: {op name: width}; op names are
      `<name scope>/<scope>/<suffix>` (suffix `Conv2D`, `separable_conv2d` or
      `MatMul`).
    function_dict: {function name: function} replacing the whole default
      table (use `get_function_dict(overrides)` to change only some); each
      function takes `num_outputs` as its second argument.
    fallback_rule: a `FallbackRule` or its name.

  Raises:
    InvalidArgumentError: if `fallback_rule` is not a string or FallbackRule,
      or a width is not an integer >= 0.
    KeyLookupError: if `fallback_rule` names no rule.
  """

  def __init__(self, parameterization=None, function_dict=None,
               fallback_rule=FallbackRule.pass_through):
    fallback_rule = common.get_fallback_rule(fallback_rule)
    self._parameterization = common.checked_parameterization(parameterization)
    self._function_dict = function_dict or DEFAULT_FUNCTION_DICT
    self._suffix_dict = _SUFFIX_DICT
    self._constructed_ops = collections.OrderedDict()
    self._default_to_zero = fallback_rule == FallbackRule.zero
    self._strict = fallback_rule == FallbackRule.strict
    # Calls without a scope: how often each default scope was used.
    self._scope_counts = {}

  @property
  def parameterization(self):
    """{op name: width} this object was built with."""
    return self._parameterization

  @property
  def constructed_ops(self):
    """{op name: width used}, in the order the ops were created."""
    return self._constructed_ops

  @tf_slim.add_arg_scope
  def conv2d(self, *args, **kwargs):
    """`function_dict['conv2d']` with the parameterized width of `.../Conv2D`.

    Args:
      *args: the function's arguments: inputs, num_outputs, kernel_size ...
      **kwargs: its keyword arguments (`scope` or `name` names the op).

    Returns:
      The function's output, or VANISHED if the input vanished or the width
      is 0.
    """
    fn, suffix = self._get_function_and_suffix('conv2d')
    return self._mask(fn, suffix, *args, **kwargs)

  @tf_slim.add_arg_scope
  def fully_connected(self, *args, **kwargs):
    """`function_dict['fully_connected']` with the width of `.../MatMul`.

    Args:
      *args: inputs (rank 2), num_outputs, ...
      **kwargs: keyword arguments of the function.

    Returns:
      The function's output, or VANISHED.

    Raises:
      InvalidArgumentError: if the inputs are not of rank 2 (a higher rank
        would create a Tensordot, whose op name the parameterization does not
        use).
    """
    inputs = _get_from_args_or_kwargs('inputs', 0, args, kwargs)
    if not is_vanished(inputs) and inputs.shape.ndims != 2:
      raise errors.InvalidArgumentError(
          'ConfigurableOps.fully_connected(scope=%r) needs inputs of rank 2, '
          'got shape %s. Flatten the inputs first.' % (
              kwargs.get('scope') or kwargs.get('name'), inputs.shape))
    fn, suffix = self._get_function_and_suffix('fully_connected')
    return self._mask(fn, suffix, *args, **kwargs)

  @tf_slim.add_arg_scope
  def separable_conv2d(self, *args, **kwargs):
    """`function_dict['separable_conv2d']` with the pointwise conv's width.

    Only the pointwise convolution (`.../separable_conv2d`) has a width to
    set; with num_outputs None the function builds the depthwise part only.

    Args:
      *args: inputs, num_outputs, kernel_size, ...
      **kwargs: keyword arguments of the function.

    Returns:
      The function's output, or VANISHED.
    """
    fn, suffix = self._get_function_and_suffix('separable_conv2d')
    kwarg_name = _NUM_OUTPUTS_KWARGS.get(fn, _DEFAULT_NUM_OUTPUTS_KWARG)
    if _get_from_args_or_kwargs(kwarg_name, 1, args, kwargs, False) is None:
      logging.warning('separable_conv2d called with %s=None: only its '
                      'depthwise convolution is built.', kwarg_name)
      kwargs[kwarg_name] = None
    return self._mask(fn, suffix, *args, **kwargs)

  def concat(self, *args, **kwargs):
    """`function_dict['concat']` of the inputs that did not vanish."""
    return self._pass_through_mask_list('concat', 'values', *args, **kwargs)

  def add_n(self, *args, **kwargs):
    """`function_dict['add_n']` of the inputs that did not vanish."""
    return self._pass_through_mask_list('add_n', 'inputs', *args, **kwargs)

  @tf_slim.add_arg_scope
  def avg_pool2d(self, *args, **kwargs):
    """`function_dict['avg_pool2d']`, or VANISHED for a vanished input."""
    return self._pass_through_mask(
        self._get_function('avg_pool2d'), *args, **kwargs)

  @tf_slim.add_arg_scope
  def max_pool2d(self, *args, **kwargs):
    """`function_dict['max_pool2d']`, or VANISHED for a vanished input."""
    return self._pass_through_mask(
        self._get_function('max_pool2d'), *args, **kwargs)

  @tf_slim.add_arg_scope
  def batch_norm(self, *args, **kwargs):
    """`function_dict['batch_norm']`, or VANISHED for a vanished input."""
    return self._pass_through_mask(
        self._get_function('batch_norm'), *args, **kwargs)

  def _get_function(self, key):
    if key not in self._function_dict:
      raise errors.KeyLookupError(
          'Function %r is not in this ConfigurableOps function_dict (it has '
          '%s). Pass function_dict=get_function_dict({%r: ...}) to add it to '
          'the defaults.' % (key, sorted(self._function_dict), key))
    return self._function_dict[key]

  def _get_function_and_suffix(self, key):
    return self._get_function(key), self._suffix_dict[key]

  def _op_scope(self, function, kwargs):
    """The full scope of the layer a call creates (see `_mask`)."""
    current_scope = tf.compat.v1.get_default_graph().get_name_scope()
    if current_scope and not current_scope.endswith('/'):
      current_scope += '/'
    op_scope = kwargs.get('scope') or kwargs.get('name')
    if op_scope:
      if op_scope.endswith('/'):
        raise errors.InvalidArgumentError(
            'Scope %r of %s ends with "/", which makes its op names '
            'unpredictable. Drop the trailing "/".' % (
                op_scope, _get_function_name(function)))
      return current_scope + op_scope
    if function not in _OP_SCOPE_DEFAULTS:
      raise errors.InvalidArgumentError(
          'No `scope` or `name` given to %s, whose default scope '
          'ConfigurableOps does not know. Pass scope=... to name the op.' %
          _get_function_name(function))
    # Layer functions number repeated default scopes: Conv, Conv_1, ...
    full_scope = current_scope + _OP_SCOPE_DEFAULTS[function]
    count = self._scope_counts.get(full_scope, 0)
    self._scope_counts[full_scope] = count + 1
    return full_scope if count == 0 else '%s_%d' % (full_scope, count)

  def _mask(self, function, suffix, *args, **kwargs):
    """Calls `function(inputs, width, *args[2:], **kwargs)`.

    The width is the parameterization's for `<scope>/<suffix>`, or the
    fallback. `inputs` is args[0] or kwargs['inputs'] and `num_outputs` (or
    its tf.layers name) args[1] or a keyword argument.

    Returns:
      The function's output, or VANISHED (without creating ops) when the
      input vanished or the width is 0.

    Raises:
      InvalidArgumentError: for a scope ending in '/', or no scope for a
        function without a known default scope.
      KeyLookupError: if the fallback rule is strict and the op is not in
        the parameterization.
    """
    inputs = _get_from_args_or_kwargs('inputs', 0, args, kwargs)
    kwargs.pop('inputs', None)
    if is_vanished(inputs):
      return VANISHED
    op_name = self._op_scope(function, kwargs) + '/' + suffix
    num_outputs = self._parse_num_outputs(
        op_name, _NUM_OUTPUTS_KWARGS.get(function, _DEFAULT_NUM_OUTPUTS_KWARG),
        args, kwargs)
    self._insert_to_constructed_ops(op_name, num_outputs)
    if num_outputs == 0:
      return VANISHED
    return function(inputs, num_outputs, *args[2:], **kwargs)

  def _parse_num_outputs(self, op_name, num_outputs_kwarg_name, args, kwargs):
    """The width of `op_name`; removes `num_outputs` from kwargs."""
    if self._strict and op_name not in self._parameterization:
      raise errors.KeyLookupError(
          'op_name "%s" not found in parameterization (fallback_rule is '
          'strict). Add it to the parameterization or use the pass_through '
          'or zero fallback rule.' % op_name)
    base_num_outputs = _get_from_args_or_kwargs(
        num_outputs_kwarg_name, 1, args, kwargs)
    kwargs.pop(num_outputs_kwarg_name, None)
    default = 0 if self._default_to_zero else base_num_outputs
    return self._parameterization.get(op_name, default)

  def _insert_to_constructed_ops(self, name, num_outputs):
    if name in self._constructed_ops:
      logging.warning('ConfigurableOps: op %s was constructed twice; '
                      'constructed_ops keeps the last width.', name)
    self._constructed_ops[name] = num_outputs

  def _pass_through_mask_list(self, fn_name, inputs_name, *args, **kwargs):
    """Calls function_dict[fn_name] on the list input without vanished items.

    Raises:
      InvalidArgumentError: if the list is not given (as args[0] or as
        `inputs_name`).
    """
    fn = self._get_function(fn_name)
    if args:
      inputs, args = args[0], args[1:]
    elif inputs_name in kwargs:
      inputs = kwargs.pop(inputs_name)
    else:
      raise errors.InvalidArgumentError(
          'ConfigurableOps.%s: missing `%s` argument (the list of tensors).'
          % (fn_name, inputs_name))
    inputs = [t for t in inputs if not is_vanished(t)]
    return fn(inputs, *args, **kwargs) if inputs else VANISHED

  def _pass_through_mask(self, layer_fn, *args, **kwargs):
    inputs = _get_from_args_or_kwargs('inputs', 0, args, kwargs)
    return VANISHED if is_vanished(inputs) else layer_fn(*args, **kwargs)


def hijack_module_functions(configurable_ops, module):
  """Replaces a module's layer-function aliases with `configurable_ops`'s.

  For each name of `DEFAULT_FUNCTION_DICT` (`conv2d`, `fully_connected`,
  `concat` ...) that `module` has as an attribute, sets it to the method of
  `configurable_ops`, so code in `module` calling `conv2d(...)` through that
  alias builds configurable layers. Calls that name the library directly
  (`tf_slim.layers.conv2d(...)`) are not affected. Undo with
  `recover_module_functions`.

  Args:
    configurable_ops: a ConfigurableOps.
    module: a module (or any object) whose attributes are replaced.

  Returns:
    {attribute name: original value} of the replaced attributes.
  """
  originals = {}
  for name in DEFAULT_FUNCTION_DICT:
    if hasattr(module, name):
      originals[name] = getattr(module, name)
      setattr(module, name, getattr(configurable_ops, name))
  return originals


def recover_module_functions(originals, module):
  """Restores attributes replaced by a hijack function.

  Args:
    originals: {attribute name: value}, as returned by
      `hijack_module_functions` or `hijack_keras_module`.
    module: the module they were replaced in.
  """
  for name, original in originals.items():
    setattr(module, name, original)


def decorator_from_parameterization_file(
    filename, fallback_rule=FallbackRule.pass_through, **kwargs):
  """A ConfigurableOps with the parameterization of a JSON file.

  Args:
    filename: a JSON {op name: width} file (local or `tf.io.gfile`), as
      `structure_exporter` writes it.
    fallback_rule: a `FallbackRule` or its name.
    **kwargs: other ConfigurableOps arguments (`function_dict`).

  Returns:
    The ConfigurableOps.

  Raises:
    InvalidArgumentError: if the file is not JSON or not a parameterization.
  """
  return ConfigurableOps(
      parameterization=common.read_parameterization_file(filename),
      fallback_rule=fallback_rule, **kwargs)
