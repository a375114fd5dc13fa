"""What `bazel test` would see, read from the source tree without Bazel.

tests/bazel/test_bazel_build.py uses this to fail in the regular pytest suite
(where Bazel is not installed) when `bazel test --config=offline //tests/...`
would fail for a reason the BUILD files decide:

- a `tests/**/test_*.py` file that is no test target (a test directory
  without a BUILD file, a glob that misses it);
- a test that opens, runs or imports a repository file (README.md, docs/,
  examples/, benchmarks/, ...) its target does not carry in its runfiles;
- a Bazel command or label in the docs that names no target.

The BUILD files and the `.bzl` files they load are Starlark, which for the
constructs they use (calls, lists, dicts, comprehensions, `def`, string
formatting) is valid Python: they are evaluated with no Python builtins but
Starlark's, and rule functions that record targets. The files a test reads
are found in its sources (and in the repository modules and helpers they
reach): string literals that are repository paths, `os.path.join` of
literals, dotted module names (`python -m examples.x`), imports, and for a
markdown file the test reads, the commands of its runnable code blocks.
"""

import ast
import collections
import fnmatch
import functools
import os
import posixpath
import re

BUILD_NAMES = ('BUILD', 'BUILD.bazel')
# Rules the BUILD files may call; each records a target.
RULES = ('py_library', 'py_binary', 'py_test', 'filegroup', 'genrule',
         'test_suite', 'alias', 'sh_binary', 'sh_test')
TEST_RULES = ('py_test', 'sh_test')
RUNNABLE_RULES = ('py_binary', 'py_test', 'sh_binary', 'sh_test')
# Attributes whose labels bring files into a target's runfiles.
RUNFILES_ATTRS = ('srcs', 'data', 'deps', 'actual')
# A comment on the first line of a statement whose paths are not files the
# test reads (in a Bazel test's runfiles).
NOT_A_READ = 'bazel_guard: ' + 'not a read'
# Files whose Bazel commands (and, in markdown, labels) are checked; fnmatch
# patterns, whose '*' spans directories.
DOC_FILES = (  # bazel_guard: not a read (the source tree, not runfiles)
    'README.md', 'docs/*.md', '.bazelrc', 'scripts/*.sh', '.ci/run', 'BUILD',
    '*/BUILD', 'build_defs/*.bzl')
_SKIP_DIRS = ('.git', '__pycache__', '.pytest_cache')


class BuildError(Exception):
  """A BUILD file Bazel would reject (or one this reader cannot evaluate)."""


class Tree:
  """The files of a source tree; `overrides` {path: text or None} replace
  (or, with None, delete) files without touching the disk."""

  def __init__(self, root, overrides=None):
    self.root = os.path.abspath(root)
    self.overrides = dict(overrides or {})
    self._files = None

  def files(self):
    """Sorted repository-relative paths of every file Bazel would see (not
    .git, bazel-* output links, .pyc files, or directories in .bazelignore)."""
    if self._files is None:
      found = set()
      for path, dirs, names in os.walk(self.root):
        rel = os.path.relpath(path, self.root).replace(os.sep, '/')
        rel = '' if rel == '.' else rel + '/'
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS and not (
            rel == '' and d.startswith('bazel-'))]
        found.update(rel + name for name in names
                     if not name.endswith('.pyc'))
      for path, text in self.overrides.items():
        (found.add if text is not None else found.discard)(path)
      ignored = ()
      if '.bazelignore' in found:
        ignored = tuple(
            line.strip().strip('/') + '/'
            for line in self.read('.bazelignore').splitlines()
            if line.strip() and not line.startswith('#'))
      self._files = sorted(f for f in found
                           if not (ignored and f.startswith(ignored)))
    return self._files

  def isfile(self, path):
    if path in self.overrides:
      return self.overrides[path] is not None
    return os.path.isfile(os.path.join(self.root, path))

  def read(self, path):
    if path in self.overrides:
      if self.overrides[path] is None:
        raise FileNotFoundError(path)
      return self.overrides[path]
    with open(os.path.join(self.root, path), encoding='utf-8') as f:
      return f.read()


