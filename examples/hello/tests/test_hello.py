from hello import main


def test_greets_by_name() -> None:
    assert main({"name": "faaspub"}) == {"greeting": "Hello, faaspub!"}


def test_storage_event_names_the_file() -> None:
    event = {"specversion": "1.0", "type": "storage.object.created", "subject": "/incoming/a.txt"}
    assert main(event)["file"] == "/incoming/a.txt"
