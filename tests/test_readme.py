"""The README gets a reader running: set-up and the two commands on its first screen, and every command it shows
runs as written (the tools live in .venv/, which a fresh shell does not have on its PATH)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
FIRST_SCREEN = 45  # lines
TOOLS = ("tinygpt", "papermill", "jupyter", "python", "pip", "ray")


def bash_blocks(text):
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def unactivated(block):
    """Commands of a code block that would meet `command not found`: a tool run before any activation."""
    bad, active = [], False
    for line in block.splitlines():
        words = [w for w in line.split("#")[0].split() if "=" not in w]  # env assignments (RAY_ADDRESS=…) aside
        if words[:2] in (["source", ".venv/bin/activate"], ["conda", "activate"]):
            active = True
        elif words and words[0] in TOOLS and not active:
            bad.append(line.strip())
    return bad


def test_set_up_and_the_two_commands_come_first():
    head = "\n".join(README.read_text(encoding="utf-8").splitlines()[:FIRST_SCREEN])
    for text in ("make book PRESET=cpu", "make test", "source .venv/bin/activate", "TINYGPT_DATA_SOURCE"):
        assert text in head, text


def test_every_command_shown_runs_in_a_fresh_shell():
    blocks = bash_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 3
    assert [line for b in blocks for line in unactivated(b)] == []


def test_the_check_sees_a_missing_activation():
    assert unactivated("make install\ntinygpt train --preset cpu\n") == ["tinygpt train --preset cpu"]
    assert unactivated("RAY_ADDRESS=x:1 tinygpt book run\n") == ["RAY_ADDRESS=x:1 tinygpt book run"]
    assert unactivated("source .venv/bin/activate\ntinygpt train\n.venv/bin/tinygpt x\n") == []
