"""The README's results table is generated from reports/results.json and stays in step with it."""

import pytest

from neurochat.errors import DataError
from neurochat.evaluate.readme_table import END, RESULTS, START, main, read_results, readme_table, replace_between_markers
from neurochat.paths import REPO_ROOT


def test_the_table_is_generated_from_the_committed_results():
    table = readme_table(read_results(RESULTS))
    lines = table.splitlines()
    assert lines[0].startswith("| what |") and lines[1] == "|---|---|---|"
    assert len(lines) > 10 and all(line.count("|") == 4 for line in lines)
    assert "n/a" not in table.split("paper (NSD")[0]


def test_the_readme_shows_the_table_of_the_committed_results():
    readme = (REPO_ROOT / "README.md").read_text()
    expected = replace_between_markers(readme, readme_table(read_results(RESULTS)))
    assert readme == expected, ("README.md's results table differs from reports/results.json: "
                                "run `python -m neurochat.evaluate.readme_table --write README.md`")  # fmt: skip


def test_write_puts_the_table_between_the_markers(tmp_path, capsys):
    page = tmp_path / "README.md"
    page.write_text(f"# title\n\n{START}\nold\n{END}\n\nafter\n")
    assert main(["--write", str(page)]) == 0
    text = page.read_text()
    assert "old" not in text and text.startswith("# title") and text.endswith("after\n")
    assert main([]) == 0 and capsys.readouterr().out.startswith("| what |")


def test_missing_markers_and_empty_results_are_refused(tmp_path):
    with pytest.raises(DataError, match="markers"):
        replace_between_markers("no markers here", "| table |\n")
    with pytest.raises(DataError, match="none of the sections"):
        readme_table({})
    with pytest.raises(DataError, match="missing"):
        read_results(tmp_path / "results.json")
