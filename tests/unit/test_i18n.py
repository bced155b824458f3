"""The problem texts' languages: Accept-Language negotiation, and catalogues that are complete and
compiled from their current sources."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir, extract_from_file
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from autional_sessions.problems.languages import LOCALE_DIR, Languages, problem_texts, shipped_languages
from autional_sessions.spec import load_spec, problem_types

ROOT = Path(__file__).resolve().parents[2]
# As the Makefile's i18n-extract gives them to pybabel.
KEYWORDS = {"N_": ((1, "c"), 2), "Nn_": ((1, "c"), 2, 3)}
PO_FILES = sorted(LOCALE_DIR.glob("*/LC_MESSAGES/messages.po"))


@pytest.mark.parametrize(
    ("header", "tag"),
    [
        (None, "en"),
        ("", "en"),
        ("zh-CN", "zh-CN"),
        ("zh-cn", "zh-CN"),
        ("ZH-CN", "zh-CN"),
        ("zh", "zh-CN"),
        ("zh-Hans", "zh-CN"),
        ("zh-Hans-CN", "zh-CN"),
        ("zh-SG", "zh-CN"),
        ("en-US,en;q=0.9,zh;q=0.8", "en"),
        ("fr-FR, zh-CN;q=0.5", "zh-CN"),
        ("en;q=0.4, zh;q=0.6", "zh-CN"),
        ("zh;q=0.6, en;q=0.6", "zh-CN"),
        # Traditional Chinese is not shipped: the next acceptable range, else English.
        ("zh-TW", "en"),
        ("zh-Hant", "en"),
        ("zh-TW, zh-CN;q=0.5", "zh-CN"),
        ("*", "en"),
        ("en;q=0, *", "zh-CN"),
        ("zh;q=0, *;q=0.5", "en"),
        ("zh-CN;q=0", "en"),
        ("de", "en"),
        # Malformed, never an error.
        ("zh;q=2", "en"),
        ("zh;q=abc", "en"),
        (";;;,,,", "en"),
        ("zh-CN;level=1", "en"),
        ("\u4e2d\u6587", "en"),
        ("i-klingon, zh", "zh-CN"),
        ("x-private, zh", "zh-CN"),
        ("a" * 5000, "en"),
        ("en-" + "-".join(["abcdefgh"] * 40) + ", zh", "zh-CN"),
    ],
)
def test_accept_language_chooses_the_language(header, tag):
    assert shipped_languages().negotiate(header).tag == tag


def test_negotiation_is_remembered_per_header():
    languages = Languages.load()
    first = languages.negotiate("zh-CN, en;q=0.5")

    assert languages.negotiate("zh-CN, en;q=0.5") is first
    assert languages._negotiate_cached.cache_info().hits == 1


def test_english_is_the_default_and_chinese_is_shipped():
    tags = [language.tag for language in shipped_languages()]

    assert tags[0] == "en" and "zh-CN" in tags


def test_content_language_of_the_spec_lists_the_shipped_languages():
    header = load_spec()["components"]["headers"]["Content-Language"]

    assert header["schema"]["enum"] == [language.tag for language in shipped_languages()]


def extracted_messages() -> dict[tuple[str | None, str], tuple[str, ...]]:
    """Every text the code and the spec give, extracted as `make i18n-extract` does: (context, msgid) ->
    its ids (two for a plural). The context is the problem type of a text of the code, None for a title."""
    with (ROOT / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found: dict[tuple[str | None, str], tuple[str, ...]] = {}
    for directory in ("autional_sessions", "handlers", "db"):
        for _file, _line, message, _comments, context in extract_from_dir(
            str(ROOT / directory), method_map, options_map, keywords=KEYWORDS
        ):
            ids = message if isinstance(message, tuple) else (message,)
            found[context, ids[0]] = ids
    # The spec, at the repository's top, by the extractor babel.cfg names for it.
    (title_method,) = (method for pattern, method in method_map if pattern == "openapi.yaml")
    for _line, title, _comments, context in extract_from_file(title_method, str(ROOT / "openapi.yaml")):
        found[context, title] = (title,)
    return found


def test_extraction_finds_the_code_and_the_spec_titles():
    messages = extracted_messages()
    titles = {e["title"] for e in problem_types(load_spec()).values()}

    assert {(None, title) for title in titles} <= messages.keys()
    assert ("invalid-request", "%(count)d request parameter is invalid") in messages
    assert ("user-not-found", "No user with the ID %(user_id)s exists") in messages


def test_the_template_holds_every_text():
    with (LOCALE_DIR / "messages.pot").open("rb") as pot:
        template = {(m.context, m.id if isinstance(m.id, str) else m.id[0]) for m in read_po(pot) if m.id}

    assert set(extracted_messages()) <= template, "run make i18n-update"


@pytest.mark.parametrize("po_path", PO_FILES, ids=lambda p: p.parent.parent.name)
def test_every_text_is_translated_in_every_language(po_path):
    with po_path.open("rb") as po:
        catalog = read_po(po)
    translated = {
        (m.context, m.id if isinstance(m.id, str) else m.id[0]): m
        for m in catalog
        if m.id and not m.fuzzy and all(m.string if isinstance(m.string, tuple) else (m.string,))
    }

    missing = set(extracted_messages()) - translated.keys()
    assert not missing, f"untranslated in {po_path}: {sorted(missing)}"
    # Placeholders agree with the English text (gettext's python-format checks).
    problems = [(m.id, [str(e) for e in errors]) for m, errors in catalog.check()]
    assert not problems


@pytest.mark.parametrize("po_path", PO_FILES, ids=lambda p: p.parent.parent.name)
def test_every_compiled_catalogue_is_compiled_from_its_current_po(po_path):
    with po_path.open("rb") as po:
        catalog = read_po(po)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)

    assert po_path.with_suffix(".mo").read_bytes() == compiled.getvalue(), "run make i18n-compile"


def test_problem_types_name_only_documented_i18n_args():
    problem = load_spec()["components"]["schemas"]["dto.Problem"]
    documented = set(problem["properties"]["i18n_args"]["properties"])

    for entry in problem["x-problem-types"].values():
        assert set(entry.get("i18n_args", ())) <= documented


def test_every_text_of_the_code_belongs_to_a_problem_type_and_every_type_has_one():
    """A text's context names the problem type it is written for: the docs' page of that type lists it."""
    types = set(problem_types(load_spec()))
    contexts = {context for context, _msgid in extracted_messages() if context is not None}

    assert contexts == types
    assert set(problem_texts()) == types
