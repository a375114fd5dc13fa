"""structure_files: the JSON {name: width} format, read and written."""

import pytest

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
