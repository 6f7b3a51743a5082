"""Shared-prefix planning for scoring (pure Python: token ids in, a plan of forward passes out).

Inputs are ctx+cont minus its last token, left-truncated to max_length (as lm-eval's HFLM).
Identical inputs run once; an input that is a prefix of another is read off the longer one (its
host); hosts sorted lexicographically fall into clusters sharing a prefix (a task's few-shot
preamble, a question's context before its choices). A cluster short enough is packed into one row
as a prefix tree (trunk once, then each branch, under a custom mask); a longer one gets a cached
forward pass of its shared prefix whose KV cache every row after it reuses, and is planned again
within. The plan is a list of groups in the order they run, each group the rows that continue one
cached prefix (or none), laid out best fit decreasing.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass

# A shared prefix gets its own cached forward pass when it saves at least this many token
# computations, and a nested one only when it is at least MIN_PREFIX_STEP tokens longer.
MIN_SHARED_TOKENS = 64
MIN_PREFIX_STEP = 8
# Short units share rows up to this many tokens (also the batching rule's tokens per row; see batching.py).
TOKENS_PER_BATCH_ROW = 128
# Hosts sharing a prefix are packed into one row (trunk once, then each branch) up to this length.
PACK_MAX_TOKENS = 1024


def common_prefix_len(a: tuple, b: tuple) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # binary search on slice equality: C-speed comparisons, log n of them
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class PrefixTree:
    """A node of a prefix tree of token sequences (hosts): positions [start, end) of `host`, one of
    the sequences below it, shared by all of them; leaves are whole hosts."""

    __slots__ = ("start", "end", "host", "children", "size")

    def __init__(self, start: int, end: int, host: tuple, children: list[PrefixTree]) -> None:
        self.start, self.end, self.host, self.children = start, end, host, children
        self.size: int = end - start + sum(child.size for child in children)  # tokens in the subtree

    @classmethod
    def of(cls, hosts: list[tuple], depth: int) -> PrefixTree:
        """hosts: sorted, sharing positions [0, depth), none a prefix of another. Hosts sharing
        fewer than MIN_PREFIX_STEP more tokens become siblings (a node that short saves little)."""
        if len(hosts) == 1:
            return cls(depth, len(hosts[0]), hosts[0], [])
        commons = [common_prefix_len(a, b) for a, b in zip(hosts, hosts[1:])]
        shared = min(commons)
        children, i = [], 0
        for j in range(1, len(hosts) + 1):
            if j == len(hosts) or commons[j - 1] < shared + MIN_PREFIX_STEP:
                children.append(cls.of(hosts[i:j], shared))
                i = j
        return cls(depth, shared, hosts[0], children)

    def hosts(self) -> list[tuple]:
        return [self.host] if not self.children else [h for child in self.children for h in child.hosts()]


Row = list[PrefixTree]  # the units (prefix trees) laid side by side in one row of a forward pass


def lay_rows(units: list[PrefixTree], limit: int) -> list[Row]:
    """Units (prefix trees, widest first) laid into rows, best fit decreasing: a row is as wide as
    its first unit rounded up to a step of 1/8 of its power of two (widths in a batch then differ
    little: little padding), short units share rows up to TOKENS_PER_BATCH_ROW tokens, and later
    units fill the room left. Units in one row see the cached prefix and themselves only (see
    PackedBatch): each gets its numbers alone in a row would give, to float rounding. A row is
    never wider than `limit` (the packing limit: 0 keeps every unit alone) unless its one unit is."""
    rows: list[Row] = []
    room: list[tuple[int, int]] = []  # (free tokens, row), sorted
    smallest = units[-1].size if units else 0
    for unit in units:
        k = bisect.bisect_left(room, (unit.size, -1))
        if k < len(room):
            free, r = room.pop(k)
            rows[r].append(unit)
            free -= unit.size
        else:
            r, step = len(rows), max(1, (1 << (unit.size.bit_length() - 1)) // 8)
            width = (
                unit.size if unit.size >= limit else min(limit, max(TOKENS_PER_BATCH_ROW, -(-unit.size // step) * step))
            )
            rows.append([unit])
            free = width - unit.size
        if free >= smallest:
            bisect.insort(room, (free, r))
    return rows


def row_width(row: Row) -> int:
    return sum(u.size for u in row)


@dataclass(frozen=True)
class PackLimit:
    """Longest packed row (tokens) after `cached` tokens: packing changes only the mask, so it must
    stay within the model's context and within a sliding attention window (a custom mask replaces
    that window). pack_max_tokens 0: never pack, every shared prefix gets a cached pass."""

    pack_max_tokens: int
    max_length: int
    sliding_window: int | None = None

    def __call__(self, cached: int) -> int:
        limit = min(self.pack_max_tokens, self.max_length - cached)
        return min(limit, self.sliding_window - cached) if self.sliding_window else limit


@dataclass(frozen=True, eq=False)  # identity equality: a prefix's KV cache is kept by the object
class CachedPrefix:
    """A prefix whose KV cache is computed in a forward pass of its own: the parent's, then `tokens`."""

    parent: CachedPrefix | None
    tokens: tuple

    def chain(self) -> list[CachedPrefix]:
        """This prefix and its ancestors."""
        out: list[CachedPrefix] = []
        node: CachedPrefix | None = self
        while node is not None:
            out.append(node)
            node = node.parent
        return out


