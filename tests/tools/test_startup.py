"""Quiet start of the command-line programs: startup.quiet_start and run."""

import os
import subprocess
import sys
import textwrap

import pytest

from morph_net.tools import startup

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# Lines TensorFlow 2.21 writes at its start on a machine without a GPU.
_NOTES = [
    'WARNING: All log messages before absl::InitializeLog() is called are '
    'written to STDERR\n',
    'I0000 00:00:1796535781.163628   13905 cudart_stub.cc:31] Could not find '
    'cuda drivers on your machine, GPU will not be used.\n',
    'I0000 00:00:1796535781.268137   13905 cpu_feature_guard.cc:227] This '
    'TensorFlow binary is optimized to use available CPU instructions in '
    'performance-critical operations.\n',
    'To enable the following instructions: AVX2 FMA, in other operations, '
    'rebuild TensorFlow with the appropriate compiler flags.\n',
    'E0000 00:00:1796535791.451261   13905 cuda_platform.cc:52] failed call '
    'to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR '
    '(303)\n',
    'I0000 00:00:1796619693.146654   30353 port.cc:153] oneDNN custom '
    'operations are on. You may see slightly different numerical results '
    'due to floating-point round-off errors from different computation '
    'orders. To turn them off, set the environment variable '
    '`TF_ENABLE_ONEDNN_OPTS=0`.\n',
]


@pytest.mark.parametrize('argv,requested', [
    (['prog'], False),
    (['prog', '--epochs=1', '--save_model=v.keras'], False),
    (['prog', '--verbosity=0'], True),
    (['prog', '--verbosity', '1'], True),
    (['prog', '-v', '0'], True),
    (['prog', '-v=1'], True),
    (['prog', '--v=0'], True),
    (['prog', '--', '--verbosity=0'], False),  # An argument, not a flag.
    (['--verbosity=0'], False),  # argv[0] is the program.
])
def test_verbosity_requested(argv, requested):
  assert startup.verbosity_requested(argv) is requested


def test_only_the_known_start_up_notes_are_dropped():
  assert [startup.keep_line(line) for line in _NOTES] == [False] * 6
  assert startup.keep_line('W0000 00:00:1.0 1 some_op.cc:1] A real '
                           'warning\n')
  assert startup.keep_line('Traceback (most recent call last):\n')


_SCRIPT = textwrap.dedent('''
    import sys
    from morph_net.tools import startup
    if sys.argv[1] == 'quiet':
      startup.quiet_start()
    sys.stderr.write('a line of my own\\n')
    import tensorflow as tf
    from absl import logging

    def main(argv):
      del argv
      print(logging.get_verbosity(), int(tf.reduce_sum(tf.ones(3))))
      logging.info('an info line')
      logging.warning('a warning line')

    startup.run(main)
    ''')


def _run(*args):
  result = subprocess.run(
      [sys.executable, '-c', _SCRIPT] + list(args), cwd=_ROOT,
      capture_output=True, text=True, timeout=600, check=False,
      env=dict(os.environ, CUDA_VISIBLE_DEVICES='',
               PYTHONPATH=_ROOT + os.pathsep + os.environ.get('PYTHONPATH',
                                                              '')))
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def _notes(stderr):
  return sorted(set(note for note in startup.START_UP_NOTES
                    if note in stderr))


def test_quiet_by_default_and_everything_with_verbosity():
  quiet = _run('quiet')
  assert quiet.stdout == '-1 3\n'  # WARNING: absl's -1.
  assert _notes(quiet.stderr) == []
  assert 'a line of my own' in quiet.stderr
  assert 'a warning line' in quiet.stderr
  assert 'an info line' not in quiet.stderr
  # The same script without quiet_start shows TensorFlow's notes (whichever
  # this machine's TensorFlow writes); --verbosity shows the same ones.
  raw = _run('raw', '--verbosity=0')
  loud = _run('quiet', '--verbosity=0')
  assert loud.stdout == raw.stdout == '0 3\n'  # INFO.
  assert _notes(loud.stderr) == _notes(raw.stderr)
  assert 'an info line' in loud.stderr
