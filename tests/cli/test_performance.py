"""The one performance table: each benchmark writes its own section, the others stay as they were."""

import json

import pytest

from animateme.performance import markdown, record


def test_each_benchmark_replaces_only_its_own_section(tmp_path):
    record("sampler", ["mode", "s"], [["fast", 0.8123]], folder=tmp_path)
    record("registration", ["kind", "s"], [["real", 4.1]], notes="told in 5.9 s", folder=tmp_path)
    record("sampler", ["mode", "s"], [["fast", 0.51]], folder=tmp_path)
    data = json.loads((tmp_path / "performance.json").read_text())
    assert set(data) == {"sampler", "registration"} and data["sampler"]["rows"] == [["fast", "0.51"]]
    text = (tmp_path / "performance.md").read_text()
    assert text == markdown(data)
    assert "| fast | 0.51 |" in text and "0.81" not in text and "| real | 4.10 |" in text and "told in 5.9 s" in text
    # Sections come in one order whatever order the benchmarks ran in.
    assert text.index("The sampler alone") < text.index("The fit by stage")


def test_an_unknown_section_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown performance section"):
        record("speed", ["a"], [[1]], folder=tmp_path)
    assert not (tmp_path / "performance.json").exists()