@dataclass
class PackedBatch:
    """A batch's rows laid out: each row's tokens (seqs), its packed layout (see
    Scorer.forward_logprobs), and per row the (column, target token) pairs to score, each
    request's pairs at pairs_of[request] in its row."""

    seqs: list[tuple]
    layouts: list[list[tuple]]
    wanted: list[list[tuple[int, int]]]
    rows_of: dict[int, int]  # request -> its row, in request order
    pairs_of: dict[int, tuple[int, int]]  # request -> its slice of its row's pairs


class ScoringPlan:
    """The forward passes that score (context, continuation) token pairs, shared prefixes computed once.

    groups(): in the order they run, each the rows after one cached prefix (None: no cache).
    """

    def __init__(self, requests: list[tuple], max_length: int, pack_limit: PackLimit) -> None:
        self.conts = [cont for _, _, cont in requests]
        self.inputs = [tuple((ctx + cont)[-(max_length + 1) :][:-1]) for _, ctx, cont in requests]
        # In lexicographic order a sequence is a prefix of some other only if it is a prefix of
        # its successor: map each input to the longest input it is a prefix of (its host).
        distinct = sorted(set(self.inputs))
        host: dict[tuple, tuple] = {}
        for i in range(len(distinct) - 1, -1, -1):
            seq, nxt = distinct[i], distinct[i + 1] if i + 1 < len(distinct) else None
            host[seq] = host[nxt] if nxt is not None and nxt[: len(seq)] == seq else seq
        self.members: dict[tuple, list[int]] = defaultdict(list)
        for idx, inp in enumerate(self.inputs):
            self.members[host[inp]].append(idx)
        # a cached prefix may not reach a position whose logits are scored
        self.first_scored = {
            h: min(len(self.inputs[i]) - len(self.conts[i]) for i in idx) for h, idx in self.members.items()
        }
        self.pack_limit = pack_limit

    def groups(self) -> list[ScoreGroup]:
        groups: list[ScoreGroup] = []
        self._plan(sorted(self.members), 0, None, groups)
        return groups

    def _plan(self, hosts: list[tuple], prefix_len: int, prefix: CachedPrefix | None, groups: list[ScoreGroup]) -> None:
        """hosts: sorted, all sharing tokens [0, prefix_len), those of `prefix`. A cluster of hosts
        sharing more is packed into one row when short enough, else its prefix gets a cached pass;
        its groups run before this level's own rows."""
        units: list[PrefixTree] = []
        i = 0
        while i < len(hosts):
            j, shared = i + 1, self.first_scored[hosts[i]]
            while j < len(hosts):
                common = min(common_prefix_len(hosts[j - 1], hosts[j]), shared, self.first_scored[hosts[j]])
                if common < prefix_len + MIN_PREFIX_STEP:
                    break
                shared = min(shared, common)
                j += 1
            cluster = hosts[i:j]
            packed = PrefixTree.of(cluster, prefix_len) if len(cluster) > 1 else None
            if packed is not None and packed.size <= self.pack_limit(prefix_len):
                units.append(packed)
            elif len(cluster) > 1 and (shared - prefix_len) * (len(cluster) - 1) >= MIN_SHARED_TOKENS:
                self._plan(cluster, shared, CachedPrefix(prefix, cluster[0][prefix_len:shared]), groups)
            else:
                units += [PrefixTree(prefix_len, len(h), h, []) for h in cluster]
            i = j
        if units:
            rows = lay_rows(sorted(units, key=lambda u: -u.size), self.pack_limit(prefix_len))
            order = sorted(rows, key=lambda r: -row_width(r))  # similar lengths together: little padding
            groups.append(ScoreGroup(self, prefix, prefix_len, order))

    def requests_in(self, row: Row) -> list[int]:
        return [i for u in row for h in u.hosts() for i in self.members[h]]

    def pack(self, batch: list[Row]) -> PackedBatch:
        """The batch's rows laid out: every unit's nodes in depth-first order, every token once."""
        seqs, layouts = [], []
        where: dict[int, tuple[int, list]] = {}  # request -> (its row, the column spans of its path)
        for row, row_units in enumerate(batch):
            seq: list[int] = []
            layout: list[tuple] = []
            for unit in row_units:
                self._place(unit, [], row, seq, layout, where)
            seqs.append(tuple(seq))
            layouts.append(layout if len(layout) > 1 else [])
        wanted: list[list[tuple[int, int]]] = [[] for _ in batch]
        rows_of, pairs_of = {}, {}
        for i, (row, path) in sorted(where.items()):
            start = len(wanted[row])
            inp, cont = self.inputs[i], self.conts[i]
            for p, token in zip(range(len(inp) - len(cont), len(inp)), cont):
                wanted[row].append((next(c + p - s for c, s, e in path if s <= p < e), token))
            rows_of[i], pairs_of[i] = row, (start, len(wanted[row]))
        return PackedBatch(seqs, layouts, wanted, rows_of, pairs_of)

    def _place(
        self,
        node: PrefixTree,
        path: list[tuple[int, int, int]],
        row: int,
        seq: list[int],
        layout: list[tuple],
        where: dict[int, tuple[int, list]],
    ) -> None:
        """Append node's tokens to seq and its (first column, end column, first position, ancestors'
        column spans) to layout, then its children's; leaves say where their requests' tokens are."""
        here = (len(seq), node.start, node.end)  # first column, positions [start, end)
        seq.extend(node.host[node.start : node.end])
        layout.append((here[0], len(seq), node.start, [(c, c + e - s) for c, s, e in path]))
        for child in node.children:
            self._place(child, path + [here], row, seq, layout, where)
        if not node.children:
            for i in self.members[node.host]:
                where[i] = (row, path + [here])


class ScoreGroup:
    """Rows (longest first) that continue one cached prefix, in batches (see batching.Batcher)."""

    def __init__(self, plan: ScoringPlan, prefix: CachedPrefix | None, prefix_len: int, rows: list[Row]) -> None:
        self.plan, self.prefix, self.prefix_len, self.rows = plan, prefix, prefix_len, rows
        self.lengths = [row_width(r) for r in rows]

    def shape(self, batch: list[Row]) -> tuple[int, int, int]:
        """New tokens per row, cached tokens, scored positions per row (see Batcher)."""
        return (
            row_width(batch[0]),
            self.prefix_len,
            max(sum(len(self.plan.conts[i]) for i in self.plan.requests_in(r)) for r in batch),
        )

    def requests(self, batch: list[Row]) -> int:
        return sum(len(self.plan.requests_in(r)) for r in batch)
