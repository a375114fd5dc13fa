"""structure_files: the JSON {name: width} format, read and written."""

import pytest

from morph_net import errors
from morph_net.structure import structure_files


def test_read_write_roundtrip_and_bad_file(tmp_path):
  path = str(tmp_path / 'a' / 's.json')
  structure_files.write_structure({'b': 2, 'a': 1}, path)
  assert open(path).read() == '{\n  "a": 1,\n  "b": 2\n}'
  assert structure_files.read_structure(path) == {'a': 1, 'b': 2}
  bad = tmp_path / 'bad.json'
  bad.write_text('[1, 2]')
  with pytest.raises(ValueError, match='not a structure file'):
    structure_files.read_structure(str(bad))


def test_file_that_is_not_json_is_refused(tmp_path):
  path = tmp_path / 'alive'
  path.write_text('conv1: 4')
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'%s is not a structure file: it is not JSON '
                     r'\(Expecting value: line 1 column 1 \(char 0\)\)\. '
                     r'Expected a JSON object \{layer name: integer '
                     r'width\}\.' % path):
    structure_files.read_structure(str(path))
