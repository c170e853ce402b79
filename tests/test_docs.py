"""The documentation: generated parts current, every option described, links and cited paths real, a short README."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from pipeline.recipe import Recipe, StageEntry, load_recipe
from pipeline.stages import STAGES
from scripts import make_docs, readme_tables

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
EXAMPLES = sorted((ROOT / "examples").glob("*/recipe.yaml"))
DOCUMENTS = [README, *PAGES, *sorted((ROOT / "examples").rglob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\n]+)`")
# A span that names a file or folder of this repository (generated ones, under artifacts/, are left out).
REPO_PATH = re.compile(r"^(?:(?:pipeline|tests|scripts|recipes|benchmarks|docs|examples|\.ci)/[\w./-]*|Makefile|"
                       r"pyproject\.toml)$")


def prose(path: Path) -> str:
    """The document without its fenced blocks: console output and examples of a user's own files."""
    return FENCE.sub("", path.read_text())


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a markdown file (a repeated heading gets -1, -2, ...)."""
    found: set[str] = set()
    for line in prose(path).splitlines():
        if line.startswith("#"):
            base = make_docs.slug(line.lstrip("#").replace("`", ""))
            anchor, n = base, 0
            while anchor in found:
                n += 1
                anchor = f"{base}-{n}"
            found.add(anchor)
    return found


def test_generated_parts_are_current() -> None:
    stale = make_docs.stale()
    assert not stale, f"stale generated docs: {', '.join(stale)}; run make docs"


def _models_of(annotation: typing.Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for argument in typing.get_args(annotation) for model in _models_of(argument)]


def test_every_recipe_field_and_stage_option_has_a_description() -> None:
    missing, seen = [], set()
    todo: list[tuple[type[BaseModel], str]] = [(Recipe, "recipe")]
    todo += [(stage.Options, f"stages.{kind}") for kind, stage in STAGES.items()]
    while todo:
        model, place = todo.pop()
        if model in seen or model is StageEntry:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            if not (field.description or "").strip():
                missing.append(f"{place}.{name} ({model.__module__}.{model.__name__})")
            todo += [(sub, f"{place}.{name}") for sub in _models_of(field.annotation)]
    assert not missing, "fields without a description (Field(..., description=...)): " + ", ".join(missing)


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("document", DOCUMENTS, ids=_name)
def test_links_resolve(document: Path) -> None:
    broken = []
    for target in LINK.findall(prose(document)):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        path = (document.parent / file).resolve() if file else document
        if not path.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{document.name}: " + ", ".join(broken)


@pytest.mark.parametrize("document", DOCUMENTS, ids=_name)
def test_cited_repository_paths_exist(document: Path) -> None:
    text = prose(document)
    cited = {span.rstrip("/") for span in CODE.findall(text) if REPO_PATH.match(span)}
    assert not [path for path in sorted(cited) if not (ROOT / path).exists()], f"{document.name} cites missing paths"
    assert "../shared" not in document.read_text(), f"{document.name} cites ../shared"


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; the rest belongs in docs/"
    top = "\n".join(lines[:15])
    assert "make demo" in top and "make test" in top
    assert re.search(r"\d+ tests, \d+ min \d+ s in `bash \.ci/run`", README.read_text()), "the suite-size line"


@pytest.mark.parametrize("page", [page for page in PAGES if page.name != "zoo.md"], ids=lambda path: path.name)
def test_each_page_opens_with_its_contents(page: Path) -> None:
    head = page.read_text().splitlines()[:5]
    assert head[0].startswith("# ") and any(line.startswith("Contents: ") for line in head), page.name


def test_measured_tables_have_their_markers() -> None:
    for name, page in readme_tables.PAGES.items():
        assert make_docs.between(page.read_text(), name) is not None, f"{page.name} lost its {name} markers"


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("recipe", EXAMPLES, ids=_name)
def test_each_example_validates(recipe: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`edgeport validate` where `make demo` has made the models; else the schema and the stage chains."""
    loaded = load_recipe(recipe, check_files=False)
    if not loaded.source_path.exists():
        return
    from pipeline.cli import main

    assert main(["validate", str(recipe)]) == 0, capsys.readouterr()