class Target:
  """One rule instance: kind, package, name and attributes."""

  def __init__(self, kind, package, name, attrs):
    self.kind, self.package, self.name, self.attrs = (kind, package, name,
                                                      attrs)

  @property
  def label(self):
    return '//%s:%s' % (self.package, self.name)


class _Depset:

  def __init__(self, items=(), **unused):
    self._items = list(dict.fromkeys(items))

  def to_list(self):
    return list(self._items)


def _fail(msg, *unused):
  raise BuildError(str(msg))


def _glob_regex(pattern):
  """A regex for a Bazel glob pattern ('**' spans directories)."""
  segments = pattern.split('/')
  regex = ''
  for i, segment in enumerate(segments):
    last = i == len(segments) - 1
    if segment == '**':
      regex += '.*' if last else '(?:[^/]+/)*'
      continue
    for char in segment:
      regex += {'*': '[^/]*', '?': '[^/]'}.get(char) or re.escape(char)
    regex += '' if last else '/'
  return re.compile(regex + r'\Z')


class Workspace:
  """Every package's targets, from evaluating its BUILD file."""

  def __init__(self, tree):
    self.tree = tree
    self.packages = sorted(posixpath.dirname(f) for f in tree.files()
                           if posixpath.basename(f) in BUILD_NAMES)
    package_set = set(self.packages)
    self.package_files = {p: [] for p in self.packages}
    for f in tree.files():
      owner = posixpath.dirname(f)
      while owner not in package_set and owner:
        owner = posixpath.dirname(owner)
      if owner in package_set:
        self.package_files[owner].append(
            f[len(owner) + 1:] if owner else f)
    self.targets = {}
    self.generated = {}  # label of a genrule output -> its path
    self._bzl = {}
    self._package = None
    for package in self.packages:
      self._evaluate(package)

  # --- evaluation ------------------------------------------------------------

  def build_file(self, package):
    for name in BUILD_NAMES:
      path = posixpath.join(package, name) if package else name
      if self.tree.isfile(path):
        return path
    raise BuildError('no BUILD file in %s' % package)

  def _rule(self, kind):
    def rule(name, **attrs):
      package = self._package
      label = '//%s:%s' % (package, name)
      if label in self.targets:
        raise BuildError('%s: target %s defined twice' % (
            self.build_file(package), label))
      self.targets[label] = Target(kind, package, name, attrs)
      for out in attrs.get('outs', []):
        self.generated['//%s:%s' % (package, out)] = (
            posixpath.join(package, out) if package else out)
    return rule

  def _glob(self, include, exclude=(), allow_empty=True,
            exclude_directories=1):
    del allow_empty, exclude_directories  # Bazel 4.2.3: empty globs are fine.
    return self.glob(self._package, include, exclude)

  def glob(self, package, include, exclude=()):
    """Bazel's glob() in `package`: its files (not those of a subpackage)
    matching an `include` pattern and no `exclude` pattern."""
    files = self.package_files[package]
    keep = [_glob_regex(p) for p in include]
    drop = [_glob_regex(p) for p in exclude]
    return sorted(f for f in files if any(k.match(f) for k in keep)
                  and not any(d.match(f) for d in drop))

  def _native(self):
    namespace = {kind: self._rule(kind) for kind in RULES}
    namespace.update(
        glob=self._glob, package_name=lambda: self._package,
        exports_files=lambda *a, **k: None, package=lambda **k: None,
        licenses=lambda *a, **k: None)
    return type('native', (), {k: staticmethod(v)
                               for k, v in namespace.items()})

  def _globals(self):
    names = dict(
        len=len, list=list, dict=dict, str=str, int=int, bool=bool,
        tuple=tuple, enumerate=enumerate, range=range, sorted=sorted,
        reversed=reversed, zip=zip, any=any, all=all, min=min, max=max,
        hasattr=hasattr, getattr=getattr, type=type, repr=repr,
        print=lambda *a, **k: None, fail=_fail, depset=_Depset)
    return {'__builtins__': names}

  def _load_bzl(self, label, calling_file):
    package, name = self.split(label, posixpath.dirname(calling_file))
    path = posixpath.join(package, name) if package else name
    if path not in self._bzl:
      if not self.tree.isfile(path):
        raise BuildError('%s loads %s: no such file' % (calling_file, label))
      scope = self._globals()
      scope['native'] = self._native()
      scope['load'] = self._loader(path, scope)
      self._exec(path, scope)
      self._bzl[path] = scope
    return self._bzl[path]

  def _loader(self, calling_file, calling_scope):
    def load(label, *symbols, **aliases):
      scope = self._load_bzl(label, calling_file)
      wanted = dict({s: s for s in symbols}, **aliases)
      for local, exported in wanted.items():
        if exported not in scope or exported.startswith('_'):
          raise BuildError('%s: %s does not export %s' % (calling_file, label,
                                                          exported))
        calling_scope[local] = scope[exported]
    return load

  def _exec(self, path, scope):
    try:
      code = compile(self.tree.read(path), path, 'exec')
    except SyntaxError as e:
      raise BuildError('%s:%s: %s' % (path, e.lineno, e.msg)) from e
    try:
      exec(code, scope)  # pylint: disable=exec-used
    except NameError as e:
      raise BuildError('%s: %s (bazel_guard.py knows the rules %s)' % (
          path, e, ', '.join(RULES))) from e

  def _evaluate(self, package):
    self._package = package
    build = self.build_file(package)
    scope = self._globals()
    scope.update({kind: self._rule(kind) for kind in RULES})
    scope.update(glob=self._glob, exports_files=lambda *a, **k: None,
                 package=lambda **k: None, licenses=lambda *a, **k: None)
    scope['load'] = self._loader(build, scope)
    self._exec(build, scope)

  # --- labels and runfiles -----------------------------------------------

  @staticmethod
  def split(label, package):
    """(package, name) of `label` written in `package`."""
    if label.startswith('@'):
      raise ValueError(label)
    if label.startswith('//'):
      package, _, name = label[2:].partition(':')
      return package, name or posixpath.basename(package)
    return package, label[1:] if label.startswith(':') else label

  def resolve(self, label, package=''):
    """('rule', Target), ('file', path) or ('generated', path) of a label."""
    pkg, name = self.split(label, package)
    full = '//%s:%s' % (pkg, name)
    if full in self.targets:
      return 'rule', self.targets[full]
    if full in self.generated:
      return 'generated', self.generated[full]
    if pkg in self.package_files and name in self.package_files[pkg]:
      return 'file', posixpath.join(pkg, name) if pkg else name
    return None, None

  def runfiles(self, label, package=''):
    """Repository paths in the runfiles of `label` (a set)."""
    files, seen = set(), set()
    self._runfiles(label, package, files, seen)
    return files

  def _runfiles(self, label, package, files, seen):
    if label.startswith('@'):
      return  # External repositories are not part of this tree.
    kind, value = self.resolve(label, package)
    if kind is None:
      raise BuildError('%s (in //%s) names no target' % (label, package))
    if kind != 'rule':
      files.add(value)
      return
    if value.label in seen:
      return
    seen.add(value.label)
    for attr in RUNFILES_ATTRS:
      labels = value.attrs.get(attr) or []
      if isinstance(labels, str):
        labels = [labels]
      for item in labels:
        self._runfiles(item, value.package, files, seen)
    for out in value.attrs.get('outs', []):
      files.add(posixpath.join(value.package, out))

  def tests(self):
    return [t for t in self.targets.values() if t.kind in TEST_RULES]


