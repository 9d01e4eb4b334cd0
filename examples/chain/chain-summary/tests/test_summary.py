import json
from pathlib import Path

from faaspub_runtime.events import make_cloudevent
from summary import main, summarise


def event_for(path: Path) -> dict:
    return make_cloudevent(
        source="/faaspub/storage/local",
        kind="created",
        path=str(path),
        size=path.stat().st_size,
        checksum=None,
        url=path.as_uri(),
        event_id="e-1",
        time="2026-01-01T00:00:00Z",
        storage="local",
    )


def test_summary_is_written_next_to_the_csv(tmp_path: Path) -> None:
    data = tmp_path / "run7.csv"
    data.write_text("energy,detector\n1.5,A\n2.5,B\n")
    result = main(event_for(data))
    written = tmp_path / "run7.csv.summary.json"
    assert result == {"summary": str(written), "rows": 2}
    summary = json.loads(written.read_text())
    assert summary["means"] == {"energy": 2.0}
    assert summary["columns"] == ["energy", "detector"]


def test_empty_file_has_no_columns() -> None:
    assert summarise([]) == {"rows": 0, "columns": [], "means": {}}
