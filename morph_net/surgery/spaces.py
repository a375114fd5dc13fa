"""Channel groups and channel spaces: how a tensor's channels map to groups.

A *channel group* is a set of channels that must be removed together (the
output channels of a conv and of the batch norm after it, the inputs of an
`Add`, ...). Groups live in a `GroupTable`, a union-find over group ids that
also records why a group cannot change width ("frozen").

A *channel space* says, for every channel of one tensor, which group it
belongs to. Spaces are small immutable values:

  Group(gid)                  the channels of group `gid`, in order;
  Concat((s1, s2, ...))       the channels of s1, then those of s2, ...;
  Repeat(s, k)                channel c of s repeated k times, as a depthwise
                              conv with depth multiplier k lays them out
                              (output channel c * k + j);
  Flattened(s, p)             a Flatten over p spatial positions (output
                              channel p * C + c);
  Dead(n)                     n channels of an input that vanished.

Spaces are compared by value, so a space can be found inside another and
replaced (`replace`).
"""

import abc
import collections
import dataclasses
from typing import Callable, List, Optional, Tuple

import numpy as np

__all__ = ['GroupTable', 'ChannelSpace', 'Group', 'Concat', 'Multiplied',
           'Repeat', 'Flattened', 'Dead', 'repeat_indices']

# Maps a group root to the original indices of its channels that survive.
KeptOfGroup = Callable[[int], np.ndarray]


def repeat_indices(indices: np.ndarray, factor: int) -> np.ndarray:
  """Channels c * factor + j (j < factor) for each c of `indices`, in order."""
  return (np.asarray(indices)[:, None] * factor +
          np.arange(factor)[None, :]).reshape([-1])


class GroupTable(object):
  """Union-find over channel groups, with sizes and reasons for freezing."""

  def __init__(self):
    self._parent = []
    self._size = []
    self._frozen = collections.defaultdict(list)

  def new(self, size: int, frozen_reason: Optional[str] = None) -> int:
    """Adds a group of `size` channels; returns its id."""
    gid = len(self._parent)
    self._parent.append(gid)
    self._size.append(int(size))
    if frozen_reason:
      self._frozen[gid].append(frozen_reason)
    return gid

  def find(self, gid: int) -> int:
    """The root id of the group `gid` belongs to (with path halving)."""
    parent = self._parent
    while parent[gid] != gid:
      parent[gid] = parent[parent[gid]]
      gid = parent[gid]
    return gid

  def union(self, a: int, b: int) -> None:
    """Merges the groups of `a` and `b`; their freezing reasons add up."""
    a, b = self.find(a), self.find(b)
    if a != b:
      self._parent[b] = a
      self._frozen[a].extend(self._frozen.pop(b, []))

  def size(self, gid: int) -> int:
    """Number of channels of the group of `gid`."""
    return self._size[self.find(gid)]

  def freeze(self, gid: int, reason: str) -> None:
    """Records that the group of `gid` cannot change width, and why."""
    self._frozen[self.find(gid)].append(reason)

  def frozen_reasons(self, gid: int) -> List[str]:
    """Why the group of `gid` cannot change width ([] if it can)."""
    return list(self._frozen.get(self.find(gid), []))

  def roots(self) -> List[int]:
    """Root ids of all groups, sorted."""
    return sorted(set(self.find(g) for g in range(len(self._parent))))


class ChannelSpace(abc.ABC):
  """The channels of one tensor, as a layout of channel groups."""

  @abc.abstractmethod
  def group_ids(self, table: GroupTable) -> List[int]:
    """Root ids of the groups whose channels appear in this space."""

  @abc.abstractmethod
  def size(self, table: GroupTable) -> int:
    """Number of channels of the tensor in the original model."""

  @abc.abstractmethod
  def indices(self, table: GroupTable, kept: KeptOfGroup) -> np.ndarray:
    """Original indices (into this space) of the channels that survive.

    Args:
      table: the group table.
      kept: maps a group root to the sorted original indices of its
        surviving channels.

    Returns:
      A 1-D int array, sorted within each group.
    """

  def aligned_parts(self, other: 'ChannelSpace', table: GroupTable
                    ) -> Optional[List[Tuple['ChannelSpace', 'ChannelSpace']]]:
    """Pairs of sub-spaces to merge when two tensors of these spaces meet.

    Returns None when the two layouts differ (the groups must then keep
    their widths).
    """
    del other, table
    return None

  def replace(self, old: 'ChannelSpace', new: 'ChannelSpace'
              ) -> 'ChannelSpace':
    """This space with the sub-space `old` replaced by `new`."""
    return new if self == old else self


@dataclasses.dataclass(frozen=True)
class Group(ChannelSpace):
  """All channels of one group."""
  gid: int

  def group_ids(self, table):
    return [table.find(self.gid)]

  def size(self, table):
    return table.size(self.gid)

  def indices(self, table, kept):
    return kept(table.find(self.gid))


@dataclasses.dataclass(frozen=True)
class Concat(ChannelSpace):
  """Sub-spaces laid out one after the other (a concatenation)."""
  parts: Tuple[ChannelSpace, ...]

  def group_ids(self, table):
    return [gid for part in self.parts for gid in part.group_ids(table)]

  def size(self, table):
    return sum(part.size(table) for part in self.parts)

  def indices(self, table, kept):
    pieces, offset = [], 0
    for part in self.parts:
      pieces.append(part.indices(table, kept) + offset)
      offset += part.size(table)
    return np.concatenate(pieces) if pieces else np.zeros([0], np.int64)

  def aligned_parts(self, other, table):
    if not isinstance(other, Concat) or len(other.parts) != len(self.parts):
      return None
    if any(a.size(table) != b.size(table)
           for a, b in zip(self.parts, other.parts)):
      return None
    return list(zip(self.parts, other.parts))


@dataclasses.dataclass(frozen=True)
class Multiplied(ChannelSpace):
  """`factor` copies of each channel of `inner`; subclasses lay them out."""
  inner: ChannelSpace
  factor: int

  def group_ids(self, table):
    return self.inner.group_ids(table)

  def size(self, table):
    return self.inner.size(table) * self.factor

  def aligned_parts(self, other, table):
    del table
    if type(other) is type(self) and other.factor == self.factor:
      return [(self.inner, other.inner)]
    return None

  def replace(self, old, new):
    if self == old:
      return new
    return type(self)(self.inner.replace(old, new), self.factor)


class Repeat(Multiplied):
  """Each channel c of `inner` as channels c * factor + j (depthwise)."""

  def indices(self, table, kept):
    return repeat_indices(self.inner.indices(table, kept), self.factor)


class Flattened(Multiplied):
  """`inner` at each of `factor` spatial positions: channel p * C + c."""

  def indices(self, table, kept):
    inner = self.inner.indices(table, kept)
    channels = self.inner.size(table)
    return (np.arange(self.factor)[:, None] * channels +
            inner[None, :]).reshape([-1])


@dataclasses.dataclass(frozen=True)
class Dead(ChannelSpace):
  """`channels` channels that vanished with the layer producing them."""
  channels: int

  def group_ids(self, table):
    return []

  def size(self, table):
    return self.channels

  def indices(self, table, kept):
    return np.zeros([0], np.int64)
