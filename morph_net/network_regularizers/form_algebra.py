"""The cost algebra of one op, independent of the tensor library.

`cost_forms` writes every built-in resource of an op as a form in its alive
input and output channel counts (see its docstring for the algebra); this
module holds the forms and their evaluation without importing TensorFlow, so
that two engines share them:

* the graph engine (`cost_forms`, `cost_calculator`) evaluates them on
  `tf.Tensor`s with `TF_MATH`, defined in `cost_forms`;
* the layer-level engine (`morph_net.keras.layer_regularizer`), which runs
  on every Keras 3 backend, evaluates them on backend tensors with
  `keras_math()`.

A `Math` bundles the five tensor operations the evaluation needs; where
every argument is a Python number, no tensor operation runs at all.
"""

import collections
import math

__all__ = ['Form', 'Math', 'scale', 'aligned', 'cost_and_term', 'evaluate',
           'keras_math', 'is_number']

Form = collections.namedtuple(
    'Form', ['bilinear', 'inputs', 'outputs', 'depthwise', 'overhead',
             'multiple', 'misalignment'], defaults=(None, None, None))

# The tensor operations the evaluation needs, for arguments that are not all
# Python numbers:
#   ceil(x), to_float32(x), where(condition, a, b), maximum(a, b) and
#   any_alive(count) (1 where count > 0 else 0, of the count's dtype).
Math = collections.namedtuple(
    'Math', ['ceil', 'to_float32', 'where', 'maximum', 'any_alive'])


def is_number(value) -> bool:
  """Whether `value` is a Python number (not a tensor)."""
  return isinstance(value, (int, float))


def scale(form: Form, factor) -> Form:
  """The form times a constant (its overhead too)."""
  overhead = None if form.overhead is None else form.overhead * factor
  return form._replace(bilinear=form.bilinear * factor,
                       inputs=form.inputs * factor,
                       outputs=form.outputs * factor, overhead=overhead)


def aligned(count, multiple, tensor_math: Math):
  """`count` rounded up to a multiple of `multiple` (None or 1: as is).

  Args:
    count: a channel count: a number, or a float tensor.
    multiple: an integer >= 1, or None.
    tensor_math: the tensor operations, for a tensor count.

  Returns:
    ceil(count / multiple) x multiple, of the count's type.
  """
  if not multiple or multiple == 1:
    return count
  if is_number(count):
    return float(math.ceil(count / multiple - 1e-9) * multiple)
  return tensor_math.ceil(count / multiple) * multiple


def _any_alive(num_alive, tensor_math: Math):
  if is_number(num_alive):
    return 1.0 if num_alive > 0 else 0.0
  return tensor_math.any_alive(num_alive)


def _misalignment_factor(form: Form, counts, aligned_counts,
                         tensor_math: Math):
  """1 + p when a count is not a multiple of the form's multiple (is
  below its aligned count), else 1: a number, or a tensor of the counts'
  dtype."""
  if not form.misalignment or not form.multiple or form.multiple == 1:
    return 1.0
  if all(is_number(c) for c in counts + aligned_counts):
    off = any(c < a for c, a in zip(counts, aligned_counts))
    return 1.0 + form.misalignment * (1.0 if off else 0.0)
  flags = [tensor_math.where(c < a, 1.0, 0.0) if not (
      is_number(c) and is_number(a)) else (1.0 if c < a else 0.0)
           for c, a in zip(counts, aligned_counts)]
  flag = flags[0]
  for other in flags[1:]:
    flag = tensor_math.maximum(tensor_math.to_float32(flag),
                               tensor_math.to_float32(other))
  return 1.0 + form.misalignment * tensor_math.to_float32(flag)


def cost_and_term(form: Form, num_alive_inputs, num_alive_outputs,
                  reg_inputs, reg_outputs, tensor_math: Math):
  """(cost, term) of one form (see `cost_forms` for the algebra; a
  misaligned count multiplies the multilinear parts of the cost by
  1 + `misalignment`, not the overhead nor the term)."""
  cost_in = aligned(num_alive_inputs, form.multiple, tensor_math)
  cost_out = aligned(num_alive_outputs, form.multiple, tensor_math)
  if form.depthwise:
    cost = form.bilinear * cost_out
    term = form.bilinear * (reg_inputs + reg_outputs)
  else:
    cost = form.bilinear * cost_in * cost_out
    term = form.bilinear * (num_alive_inputs * reg_outputs +
                            num_alive_outputs * reg_inputs)
  cost += form.inputs * cost_in + form.outputs * cost_out
  term += form.inputs * reg_inputs + form.outputs * reg_outputs
  factor = _misalignment_factor(form, (num_alive_inputs, num_alive_outputs),
                                (cost_in, cost_out), tensor_math)
  if not is_number(factor) or factor != 1.0:
    cost = (tensor_math.to_float32(cost) * factor if not is_number(factor)
            else cost * factor)
  if form.overhead is not None:
    cost = (cost + form.overhead) * _any_alive(num_alive_outputs,
                                               tensor_math)
  return cost, term


def evaluate(forms, is_regularization, num_alive_inputs, num_alive_outputs,
             reg_inputs, reg_outputs, tensor_math: Math):
  """The cost (or term) of an op whose resource is the max of `forms`.

  Args:
    forms: a sequence of Form; empty for an op without this resource.
    is_regularization: return the term of the largest form, not its cost.
    num_alive_inputs, num_alive_outputs, reg_inputs, reg_outputs: numbers or
      scalar tensors.
    tensor_math: the tensor operations (`Math`).

  Returns:
    0.0 for no forms; a Python number when everything is a number; else a
    float32 scalar tensor.
  """
  best_cost, best_term = None, 0.0
  for form in forms:
    cost, term = cost_and_term(form, num_alive_inputs, num_alive_outputs,
                               reg_inputs, reg_outputs, tensor_math)
    if best_cost is None:
      best_cost, best_term = cost, term
    elif is_number(cost) and is_number(best_cost):
      if cost > best_cost:
        best_cost, best_term = cost, term
    else:
      cost = tensor_math.to_float32(cost)
      best_cost = tensor_math.to_float32(best_cost)
      best_term = tensor_math.where(cost > best_cost,
                                    tensor_math.to_float32(term),
                                    tensor_math.to_float32(best_term))
      best_cost = tensor_math.maximum(cost, best_cost)
  if best_cost is None:
    return 0.0
  return best_term if is_regularization else best_cost


def keras_math() -> Math:
  """The `Math` of `keras.ops`, for tensors of the Keras backend in use.

  Its maximum is `where(a >= b, a, b)`: at a tie the gradient goes to the
  first argument on every backend (`keras.ops.maximum` splits it 0.5 / 0.5
  on JAX and PyTorch, and gives it all to the first on TensorFlow).
  """
  from keras import ops  # pylint: disable=g-import-not-at-top

  def to_float32(value):
    return ops.cast(ops.convert_to_tensor(value), 'float32')

  def maximum(a, b):
    return ops.where(a >= b, a, b)

  def any_alive(count):
    return ops.cast(count > 0, count.dtype)

  return Math(ceil=ops.ceil, to_float32=to_float32, where=ops.where,
              maximum=maximum, any_alive=any_alive)
