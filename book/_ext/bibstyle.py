"""Author-year labels for the references page.

The chapters cite with ``bibtex_reference_style: author_year`` which renders
"[Ho et al., 2020]" / "Ho et al. [2020]".  By default the ``{bibliography}`` directive labels its
entries with pybtex's *alpha* style ("[HJA20]").  This extension registers a
pybtex label style that builds the label from the same author and year
templates sphinxcontrib-bibtex uses for in-text citations ("Ho et al., 2020",
with "a", "b", ... appended to the year when two entries would share a label),
a sorting style (first author, then single / two-author / "et al." groups,
then year) and a formatting style (pybtex's unsrt) that uses both.  Select
it with ``bibtex_default_style: author_year`` in the Sphinx configuration.
"""

from collections import Counter
from types import SimpleNamespace

import pybtex.plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.sorting.author_year_title import (
    SortingStyle as AuthorYearTitleSortingStyle,
)
from sphinxcontrib.bibtex.style.referencing import PersonStyle
from sphinxcontrib.bibtex.style.template import (
    author_or_editor_or_title,
    year,
)

STYLE_NAME = "author_year"


class AuthorYearLabelStyle(BaseLabelStyle):
    """Label "Author, Year", "Author and Other, Year", "Author et al., Year"."""

    def __init__(self):
        # Same person formatting (last names, " and ", " et al.") as the
        # author_year reference style used for {cite:p} / {cite:t}.
        self._person = PersonStyle()
        self._style = SimpleNamespace(person=self._person)

    def _authors(self, entry):
        template = author_or_editor_or_title(
            sep=self._person.sep,
            sep2=self._person.sep2,
            last_sep=self._person.last_sep,
            other=self._person.other,
        )
        data = {"entry": entry, "style": self._style}
        return template.format_data(data).render_as("text")

    def _year(self, entry):
        data = {"entry": entry, "style": self._style}
        return year.format_data(data).render_as("text")

    def format_labels(self, sorted_entries):
        parts = [(self._authors(e), self._year(e)) for e in sorted_entries]
        counts = Counter(parts)
        seen = Counter()
        for authors, yr in parts:
            if counts[(authors, yr)] > 1:
                suffix = chr(ord("a") + seen[(authors, yr)])
                seen[(authors, yr)] += 1
            else:
                suffix = ""
            yield f"{authors}, {yr}{suffix}"


def _surname(person):
    """Plain-text, lower-case "von Last" of a person, LaTeX accents decoded."""
    parts = person.rich_prelast_names + person.rich_last_names
    return " ".join(part.render_as("text") for part in parts).lower()


class AuthorYearSortingStyle(AuthorYearTitleSortingStyle):
    """Sort the way the author-year labels read.

    Entries are grouped by the first author's surname; within a surname,
    single-author works come first, then two-author works (by the second
    surname), then "et al." works; then by year, then by the full author list
    and title (pybtex's author_year_title key) to break ties.  So "Ho et al.,
    2020" precedes "Ho et al., 2022", whatever the spelling of first names.
    """

    def sorting_key(self, entry):
        persons = entry.persons.get("author") or entry.persons.get("editor") or []
        if persons:
            first = _surname(persons[0])
        else:
            first = entry.fields.get("title", "").lower()
        group = min(len(persons), 3)
        second = _surname(persons[1]) if len(persons) == 2 else ""
        return (first, group, second, entry.fields.get("year", ""),
                super().sorting_key(entry))


class AuthorYearStyle(UnsrtStyle):
    """unsrt formatting, author-year labels, sorted by author then year."""

    default_label_style = STYLE_NAME
    default_sorting_style = STYLE_NAME


def _register():
    for group, klass in (
        ("pybtex.style.labels", AuthorYearLabelStyle),
        ("pybtex.style.sorting", AuthorYearSortingStyle),
        ("pybtex.style.formatting", AuthorYearStyle),
    ):
        try:
            pybtex.plugin.find_plugin(group, STYLE_NAME)
        except pybtex.plugin.PluginNotFound:
            pybtex.plugin.register_plugin(group, STYLE_NAME, klass)


_register()


def setup(app):
    _register()
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
