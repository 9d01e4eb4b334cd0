import json
from pathlib import Path

from faaspub_runtime.events import make_cloudevent
from index import main


def event_for(path: Path, event_id: str) -> dict:
    return make_cloudevent(
        source="/faaspub/storage/local",
        kind="created",
        path=str(path),
        size=path.stat().st_size,
        checksum=None,
        url=path.as_uri(),
        event_id=event_id,
        time="2026-01-01T00:00:00Z",
        storage="local",
    )


def test_each_summary_is_indexed_once(tmp_path: Path) -> None:
    summary = tmp_path / "run7.csv.summary.json"
    summary.write_text(json.dumps({"rows": 2, "source": str(tmp_path / "run7.csv")}))
    assert main(event_for(summary, "e-1"))["added"] is True
    assert main(event_for(summary, "e-1"))["added"] is False  # a redelivery
    assert main(event_for(summary, "e-2"))["added"] is True  # a new version of the file
    lines = [json.loads(line) for line in (tmp_path / "index.jsonl").read_text().splitlines()]
    assert [(line["event"], line["rows"]) for line in lines] == [("e-1", 2), ("e-2", 2)]