# --- what a test reads -------------------------------------------------------

_FLAG_PREFIX = re.compile(r'^--?[\w-]+=')
_DOTTED = re.compile(r'^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+$')
_MD_BLOCK = re.compile(
    r'(?:<!-- (not run|[\w ]+): *(.*?) *-->\n)?```(\w*)\n(.*?)```', re.S)
_MD_PATH = re.compile(
    r'(?<![\w/.-])((?:[\w.-]+/)+[\w.-]+|[\w-]+\.(?:py|md|gin|sh))')


def _norm(path):
  path = posixpath.normpath(path)
  if path.startswith(('/', '../')) or path in ('.', '..'):
    return None
  return path


class Reads:
  """The repository files each source file opens, runs or imports."""

  def __init__(self, tree):
    self.tree = tree
    self.files = set(tree.files())
    self.directories = {posixpath.dirname(f) for f in self.files}
    for directory in list(self.directories):
      while directory:
        directory = posixpath.dirname(directory)
        self.directories.add(directory)
    self._cache = {}

  def _existing(self, path, directories=True):
    """Files the repository path names: a file, a glob, or (when
    `directories`) the files of a directory but its BUILD files."""
    if path is None:
      return []
    if path in self.files:
      return [path]
    if any(c in path for c in '*?['):
      if any(c in path.split('/')[0] for c in '*?['):
        return []  # '**/*.py' is a pattern, not a place in the tree.
      return [f for f in self.files if fnmatch.fnmatch(f, path)]
    if not directories or path not in self.directories:
      return []
    prefix = path + '/'
    return [f for f in self.files if f.startswith(prefix) and
            posixpath.basename(f) not in BUILD_NAMES]

  def _paths(self, text, directory, directories=True):
    """Files a path names, relative to the root or `directory`."""
    found = []
    for base in ('', directory):
      found += self._existing(_norm(posixpath.join(base, text)), directories)
    return found

  def _module(self, dotted, directory, level=0):
    """Files executed by importing `dotted` (package __init__s, module)."""
    bases = [directory] if level else ['', directory]
    if level:
      for _ in range(level - 1):
        bases = [posixpath.dirname(bases[0])]
    for base in bases:
      parts = dotted.split('.') if dotted else []
      files = []
      path = base
      for i, part in enumerate(parts):
        path = posixpath.join(path, part) if path else part
        init = path + '/__init__.py'
        if i == len(parts) - 1 and path + '.py' in self.files:
          files.append(path + '.py')
        elif init in self.files:
          files.append(init)
        elif path not in self.directories:
          files = None
          break
      if files:
        return files
    return []

  def of_file(self, path):
    """[(repository path, 'file:line')] that the source file reads."""
    if path not in self._cache:
      if path.endswith('.py'):
        self._cache[path] = self._of_python(path)
      elif path.endswith('.md'):
        self._cache[path] = self._of_markdown(path)
      else:
        self._cache[path] = []
    return self._cache[path]

  def _of_python(self, path):
    directory = posixpath.dirname(path)
    reads = []
    for kind, text, line in _python_candidates(path, self.tree.read(path)):
      if kind == 'path':
        files = self._paths(text, directory, directories=False)
      elif kind == 'joined':
        files = self._paths(text, directory)
      elif kind == 'module':
        files = self._module(text, '')
      else:  # ('import', (module, name or None, level))
        module, name, level = text
        files = []
        if name is not None:
          files = self._module(module + '.' + name if module else name,
                               directory, level)
        files = files or self._module(module, directory, level)
      reads.extend((f, '%s:%d' % (path, line)) for f in files)
    return reads

  def _of_markdown(self, path):
    """Paths in the commands of a markdown file's runnable code blocks."""
    text = self.tree.read(path)
    reads = []
    for match in _MD_BLOCK.finditer(text):
      marker, command, language, code = match.groups()
      if marker == 'not run':
        continue
      line = text.count('\n', 0, match.start()) + 1
      runnable = code if language in ('python', 'sh', 'bash') else ''
      for token in _MD_PATH.findall((command or '') + '\n' + runnable):
        for f in self._existing(_norm(token)):
          reads.append((f, '%s:%d' % (path, line)))
    return reads

  def closure(self, sources):
    """Every (path, where) read by `sources` and what they read, transitively
    (through Python modules, scripts and markdown files of the repository)."""
    reads, todo, seen = [], collections.deque(sources), set(sources)
    while todo:  # Breadth first: a test's own reads are named first.
      for path, where in self.of_file(todo.popleft()):
        reads.append((path, where))
        if path.endswith(('.py', '.md')) and path not in seen:
          seen.add(path)
          todo.append(path)
    return reads


