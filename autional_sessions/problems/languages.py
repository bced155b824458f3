"""The languages of problem texts: gettext catalogues managed with Babel, chosen by `Accept-Language`.

English is the source language: the texts in the code (marked with `N_` and `Nn_`) and the titles of the
spec's `x-problem-types` are the gettext message ids, and `locale/<language>/LC_MESSAGES/messages.mo`
translates them (`make i18n-extract`, `i18n-update`, `i18n-compile`). The catalogues are read once per
process; the language a header asks for is worked out once per distinct header value and remembered, so
an error response costs a dictionary lookup for it.

Negotiation follows RFC 9110 §12.5.4: the ranges in order of their weight (`q`, first listed first among
equals), `*` for any language, `q=0` for "not this one". A range matches a shipped language when it names
the same language and, where its script is known, the same script; Babel's likely subtags give the script
of a region (`zh-CN` and `zh-SG` are Simplified Chinese, `zh-TW` and `zh-HK` Traditional). A header that
cannot be read, or that asks only for languages not shipped, gets English: never an error.
"""

from __future__ import annotations

import functools
import gettext
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
SOURCE_LANGUAGE = "en"

# Values that fill a text's placeholders, and that problems carry as `i18n_args`.
Args = Mapping[str, str | int]

# RFC 9110 §12.5.4 / RFC 4647 §2.1: a language range, and a weight (at most three decimals).
_RANGE = re.compile(r"\*|[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
_WEIGHT = re.compile(r"[qQ]=(0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")
# RFC 5646 §4.4.1 asks that tags of up to 35 characters be handled; longer ranges are ignored, and so are
# ranges past the first few: the work a header can cause stays bounded.
_MAX_RANGE_LENGTH = 35
_MAX_RANGES = 16
# Headers up to this length are remembered with their answer; real browsers send well under 100
# characters, and a longer (made-up) value is worked out again rather than held in memory.
_MAX_CACHED_HEADER = 256


@dataclass(frozen=True)
class Text:
    """An English text of one problem type: a gettext message whose context is the type's name, so that
    the catalogues (and the docs' problem pages) know which type each text belongs to. With a plural
    form, the argument `count` chooses between the two."""

    context: str
    singular: str
    plural: str | None = None
    count: str = "count"


def N_(problem_type: str, text: str) -> Text:
    """Mark an English text of `problem_type` for translation; it is translated when the response's
    language is known."""
    return Text(problem_type, text)


def Nn_(problem_type: str, singular: str, plural: str) -> Text:
    """Mark an English text of `problem_type` with a singular and a plural form, chosen by `count`."""
    return Text(problem_type, singular, plural)


# A problem type's title (from the spec, a message without context), or a text of the code.
Message = str | Text


@dataclass(frozen=True)
class Language:
    """One language problems are written in."""

    # The Content-Language value (RFC 5646): `en`, `zh-CN`.
    tag: str
    locale: Locale
    translations: gettext.NullTranslations

    def text(self, message: Message, args: Args | None = None) -> str:
        """The message in this language, its placeholders filled from `args`."""
        if isinstance(message, str):
            text = self.translations.gettext(message)
        elif message.plural is None:
            text = self.translations.pgettext(message.context, message.singular)
        else:
            count = int((args or {})[message.count])
            text = self.translations.npgettext(message.context, message.singular, message.plural, count)
        return text % args if args else text

    def template(self, message: Message) -> str:
        """The message in this language with its placeholders unfilled; both forms of a plural where
        this language has two."""
        if isinstance(message, Text) and message.plural is not None:
            forms = dict.fromkeys(
                self.translations.npgettext(message.context, message.singular, message.plural, n)
                for n in (1, 2)
            )
            return " / ".join(forms)
        return self.text(message)

    def matches(self, wanted: Locale) -> bool:
        if wanted.language != self.locale.language:
            return False
        return wanted.script is None or self.locale.script is None or wanted.script == self.locale.script


class Languages:
    """The shipped languages, English first (the default), and the choice among them per header."""

    def __init__(self, languages: Sequence[Language]) -> None:
        self._languages = tuple(languages)
        self.default = self._languages[0]
        # Per instance, so that the caches go with the catalogues they point into.
        self._negotiate_cached = functools.lru_cache(maxsize=512)(self._negotiate)
        self._match_range = functools.lru_cache(maxsize=1024)(self._match_range_uncached)

    @classmethod
    def load(cls, locale_dir: Path = LOCALE_DIR) -> Languages:
        """English, then every language with a compiled catalogue under `locale_dir`, by tag."""
        found = [Language(SOURCE_LANGUAGE, Locale.parse(SOURCE_LANGUAGE), gettext.NullTranslations())]
        for mo_file in sorted(locale_dir.glob(f"*/LC_MESSAGES/{DOMAIN}.mo")):
            name = mo_file.parent.parent.name
            translations = Translations.load(str(locale_dir), [name], DOMAIN)
            found.append(Language(name.replace("_", "-"), Locale.parse(name), translations))
        return cls(found)

    def __iter__(self) -> Iterator[Language]:
        return iter(self._languages)

    def negotiate(self, accept_language: str | None) -> Language:
        """The language to answer in, for an `Accept-Language` value (None when the header is absent)."""
        if not accept_language:
            return self.default
        if len(accept_language) > _MAX_CACHED_HEADER:
            return self._negotiate(accept_language)
        return self._negotiate_cached(accept_language)

    def _negotiate(self, header: str) -> Language:
        ranges = parse_accept_language(header)
        refused = {
            language
            for wanted, weight in ranges
            if weight == 0 and wanted != "*"
            for language in [self._match_range(wanted)]
            if language is not None
        }
        for wanted, weight in ranges:
            if weight == 0:
                continue
            if wanted == "*":
                # Any language: the first shipped one the caller did not refuse.
                chosen = next((lang for lang in self._languages if lang not in refused), None)
            else:
                chosen = self._match_range(wanted)
            if chosen is not None and chosen not in refused:
                return chosen
        return self.default

    def _match_range_uncached(self, wanted: str) -> Language | None:
        locale = _parse_range(wanted)
        if locale is None:
            return None
        return next((language for language in self._languages if language.matches(locale)), None)


def parse_accept_language(header: str) -> list[tuple[str, float]]:
    """The well-formed ranges of an `Accept-Language` value with their weights, heaviest first (in
    header order among equals). Malformed members are skipped, not fatal."""
    ranges = []
    for member in header.split(",")[:_MAX_RANGES]:
        language_range, *parameters = (part.strip() for part in member.split(";"))
        if len(language_range) > _MAX_RANGE_LENGTH or not _RANGE.fullmatch(language_range):
            continue
        weight = 1.0
        if parameters:
            found = _WEIGHT.fullmatch(parameters[0].replace(" ", ""))
            if found is None:
                continue
            weight = float(found.group(1))
        ranges.append((language_range, weight))
    ranges.sort(key=lambda item: -item[1])
    return ranges


def _parse_range(wanted: str) -> Locale | None:
    """The locale a language range names, its script filled in from Babel's likely subtags; a range
    Babel cannot read whole (private use, an unknown variant) is read as its primary language."""
    for candidate in (wanted, wanted.split("-", 1)[0]):
        try:
            return Locale.parse(candidate, sep="-")
        except (ValueError, UnknownLocaleError):
            continue
    return None


@functools.cache
def problem_texts(template: Path = LOCALE_DIR / f"{DOMAIN}.pot") -> dict[str, tuple[Text, ...]]:
    """The texts of each problem type (details and parameter descriptions), by type name, as the
    catalogues' template lists them: what the docs' problem pages show in each language."""
    with template.open("rb") as source:
        catalog = read_po(source)
    grouped: dict[str, list[Text]] = {}
    for message in catalog:
        if not message.context:
            continue  # a title, shown with its type
        if isinstance(message.id, tuple):
            text = Text(message.context, message.id[0], message.id[1])
        else:
            text = Text(message.context, message.id)
        grouped.setdefault(message.context, []).append(text)
    return {name: tuple(texts) for name, texts in grouped.items()}


@functools.cache
def shipped_languages() -> Languages:
    """The package's languages, loaded once per process: the catalogues do not change while it runs."""
    return Languages.load()
