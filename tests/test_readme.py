"""The README's Python quickstarts run as written."""

import os
import re
import subprocess
import sys

import pytest

_README = os.path.join(os.path.dirname(__file__), '..', 'README.md')


def _python_blocks():
  with open(_README) as f:
    text = f.read()
  return re.findall(r'```python\n(.*?)```', text, re.S)


@pytest.mark.parametrize('index', range(len(_python_blocks())))
def test_readme_python_block_runs(index, tmp_path):
  code = _python_blocks()[index].replace('/tmp/', str(tmp_path) + '/')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
