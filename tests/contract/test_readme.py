"""The README's topic table is generated from the registry and must be current."""

from parley import readme
from schemas import topics


def test_readme_topic_table_is_current() -> None:
    text = readme.README.read_text()
    assert readme.render(text) == text, "README topic table is stale: run `parley readme`"


def test_table_lists_every_topic() -> None:
    table = readme.topic_table()
    for t in topics.ALL:
        assert f"`{t.name}`" in table
