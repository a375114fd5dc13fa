"""Markdown files tested as documentation: their fenced code blocks.

The rule for README.md (tests/test_readme.py) and the pages of docs/
(tests/test_docs.py): every fenced block is Python, shell or text. Python and
shell blocks run (with /tmp/ moved to a test directory) unless an HTML
comment right above says `<!-- not run: why -->`, where `why` names what
keeps the block from running and, where one exists, the test that runs it
instead. The README's block marked `<!-- main job output: COMMAND -->`
quotes what COMMAND prints (`main_job_output` runs it on a tiny budget and
`shape` matches its lines).

The functions take the repository root and file paths from their callers,
so each test file names the files it reads.
"""

import os
import re
import subprocess
import sys

BLOCK = re.compile(
    r'(?:<!-- (not run|main job output): *(.*?) *-->\n)?```(\w*)\n(.*?)```',
    re.S)
LANGUAGES = ('python', 'sh', 'text')
# The main job on a tiny budget (later flags override the README's).
TINY = ['--epochs=1', '--train_examples=256', '--batch_size=64',
        '--finetune_epochs=1', '--latency_repeats=3']
JOB_DIR = 'morph_net_fashion_mnist'


def blocks(path):
  """[(marker, marker text, language, code)] of a markdown file's blocks."""
  with open(path) as f:
    return BLOCK.findall(f.read())


def runnable(path, language):
  """Indices of the blocks of `path` in `language` that run."""
  return [i for i, (marker, _, lang, _) in enumerate(blocks(path))
          if lang == language and marker != 'not run']


def check_known(block_list):
  """Fails unless every block is of a known language and every block that
  does not run says why."""
  for marker, text, language, code in block_list:
    assert language in LANGUAGES, code[:200]
    if marker == 'not run':
      assert language in ('python', 'sh') and len(text) > 20, code[:200]


def env(root):
  """The environment blocks run in: no GPU, the repository importable."""
  return dict(os.environ, CUDA_VISIBLE_DEVICES='',
              PYTHONPATH=root + os.pathsep + os.environ.get('PYTHONPATH', ''))


def main_job_block(path):
  """The one block of `path` quoting the main job."""
  marked = [b for b in blocks(path) if b[0] == 'main job output']
  assert len(marked) == 1, 'one block quotes the main job'
  return marked[0]


def main_job_command(path, run_dir):
  """The main job's command quoted in `path`, writing under `run_dir`."""
  return main_job_block(path)[1].replace('/tmp/', str(run_dir) + '/').split()


def main_job_output(command, root, run_dir):
  """Runs the main job `command` on a tiny budget; its stdout."""
  result = subprocess.run(
      [sys.executable] + command[1:] + TINY +
      ['--output_dir=%s/%s' % (run_dir, JOB_DIR)], cwd=root, env=env(root),
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def uses_main_job(code):
  """Whether a block reads what the main job wrote."""
  return JOB_DIR in code


def in_run_dir(code, run_dir):
  """The block's code with /tmp/ moved to `run_dir`."""
  return code.replace('/tmp/', str(run_dir) + '/')


def run_python(code, root):
  """Runs a Python block in the repository; fails with its stderr."""
  result = subprocess.run([sys.executable, '-c', code], cwd=root,
                          env=env(root), capture_output=True, text=True,
                          timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]


def run_shell(code, root):
  """Runs a shell block (bash -e -o pipefail); fails with its stderr."""
  result = subprocess.run(['bash', '-e', '-o', 'pipefail', '-c', code],
                          cwd=root, env=env(root), capture_output=True,
                          text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]


_NUMBER = r'-?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?:ms|us|s)?'
_TOKEN = re.compile(r'(/\S+)|(%s)' % _NUMBER)


def shape(line):
  """A regex matching `line` with other numbers, times and paths."""
  parts, end = [], 0
  for match in _TOKEN.finditer(line):
    parts.append(re.escape(line[end:match.start()]))
    parts.append(r'\S+' if match.group(1) else _NUMBER)
    end = match.end()
  parts.append(re.escape(line[end:]))
  return re.compile(''.join(parts) + '$')
