r"""A small ViT on Fashion-MNIST trained to half its FLOPs.

  python3 benchmarks/vit_budget.py --output_dir=/tmp/vit_budget

The model: 4x4 patches of the 28x28 image (a Conv2D with stride 4) give 49
tokens of `--hidden` channels; a learned position embedding (an `Embedding`
of the position ids 0..48, fed as a second model input, added to the
tokens); `--blocks` pre-norm encoder blocks (RMSNormalization or
LayerNormalization, MultiHeadAttention with `--heads` heads of key_dim
hidden / heads, an Add residual, an FFN of `--ffn_ratio` x hidden with gelu
and an Add residual); a final norm, mean pooling over the tokens and a Dense
head of 10 logits.

Three trainings, one at a time, each cached as JSON under
`<output_dir>/runs/` (skipped when present):

- `baseline`: the ViT trained with Adam for `--epochs` epochs, no
  regularizer: its test accuracy.
- `regularized`: the same ViT (same seed) with a GroupLasso FLOPs
  regularizer (`--threshold`; `--hidden_grouping` sets
  `morph_net.keras.hidden_size.GROUPING`, `--hidden_gradient_scale`
  `hidden_size.GRADIENT_SCALE`) and `CostTargetCallback(regularizer,
  --target x initial FLOPs)` for `--epochs` epochs: the FLOPs at every
  epoch end, the alive heads per attention layer, the hidden size and the
  FFN widths, and its test accuracy.
- `rebuilt`: `rebuild(model, regularizer, transfer_weights=True)`: the cost
  a fresh regularizer reports on it, its test accuracy before fine-tuning
  and after `--finetune_epochs` epochs of fine-tuning (Adam, no
  regularizer).

The Markdown table of the numbers is printed and written to
`<output_dir>/table.md`.
"""

import json
import os
import sys
import time

if __package__ in (None, ''):  # Run as a script: the repository's packages.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
from absl import logging
import numpy as np

FLAGS = flags.FLAGS

