"""A reader grouping a producer's channels before the producer's handler ran.

The Slice, Concat (of ranges), Reshape (see test_reshape_op_handler.py) and
element-wise (an input that is one output of a Split) handlers group their
input's channels directly, whether or not the producer's handler has run.
The producer must still run, to group its own inputs: they queued it only
if it was ungrouped after they had grouped it, that is never, so a
producer none of whose inputs queued it kept its inputs in other groups.

In each graph the source `d` comes first in the graph, so its reader (a
concat) runs the op under test before `a`; relu(a) also feeds the conv
`b`, which has no group when relu(a) runs, so relu's handler groups
with its inputs only and leaves its outputs to their own handlers.
Input: 1 x 2 x 2 x 2 (4 positions); FLOPs of a 1 x 1 conv: 2 x positions
x alive inputs x alive outputs.
"""

import tensorflow as tf

from morph_net.network_regularizers import flop_regularizer
from morph_net.testing import lowering_graphs as lg


def _costs(build):
  manager, (flops,) = lg.graph_costs(
      build, [1, 2, 2, 2], [flop_regularizer.GroupLassoFlopsRegularizer],
      threshold=1e-6)
  ops = {op.name: op for op in manager.ops}

  def group(name, index=0):
    return manager.get_op_group(manager.get_op_slices(ops[name])[index])

  return flops, group


class GroupingOrderTest(tf.test.TestCase):

  def test_slice_run_before_the_add_it_reads(self):
    def build(x):
      d = lg.conv(x, [1, 1, 2, 1], name='d')
      a = tf.nn.relu(lg.conv(x, [1, 1, 2, 2], dead=[1], name='a'))
      b = lg.conv(a, [1, 1, 2, 2], dead=[0, 1], name='b')
      cropped = tf.slice(tf.add(a, b, name='sum'), [0, 0, 0, 0],
                         [1, 1, 2, 2], name='crop')
      joined = tf.concat([cropped, d[:, :1]], 3)
      return lg.conv(joined, [1, 1, 3, 2], name='fc')
    flops, group = _costs(build)
    # The add joins a's group with b's: channel 0 lives in a.
    self.assertIs(group('a'), group('b'))
    self.assertIs(group('a'), group('crop'))
    # d, a: 4 x 2 x 1; b: 4 x 1 x 1; fc: 2 positions x (1 + 1) x 2 (it
    # was 40: b and the cropped channels dead).
    self.assertEqual(2 * 4 * 2 * 1 * 2 + 2 * 4 * 1 * 1 + 2 * 2 * 2 * 2,
                     flops)

  def test_concat_of_split_outputs_run_before_the_split(self):
    flops, group = _costs(_split_graph(
        lambda d, first, second: tf.concat([second, first, d], 3), 3))
    for index in (0, 1):
      self.assertIs(group('relu', index), group('split', index))
    # d, a: 4 x 2 x 1; b: 4 x 1 x 2; fc: 4 x (0 + 1 + 1) x 2 (it was 96:
    # fc read the split's dead channel).
    self.assertEqual(2 * 4 * 2 * 1 * 2 + 2 * 4 * 1 * 2 + 2 * 4 * 2 * 2,
                     flops)

  def test_add_of_split_outputs_run_before_the_split(self):
    flops, group = _costs(_split_graph(
        lambda d, first, second: tf.concat([d, first + second], 3), 2))
    # first + second makes a's two channels one group: channel 1 lives
    # with channel 0.
    for index in (0, 1):
      self.assertIs(group('relu', index), group('split', index))
    self.assertIs(group('relu', 0), group('relu', 1))
    # d: 4 x 2 x 1; a: 4 x 2 x 2; b: 4 x 2 x 2; fc: 4 x (1 + 1) x 2 (it
    # was 80: a and b lost channel 1).
    self.assertEqual(2 * 4 * 2 * 1 + 3 * (2 * 4 * 2 * 2), flops)



def _split_graph(join, joined_channels):
  """A graph builder: d = conv(x) (1 channel), a = relu(conv(x)) (2,
  channel 1 dead), b = conv(a) (2), a split in two; `join(d, first,
  second)` makes fc's input of `joined_channels`; returns fc(join) + b."""
  def build(x):
    d = lg.conv(x, [1, 1, 2, 1], name='d')
    a = tf.nn.relu(lg.conv(x, [1, 1, 2, 2], dead=[1], name='a'),
                   name='relu')
    b = lg.conv(a, [1, 1, 2, 2], name='b')
    first, second = tf.split(a, 2, axis=3, name='split')
    return lg.conv(join(d, first, second), [1, 1, joined_channels, 2],
                   name='fc') + b
  return build

if __name__ == '__main__':
  tf.test.main()