@functools.lru_cache(maxsize=None)
def _python_candidates(path, source):
  """What in a Python source may name a repository file, as (kind, text,
  line): 'path' (a literal with a '/'), 'joined' (os.path.join of literals
  from a path of the tree), 'module' (a dotted name, as in `python -m`),
  'import' ((module, name, level)). Cached: the same text parses the same."""
  try:
    tree = ast.parse(source, path)
  except SyntaxError:
    return ()
  nodes = list(ast.walk(tree))
  if NOT_A_READ in source:
    lines = source.splitlines()
    skipped = {id(n) for statement in nodes
               if isinstance(statement, ast.stmt) and
               NOT_A_READ in lines[statement.lineno - 1]
               for n in ast.walk(statement)}
    nodes = [n for n in nodes if id(n) not in skipped]
  rooted = _names_from_file(nodes) if '__file__' in source else set()
  found = []
  for node in nodes:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
      text = _FLAG_PREFIX.sub('', node.value)
      if text and not any(c.isspace() for c in text):
        if '/' in text:  # A file, not a directory ('morph_net/' + x).
          found.append(('path', text, node.lineno))
        elif _DOTTED.match(text) and not text.endswith('.py'):
          found.append(('module', text, node.lineno))
    elif (isinstance(node, ast.Call) and _is_path_join(node.func) and
          node.args and (_is_str(node.args[0]) or
                         _uses(node.args[0], rooted))):
      literals = []
      for arg in node.args:
        if _is_str(arg):
          literals.append(arg.value)
        elif literals:
          literals = []
          break
      if literals:
        found.append(('joined', '/'.join(literals), node.lineno))
    elif isinstance(node, ast.Import):
      for alias in node.names:
        found.append(('import', (alias.name, None, 0), node.lineno))
    elif isinstance(node, ast.ImportFrom):
      for alias in node.names:
        found.append(('import', (node.module or '', alias.name, node.level),
                      node.lineno))
  return tuple(found)


