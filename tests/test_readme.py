"""The README's set-up commands are the ones CI runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = text.split("```bash\n")[1:3]
    return [block.split("\n```")[0].strip() for block in blocks]


def test_readme_starts_with_two_commands_and_ci_runs_the_second():
    run, test = _commands()
    assert "minmax train" in run and "torch==2.13.0" in run
    assert "pytest" in test and "torch==2.13.0" in test
    assert test in (ROOT / ".ci" / "run").read_text()


def test_readme_links_and_images_point_at_files():
    import re

    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    assert len(local) > 10
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, missing