PATCH = 4
TOKENS = (28 // PATCH) ** 2


def define_flags():
  flags.DEFINE_string('output_dir', '/tmp/morph_net_vit_budget',
                      'Where runs are cached and the table is written.')
  flags.DEFINE_integer('train_examples', 6000, 'Training images.')
  flags.DEFINE_integer('test_examples', 10000, 'Test images.')
  flags.DEFINE_integer('batch_size', 64, 'Batch size.')
  flags.DEFINE_integer('epochs', 6, 'Epochs of the baseline and of the '
                       'regularized training.')
  flags.DEFINE_integer('finetune_epochs', 2, 'Epochs of fine-tuning of the '
                       'rebuilt model.')
  flags.DEFINE_float('learning_rate', 3e-3, 'Adam learning rate.')
  flags.DEFINE_float('threshold', 6e-3, 'Alive threshold of the group-lasso '
                     'norms (about twice the learning rate).')
  flags.DEFINE_float('target', 0.5, 'Target fraction of the initial FLOPs.')
  flags.DEFINE_integer('seed', 0, 'Seed.')
  flags.DEFINE_integer('hidden', 48, 'Hidden size.')
  flags.DEFINE_integer('heads', 4, 'Attention heads per block.')
  flags.DEFINE_integer('ffn_ratio', 2, 'FFN width / hidden size.')
  flags.DEFINE_integer('blocks', 2, 'Encoder blocks.')
  flags.DEFINE_enum('norm', 'rms', ['rms', 'layer'], 'RMSNormalization '
                    '(narrowed exactly) or LayerNormalization.')
  flags.DEFINE_enum('hidden_grouping', 'rms', ['rms', 'l2'],
                    'How a hidden channel\'s weights make its group-lasso '
                    'value (morph_net.keras.hidden_size.GROUPING): one root '
                    'mean square over all of them, or one per member op '
                    'combined by their L2 norm.')
  flags.DEFINE_float('hidden_gradient_scale', 1.0,
                     'Multiplier of the gradient of a hidden channel\'s '
                     'value (morph_net.keras.hidden_size.GRADIENT_SCALE; '
                     'values and alive channels unchanged).')


# ----------------------------------------------------------------- model.


def build_model(hidden: int = 48, heads: int = 4, ffn_ratio: int = 2,
                blocks: int = 2, norm: str = 'rms'):
  """The ViT: inputs (images [N, 28, 28, 1], position ids [N, 49])."""
  import keras  # pylint: disable=g-import-not-at-top
  layers = keras.layers

  def normalization(name):
    if norm == 'rms':
      return layers.RMSNormalization(name=name)
    return layers.LayerNormalization(name=name)

  image = keras.Input((28, 28, 1), name='image')
  position = keras.Input((TOKENS,), dtype='int32', name='position')
  h = layers.Conv2D(hidden, PATCH, strides=PATCH, name='patch_embed')(image)
  h = layers.Reshape((TOKENS, hidden), name='tokens')(h)
  h = layers.Add(name='add_pos')(
      [h, layers.Embedding(TOKENS, hidden, name='pos_embed')(position)])
  for i in range(blocks):
    x = normalization('norm1_%d' % i)(h)
    x = layers.MultiHeadAttention(heads, hidden // heads,
                                  name='mha%d' % i)(x, x)
    h = layers.Add(name='add1_%d' % i)([h, x])
    x = normalization('norm2_%d' % i)(h)
    x = layers.Dense(ffn_ratio * hidden, activation='gelu',
                     name='ffn1_%d' % i)(x)
    x = layers.Dense(hidden, name='ffn2_%d' % i)(x)
    h = layers.Add(name='add2_%d' % i)([h, x])
  h = normalization('norm_out')(h)
  h = layers.GlobalAveragePooling1D(name='pool')(h)
  return keras.Model([image, position], layers.Dense(10, name='logits')(h),
                     name='vit')


def _model():
  return build_model(FLAGS.hidden, FLAGS.heads, FLAGS.ffn_ratio,
                     FLAGS.blocks, FLAGS.norm)


def load_data(train_examples: int, test_examples: int):
  """Fashion-MNIST in [0, 1] with the position ids as a second input."""
  from benchmarks import networks  # pylint: disable=g-import-not-at-top
  from examples import datasets  # pylint: disable=g-import-not-at-top
  (x_train, y_train), (x_test, y_test) = datasets.load_dataset(
      'fashion_mnist', datasets.FASHION_MNIST_DIR)

  def prepare(images):
    images = networks.unit_images(images)
    positions = np.tile(np.arange(TOKENS, dtype='int32'), (len(images), 1))
    return [images, positions]

  return ((prepare(x_train[:train_examples]), y_train[:train_examples]),
          (prepare(x_test[:test_examples]), y_test[:test_examples]))


# ------------------------------------------------------------------ runs.


def _regularizer(model):
  from morph_net import keras as morph_keras  # pylint: disable=g-import-not-at-top
  from morph_net.network_regularizers import flop_regularizer  # pylint: disable=g-import-not-at-top
  return morph_keras.ModelRegularizer(
      model, flop_regularizer.GroupLassoFlopsRegularizer,
      threshold=FLAGS.threshold)


def _loss():
  import keras  # pylint: disable=g-import-not-at-top
  return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _accuracy(model, x_test, y_test) -> float:
  predictions = model.predict(x_test, batch_size=500, verbose=0)
  return float((predictions.argmax(-1) == y_test).mean())


def _config():
  return {name: getattr(FLAGS, name) for name in (
      'train_examples', 'test_examples', 'batch_size', 'epochs',
      'learning_rate', 'seed', 'hidden', 'heads', 'ffn_ratio', 'blocks',
      'norm')}


def train_baseline(data):
  """The ViT trained without a regularizer; returns its record."""
  import keras  # pylint: disable=g-import-not-at-top
  (x_train, y_train), (x_test, y_test) = data
  keras.utils.set_random_seed(FLAGS.seed)
  model = _model()
  model.compile(optimizer=keras.optimizers.Adam(FLAGS.learning_rate),
                loss=_loss())
  start = time.time()
  model.fit(x_train, y_train, batch_size=FLAGS.batch_size,
            epochs=FLAGS.epochs, verbose=0)
  return dict(_config(), train_seconds=time.time() - start,
              accuracy=_accuracy(model, x_test, y_test))


def train_regularized(data, weights_path):
  """The ViT trained to the target; returns its record."""
  import keras  # pylint: disable=g-import-not-at-top
  from morph_net import keras as morph_keras  # pylint: disable=g-import-not-at-top
  (x_train, y_train), (x_test, y_test) = data
  keras.utils.set_random_seed(FLAGS.seed)
  model = _model()
  regularizer = _regularizer(model)
  initial = float(regularizer.initial_cost)
  target = FLAGS.target * initial
  callback = morph_keras.CostTargetCallback(regularizer, target)
  model.compile(optimizer=keras.optimizers.Adam(FLAGS.learning_rate),
                loss=regularizer.wrap_loss(_loss()))
  costs, strengths, start = [], [], time.time()
  for epoch in range(FLAGS.epochs):
    model.fit(x_train, y_train, batch_size=FLAGS.batch_size,
              epochs=epoch + 1, initial_epoch=epoch, verbose=0,
              callbacks=[callback])
    costs.append(float(regularizer.cost()))
    strengths.append(float(callback.controller.strength))
    logging.info('epoch %d: %.1f%% of target, strength %.3g', epoch + 1,
                 100 * costs[-1] / target, strengths[-1])
  seconds = time.time() - start
  model.save_weights(weights_path)
  return dict(_config(), threshold=FLAGS.threshold, target=FLAGS.target,
              initial_cost=initial, target_cost=target, epoch_costs=costs,
              epoch_strengths=strengths, final_cost=costs[-1],
              train_seconds=seconds,
              alive={k: int(v) for k, v in
                     regularizer.alive_counts().items()},
              accuracy=_accuracy(model, x_test, y_test))


def rebuild_and_finetune(data, weights_path):
  """Rebuilds the regularized ViT, evaluates and fine-tunes it."""
  import keras  # pylint: disable=g-import-not-at-top
  from morph_net.surgery import rebuild  # pylint: disable=g-import-not-at-top
  (x_train, y_train), (x_test, y_test) = data
  model = _model()
  model.load_weights(weights_path)
  regularizer = _regularizer(model)
  final = float(regularizer.cost())
  small = rebuild.rebuild(model, regularizer, transfer_weights=True)
  record = {'final_cost_reloaded': final,
            'rebuilt_cost': float(_regularizer(small).cost()),
            'rebuilt_parameters': int(small.count_params()),
            'parameters': int(model.count_params()),
            'rebuilt_accuracy': _accuracy(small, x_test, y_test)}
  keras.utils.set_random_seed(FLAGS.seed)
  small.compile(optimizer=keras.optimizers.Adam(FLAGS.learning_rate),
                loss=_loss())
  start = time.time()
  small.fit(x_train, y_train, batch_size=FLAGS.batch_size,
            epochs=FLAGS.finetune_epochs, verbose=0)
  record.update(finetune_epochs=FLAGS.finetune_epochs,
                finetune_seconds=time.time() - start,
                finetuned_accuracy=_accuracy(small, x_test, y_test))
  return record


# ----------------------------------------------------------------- table.


def summary(baseline, regularized, rebuilt, blocks: int) -> str:
  """A Markdown table of the numbers."""
  alive = regularized['alive']
  rows = [
      ('initial FLOPs', '%d' % regularized['initial_cost']),
      ('target FLOPs (%.2f)' % regularized['target'],
       '%d' % regularized['target_cost']),
      ('final FLOPs', '%d (%.1f%% of the target)' % (
          regularized['final_cost'],
          100 * regularized['final_cost'] / regularized['target_cost'])),
      ('FLOPs per epoch (% of the target)', ', '.join(
          '%.1f' % (100 * c / regularized['target_cost'])
          for c in regularized['epoch_costs'])),
      ('rebuilt FLOPs (fresh regularizer)',
       '%d (%s)' % (rebuilt['rebuilt_cost'],
                    'equal' if rebuilt['rebuilt_cost'] ==
                    rebuilt['final_cost_reloaded'] else 'NOT equal to %d'
                    % rebuilt['final_cost_reloaded'])),
      ('parameters', '%d -> %d' % (rebuilt['parameters'],
                                   rebuilt['rebuilt_parameters'])),
      ('hidden size', '%d -> %d' % (regularized['hidden'],
                                    alive['patch_embed'])),
      ('alive heads', ', '.join(
          'mha%d %d/%d' % (i, alive['mha%d' % i], regularized['heads'])
          for i in range(blocks))),
      ('FFN widths', ', '.join(
          'ffn1_%d %d/%d' % (i, alive['ffn1_%d' % i],
                             regularized['ffn_ratio'] * regularized['hidden'])
          for i in range(blocks))),
      ('baseline accuracy (no regularizer, %d epochs)' % baseline['epochs'],
       '%.4f' % baseline['accuracy']),
      ('regularized accuracy (%d epochs)' % regularized['epochs'],
       '%.4f' % regularized['accuracy']),
      ('rebuilt, not fine-tuned', '%.4f' % rebuilt['rebuilt_accuracy']),
      ('rebuilt, fine-tuned %d epochs' % rebuilt['finetune_epochs'],
       '%.4f' % rebuilt['finetuned_accuracy']),
      ('train seconds (baseline, regularized, fine-tuning)',
       '%.0f, %.0f, %.0f' % (baseline['train_seconds'],
                             regularized['train_seconds'],
                             rebuilt['finetune_seconds'])),
  ]
  lines = ['| quantity | value |', '|---|---|']
  lines += ['| %s | %s |' % row for row in rows]
  return '\n'.join(lines)


def _cached(path, compute):
  from morph_net.structure import atomic_file  # pylint: disable=g-import-not-at-top
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  record = compute()
  atomic_file.write_json_atomically(record, path)
  return record


def main(argv):
  del argv
  from morph_net.structure import atomic_file  # pylint: disable=g-import-not-at-top
  runs_dir = os.path.join(FLAGS.output_dir, 'runs')
  os.makedirs(runs_dir, exist_ok=True)
  # The baseline does not depend on the regularizer's flags.
  base = 'vit_h%d_n%d_e%d_lr%g_%s_%d' % (FLAGS.hidden, FLAGS.train_examples,
                                        FLAGS.epochs, FLAGS.learning_rate,
                                        FLAGS.norm, FLAGS.seed)
  key = '%s_t%g_f%g' % (base, FLAGS.threshold, FLAGS.target)
  if FLAGS.hidden_grouping != 'rms':
    key += '_g' + FLAGS.hidden_grouping
  if FLAGS.hidden_gradient_scale != 1.0:
    key += '_s%g' % FLAGS.hidden_gradient_scale
  from morph_net.keras import hidden_size  # pylint: disable=g-import-not-at-top
  hidden_size.GROUPING = FLAGS.hidden_grouping
  hidden_size.GRADIENT_SCALE = FLAGS.hidden_gradient_scale
  path = lambda stage: os.path.join(runs_dir, '%s_%s.json' % (
      base if stage == 'baseline' else key, stage))
  weights = os.path.join(runs_dir, key + '_regularized.weights.h5')
  data = load_data(FLAGS.train_examples, FLAGS.test_examples)
  regularized = _cached(path('regularized'),
                        lambda: train_regularized(data, weights))
  rebuilt = _cached(path('rebuilt'), lambda: rebuild_and_finetune(data,
                                                                  weights))
  baseline = _cached(path('baseline'), lambda: train_baseline(data))
  text = summary(baseline, regularized, rebuilt, FLAGS.blocks)
  print(text)
  atomic_file.write_text_atomically(
      text + '\n', os.path.join(FLAGS.output_dir, 'table.md'))


if __name__ == '__main__':
  define_flags()
  app.run(main)
