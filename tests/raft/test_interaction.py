"""etcd-style interaction tests: each file in testdata/ is a script and the trace it must produce.

RAFT_REWRITE=1 rewrites the expected traces in place (then review the diff before committing).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from raft.interaction import parse, render, run_file

TESTDATA = Path(__file__).parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))


def test_testdata_is_present() -> None:
    assert len(FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_interaction(path: Path) -> None:
    blocks, outputs, trailer = run_file(path)
    if os.environ.get("RAFT_REWRITE") == "1":
        path.write_text(render(blocks, outputs, trailer))
        return
    for block, output in zip(blocks, outputs, strict=True):
        assert output == block.expected, (
            f"{path.name}:{block.line}: {block.command}\n--- expected\n{block.expected}\n--- actual\n{output}"
        )


def test_a_wrong_expectation_is_reported() -> None:
    """The harness compares for real: an edited expectation no longer matches."""
    blocks, outputs, _ = run_file(TESTDATA / "campaign.txt")
    tampered = [o.replace("term=2", "term=3") for o in outputs]
    assert any(t != b.expected for t, b in zip(tampered, blocks, strict=True))


def test_a_command_without_separator_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("campaign 1\nstabilize\n")
    with pytest.raises(ValueError, match="not followed by ----"):
        parse(bad.read_text())
