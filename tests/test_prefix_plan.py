"""Shared-prefix planning (harness.models.prefix_plan) on token ids worked out by hand: no model, no torch."""

from __future__ import annotations

import subprocess
import sys

from harness.models.prefix_plan import PackLimit, ScoringPlan

PREAMBLE = tuple(range(1000, 1070))  # 70 tokens every request shares (a few-shot preamble)
QUESTIONS = [(1, 2, 3), (4, 5, 6), (7, 8, 9)]
ANSWERS = [(11, 12), (13, 14), (15, 16)]
# (request key, context tokens, continuation tokens); each input is context + continuation less its
# last token: 74 tokens, the last two of them scored (positions 72 and 73)
REQUESTS = [(None, list(PREAMBLE + q), list(a)) for q, a in zip(QUESTIONS, ANSWERS)]


def test_planning_imports_no_torch():
    code = "import sys, harness.models.prefix_plan; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_a_long_shared_preamble_gets_a_cached_pass_when_packing_is_off():
    (group,) = ScoringPlan(REQUESTS, max_length=2048, pack_limit=PackLimit(0, 2048)).groups()
    assert group.prefix is not None and group.prefix.parent is None and group.prefix.tokens == PREAMBLE
    assert group.prefix_len == 70
    assert group.lengths == [4, 4, 4]  # each question's 3 tokens and its answer's first, one row each
    packed = group.plan.pack(group.rows)
    assert sorted(packed.seqs) == sorted(q + a[:1] for q, a in zip(QUESTIONS, ANSWERS))
    assert packed.layouts == [[], [], []]
    for i, a in enumerate(ANSWERS):  # positions 72, 73 are columns 2, 3 after the prefix
        row = packed.rows_of[i]
        start, end = packed.pairs_of[i]
        assert packed.wanted[row][start:end] == [(2, a[0]), (3, a[1])]
    assert group.shape(group.rows) == (4, 70, 2) and group.requests(group.rows) == 3


def test_a_short_cluster_is_packed_into_one_row_as_a_prefix_tree():
    (group,) = ScoringPlan(REQUESTS, max_length=2048, pack_limit=PackLimit(1024, 2048)).groups()
    assert group.prefix is None and group.prefix_len == 0
    packed = group.plan.pack(group.rows)
    (seq,) = packed.seqs  # the preamble once, then each question's branch
    assert seq == PREAMBLE + sum((q + a[:1] for q, a in zip(QUESTIONS, ANSWERS)), ())
    # per node: first column, end column, first position, ancestors' column spans
    assert packed.layouts == [
        [(0, 70, 0, []), (70, 74, 70, [(0, 70)]), (74, 78, 70, [(0, 70)]), (78, 82, 70, [(0, 70)])]
    ]
    assert packed.wanted == [[(72, 11), (73, 12), (76, 13), (77, 14), (80, 15), (81, 16)]]
    assert packed.pairs_of == {0: (0, 2), 1: (2, 4), 2: (4, 6)}


def test_identical_inputs_and_prefixes_of_others_ride_on_one_host():
    # the same request twice, and one whose input is a prefix of the first's: one row, three requests
    requests = [REQUESTS[0], REQUESTS[0], (None, list(PREAMBLE + QUESTIONS[0]), [ANSWERS[0][0]])]
    (group,) = ScoringPlan(requests, max_length=2048, pack_limit=PackLimit(0, 2048)).groups()
    packed = group.plan.pack(group.rows)
    assert packed.seqs == [PREAMBLE + QUESTIONS[0] + ANSWERS[0][:1]]
    assert [packed.wanted[0][slice(*packed.pairs_of[i])] for i in range(3)] == [
        [(72, 11), (73, 12)],
        [(72, 11), (73, 12)],
        [(72, 11)],
    ]