def _is_str(node):
  return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _uses(node, names):
  return bool(names) and any(isinstance(n, ast.Name) and n.id in names
                             for n in ast.walk(node))


def _names_from_file(nodes):
  """Names assigned a value computed from `__file__` (paths in the tree):
  `os.path.join(NAME, 'x')` reads a repository file, `os.path.join(tmp,
  'x')` does not."""
  assigns = [({t.id for t in n.targets if isinstance(t, ast.Name)},
              {m.id for m in ast.walk(n.value) if isinstance(m, ast.Name)})
             for n in nodes if isinstance(n, ast.Assign)]
  names = {'__file__'}
  while True:
    more = set().union(*[targets for targets, used in assigns
                         if used & names]) - names
    if not more:
      return names
    names |= more


def _is_path_join(func):
  if isinstance(func, ast.Attribute) and func.attr == 'join':
    value = func.value
    return (isinstance(value, ast.Attribute) and value.attr == 'path') or (
        isinstance(value, ast.Name) and value.id in ('path', 'posixpath'))
  return isinstance(func, ast.Name) and func.id == 'join'


# --- the checks -------------------------------------------------------------


def test_sources(workspace, target):
  """The repository files pytest runs for a test target: its sources in its
  package (not the generated entry point) and the conftest.py files of its
  directory and the ones above."""
  sources = []
  for src in target.attrs.get('srcs', []):
    kind, value = workspace.resolve(src, target.package)
    if kind == 'file':
      sources.append(value)
  directory = target.package
  while True:
    conftest = posixpath.join(directory, 'conftest.py') if directory else (
        'conftest.py')
    if workspace.tree.isfile(conftest):
      sources.append(conftest)
    if not directory:
      break
    directory = posixpath.dirname(directory)
  return sources


def check_tests_are_targets(workspace):
  """Problems (strings): test files under tests/ that are no test's source."""
  sources = set()
  for target in workspace.tests():
    for src in target.attrs.get('srcs', []):
      kind, value = workspace.resolve(src, target.package)
      if kind == 'file':
        sources.add(value)
  problems = []
  for f in workspace.tree.files():
    if (f.startswith('tests/') and f.endswith('.py') and
        posixpath.basename(f).startswith('test_') and f not in sources):
      problems.append(
          '%s is no test target (a BUILD file calling pytest_directory() in '
          'its directory makes it one)' % f)
  return problems


def check_reads_in_runfiles(workspace, labels=None):
  """Problems (strings): files a test reads that are not in its runfiles
  (of every test target, or of those in `labels`)."""
  reads = Reads(workspace.tree)
  problems = []
  for target in sorted(workspace.tests(), key=lambda t: t.label):
    if labels is not None and target.label not in labels:
      continue
    runfiles = workspace.runfiles(target.label)
    missing = {}
    for path, where in reads.closure(test_sources(workspace, target)):
      if path not in runfiles:
        missing.setdefault(path, where)
    for path, where in sorted(missing.items()):
      build = workspace.build_file(target.package)
      problems.append(
          '%s reads %s (%s), which is not in its runfiles: add the label '
          'that brings it to reads= of pytest_directory() in %s' % (
              target.label, path, where, build))
  return problems


_COMMAND = re.compile(
    r'\bbazel\s+(test|build|run|query|cquery|aquery|coverage|fetch)\b'
    r'([^`\n#;|&]*)')
_LABEL = re.compile(r'(?<![\w:@/.-])(//[\w/.+-]*(?::[\w/.+*-]+)?)')
_CONFIG = re.compile(r'--config[= ](\w+)')


def _label_problem(workspace, label, command):
  """Why `label` in a `bazel <command>` names nothing (or None)."""
  package, _, name = label[2:].partition(':')
  if package.endswith('...') or package == '...':
    base = package[:-len('...')].rstrip('/')
    below = [p for p in workspace.packages
             if p == base or p.startswith(base + '/') or not base]
    if not below:
      return 'no package at or under //%s' % base
    if command in ('test', 'coverage') and not any(
        t.package in below for t in workspace.tests()):
      return 'no test target under //%s' % base
    return None
  if package not in workspace.packages:
    return 'no package //%s (no BUILD file in %s/)' % (package, package)
  if name in ('all', '*', 'all-targets'):
    return None
  kind, value = workspace.resolve(label)
  if kind is None:
    return 'no target %s in %s' % (name or posixpath.basename(package),
                                   workspace.build_file(package))
  if command in ('test', 'coverage') and (
      kind != 'rule' or value.kind not in TEST_RULES + ('test_suite',)):
    return 'not a test target'
  if command == 'run' and (kind != 'rule' or value.kind not in RUNNABLE_RULES):
    return 'not an executable target'
  return None


def _doc_files(workspace):
  return [f for f in workspace.tree.files()
          if any(fnmatch.fnmatchcase(f, p) for p in DOC_FILES)
          and not f.startswith('third_party/')]


def check_doc_commands(workspace):
  """Problems (strings): Bazel commands in the docs, scripts and BUILD
  comments that name no target or an undefined --config, and labels in
  markdown that name no target."""
  bazelrc = workspace.tree.read('.bazelrc') if workspace.tree.isfile(
      '.bazelrc') else ''
  configs = set(re.findall(r'^\w+:(\w+)\s', bazelrc, re.M))
  problems = []
  for path in _doc_files(workspace):
    text = workspace.tree.read(path)
    is_md = path.endswith('.md')
    for number, line in enumerate(text.splitlines(), 1):
      if not is_md and not line.lstrip().startswith(('#', 'echo')) and (
          posixpath.basename(path) in BUILD_NAMES or path.endswith('.bzl')):
        continue  # BUILD code: Bazel checks its labels itself.
      checked = set()
      for match in _COMMAND.finditer(line):
        command, rest = match.group(1), match.group(2).split(' -- ')[0]
        for config in _CONFIG.findall(rest):
          if config not in configs:
            problems.append('%s:%d: `bazel %s --config=%s`: no such config in '
                            '.bazelrc' % (path, number, command, config))
        for label in _LABEL.findall(rest):
          checked.add(label)
          why = _label_problem(workspace, label, command)
          if why:
            problems.append('%s:%d: `bazel %s %s`: %s' % (
                path, number, command, label, why))
      if is_md:
        for label in _LABEL.findall(line):
          if label not in checked:
            why = _label_problem(workspace, label, 'build')
            if why:
              problems.append('%s:%d: %s: %s' % (path, number, label, why))
  return problems


def check(tree):
  """Every problem the checks find in `tree` (a Tree), in order."""
  workspace = Workspace(tree)
  return (check_tests_are_targets(workspace) +
          check_reads_in_runfiles(workspace) + check_doc_commands(workspace))
