"""The pages the browser tests open, and what each one must let a keyboard user do.

:data:`PAGES` is the one list to extend when a page is added: its path under
``/ui`` (with ``{instrument}`` and the ids of :class:`SiteUnderTest.names`), the
sites that serve it, and its keyboard checks. Every page listed is loaded on each
of its sites, checked for console errors, failed requests, the CSP header and axe
violations, and photographed (tests/browser/test_browser_pages.py); each keyboard check
runs on its own fresh page.

A keyboard check is a function ``(page, site)`` that moves only with the keyboard
(Tab, typing, Enter) from a freshly loaded page, and asserts what a user would see.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["PAGES", "KeyCheck", "PageCase", "SiteUnderTest", "tab_to"]

#: The sites the pages are served by: ``koa-archive serve`` (/ui/) and ``koa-cal ui``.
SITES = ("archive", "cache")
#: Tab presses allowed to reach a control; a page whose control is further is a failure.
MAX_TABS = 80


@dataclass
class SiteUnderTest:
    """A running site: its kind, where its pages are, a signed-in browser context.

    Attributes
    ----------
    kind : str
        ``"archive"`` or ``"cache"``.
    base : str
        The URL of its pages, ``http://127.0.0.1:PORT/ui``.
    context : playwright BrowserContext
        Signed in where the site needs a token.
    names : dict
        What page paths are filled in with: ``instrument``, ``record`` (a record with
        several versions, one retracted), ``reason`` (why it was retracted), ``flats``
        (how many live flat records), ``manifest`` (the run manifest that pinned the
        retracted record, in ``koa-cal ui --manifests``), ``spare`` (a live dark).
    """

    kind: str
    base: str
    context: Any
    names: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class KeyCheck:
    """One thing a keyboard user does on a page, on the sites listed."""

    name: str
    run: Callable[[Any, SiteUnderTest], None]
    sites: tuple[str, ...] = SITES
    #: True: the page it ends on is photographed too (a result worth showing in docs/ui.rst).
    photograph: bool = False


@dataclass(frozen=True)
class PageCase:
    """A page of the site: its path under ``/ui``, its sites and its keyboard checks."""

    name: str
    path: str
    keyboard: tuple[KeyCheck, ...]
    sites: tuple[str, ...] = SITES
    #: False: opened in a browser that has not signed in (the login page).
    signed_in: bool = True

    def url(self, site: SiteUnderTest) -> str:
        return site.base + self.path.format(**site.names)


def tab_to(page: Any, selector: str, presses: int = MAX_TABS) -> None:
    """Press Tab until the first element matching ``selector`` (CSS) has the focus.

    The presses the document order predicts are sent before the first look (the
    pages set no ``tabindex`` above 0), then one press at a time; at most ``presses``.
    """
    ahead = page.evaluate(_TABS_AHEAD, selector)
    assert ahead is not None, f"no focusable {selector} on {page.url}"
    sent = 0
    for _ in range(min(max(ahead - 1, 0), presses)):
        page.keyboard.press("Tab")
        sent += 1
    while sent < presses:
        page.keyboard.press("Tab")
        sent += 1
        if page.evaluate("s => document.activeElement === document.querySelector(s)", selector):
            return
    raise AssertionError(f"{selector} was not reached with {presses} presses of Tab")


#: How many Tab presses the document order puts between the focus and the target.
_TABS_AHEAD = """selector => {
  const target = document.querySelector(selector);
  if (!target) return null;
  const focusable = [...document.querySelectorAll(
    'a[href], button, input:not([type=hidden]), select, textarea, [tabindex]')]
    .filter(e => e.tabIndex >= 0 && !e.disabled);
  const from = focusable.indexOf(document.activeElement);
  return focusable.indexOf(target) - from;
}"""


def _params(page: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def _press_enter_and_wait(page: Any, wanted: Callable[[str], bool]) -> None:
    page.keyboard.press("Enter")
    page.wait_for_url(wanted)
    page.wait_for_load_state()


# -- the checks ------------------------------------------------------------------------


def skip_link(page: Any, site: SiteUnderTest) -> None:
    """The first Tab shows the skip link; Enter moves the focus into the main content."""
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused.strip() == "Skip to content"
    assert page.locator("a.skip").is_visible()
    box = page.locator("a.skip").bounding_box()
    assert box is not None and box["x"] >= 0 and box["y"] >= 0  # on screen while focused
    page.keyboard.press("Enter")
    page.wait_for_function("document.activeElement && document.activeElement.id === 'main'")
    assert page.url.endswith("#main")
    page.keyboard.press("Tab")  # the next stop is past the header and its navigation
    assert not page.evaluate("document.querySelector('header').contains(document.activeElement)")


def browse_filter(page: Any, site: SiteUnderTest) -> None:
    """Tab to the cal_type filter, type ``flat``, press Enter: only flats are listed."""
    tab_to(page, "#f-type")
    page.keyboard.type("flat")
    _press_enter_and_wait(page, lambda url: "cal_type=flat" in url)
    types = page.locator("table.records tbody td:nth-of-type(1)").all_inner_texts()
    assert types and set(types) == {"flat"}, types
    assert page.locator("p[role=status] strong").inner_text() == str(site.names["flats"])


def browse_sort(page: Any, site: SiteUnderTest) -> None:
    """Tab to the ``filename`` column header, press Enter: the table is sorted by it."""
    tab_to(page, "thead a[href*='sort=filename']")
    _press_enter_and_wait(page, lambda url: "sort=filename" in url)
    header = page.locator("th[aria-sort]")
    assert header.inner_text().startswith("filename")
    order = header.get_attribute("aria-sort")
    names = page.locator("table.records tbody th[scope=row]").all_inner_texts()
    assert names == sorted(names, reverse=order == "descending"), names


def browse_next_page(page: Any, site: SiteUnderTest) -> None:
    """Tab to "Next page", press Enter: a later page, with other rows."""
    first = page.locator("table.records tbody th[scope=row]").all_inner_texts()
    tab_to(page, "a[rel=next]")
    _press_enter_and_wait(page, lambda url: "after=" in url)
    assert "a later page" in page.locator("table.records caption").inner_text()
    later = page.locator("table.records tbody th[scope=row]").all_inner_texts()
    assert later and not set(later) & set(first)


def overview_window(page: Any, site: SiteUnderTest) -> None:
    """Tab to the gap threshold, type 3, press Enter: the coverage uses 3 nights."""
    tab_to(page, "#cov-gap")
    page.keyboard.press("Control+A")
    page.keyboard.type("3")
    _press_enter_and_wait(page, lambda url: "gap_nights=3" in url)
    assert "longer than 3 nights" in page.locator("#coverage-summary").inner_text()


def record_version(page: Any, site: SiteUnderTest) -> None:
    """Tab to another version in the family table, press Enter: that record's page."""
    here = page.url
    tab_to(page, "section[aria-labelledby=family-title] a")
    _press_enter_and_wait(page, lambda url: "/records/" in url and url != here)
    assert page.locator("h1").inner_text().endswith(".fits")


def changes_later(page: Any, site: SiteUnderTest) -> None:
    """Tab to "Later changes", press Enter: the list continues after the last seq shown."""
    shown = page.locator("tbody th[scope=row]").all_inner_texts()
    # Each change has two links (its seq and its file) before the pager below the list.
    tab_to(page, "a[rel=next]", presses=2 * len(shown) + MAX_TABS)
    _press_enter_and_wait(page, lambda url: "since=" in url)
    assert _params(page)["since"] == [shown[-1]]
    assert page.locator("tbody th[scope=row]").first.inner_text() == str(int(shown[-1]) + 1)


def timeline_mark(page: Any, site: SiteUnderTest) -> None:
    """Tab to the first mark of the drawing (an SVG link), press Enter: its record's page."""
    mark = "svg.timeline a[href*='/records/']"
    href = page.locator(mark).first.get_attribute("href")
    tab_to(page, mark)
    _press_enter_and_wait(page, lambda url: url.endswith(href))
    assert page.locator("h1").inner_text().endswith(".fits")
    assert page.locator("table").first.is_visible()


def timeline_filter(page: Any, site: SiteUnderTest) -> None:
    """Tab to the cal_type filter, type ``arc``, press Enter: only the arcs are drawn."""
    tab_to(page, "#f-type")
    page.keyboard.type("arc")
    _press_enter_and_wait(page, lambda url: "cal_type=arc" in url)
    lanes = page.locator("table:not(.records) tbody th[scope=row]").all_inner_texts()
    assert lanes and set(lanes) == {"arc"}, lanes  # one lane per spectrograph
    marks = page.locator("svg.timeline a[href*='/records/']").count()
    assert page.locator("#timeline-summary strong").inner_text() == str(marks) and marks > 0


def manifest_pick(page: Any, site: SiteUnderTest) -> None:
    """Tab to the manifests list, pick the run by typing its name, send: a retracted pin."""
    tab_to(page, "#pick")
    page.keyboard.type(site.names["manifest"][:6])
    assert page.locator("#pick").input_value() == site.names["manifest"]
    tab_to(page, "section[aria-labelledby=pick-title] button")
    _press_enter_and_wait(page, lambda url: "pick=" in url)
    assert page.locator("#check-title").inner_text() == site.names["manifest"]
    assert "1 of 1 pins must be redone" in page.locator("p.summary").inner_text()
    status = page.locator("section[aria-labelledby=check-title] tbody td:nth-of-type(2)")
    assert status.inner_text().startswith("Retracted on "), status.inner_text()
    assert site.names["reason"] in status.inner_text()


def explain_choice(page: Any, site: SiteUnderTest) -> None:
    """Fill the selection and the frame with the keyboard, press Enter: the choice shown."""
    tab_to(page, "#g-selector")
    page.keyboard.type("latest")
    tab_to(page, "#g-cal_type")
    page.keyboard.type("flat")
    for name, value in (
        ("datetime_obs", "2025-03-01T03:00:00"),
        ("spectrograph", "yJ"),
        ("instrument_era", "era1"),
    ):
        tab_to(page, f"#m-{name}")
        page.keyboard.type(value)
    _press_enter_and_wait(page, lambda url: "cal_type=flat" in url)
    chosen = page.locator("#result-title + p.summary").inner_text()
    # The second version is retracted: the third is chosen, the second listed as skipped.
    assert chosen.startswith("Chosen: ") and "_v003.fits" in chosen, chosen
    skipped = page.locator("table", has_text="Skipped: retracted").inner_text()
    assert "_v002.fits" in skipped and site.names["reason"] in skipped


SKIP_LINK = KeyCheck("skip link", skip_link)

#: Every page the browser tests open. Add a page here, with its keyboard checks.
PAGES = (
    PageCase("home", "/", (SKIP_LINK,)),
    PageCase("overview", "/{instrument}/", (SKIP_LINK, KeyCheck("window", overview_window))),
    PageCase(
        "browse",
        "/{instrument}/browse",
        (
            SKIP_LINK,
            KeyCheck("filter", browse_filter),
            KeyCheck("sort", browse_sort),
            KeyCheck("next page", browse_next_page),
        ),
    ),
    PageCase(
        "record", "/{instrument}/records/{record}", (SKIP_LINK, KeyCheck("version", record_version))
    ),
    PageCase(
        "changes",
        "/{instrument}/changes",
        (SKIP_LINK, KeyCheck("later", changes_later, sites=("archive",))),
    ),
    PageCase(
        "timeline",
        "/{instrument}/timeline",
        (SKIP_LINK, KeyCheck("mark", timeline_mark), KeyCheck("filter", timeline_filter)),
    ),
    PageCase(
        "manifest",
        "/{instrument}/manifest",
        (SKIP_LINK, KeyCheck("pick", manifest_pick, sites=("cache",), photograph=True)),
    ),
    PageCase(
        "explain",
        "/{instrument}/explain",
        (SKIP_LINK, KeyCheck("choice", explain_choice, photograph=True)),
        sites=("cache",),
    ),
    PageCase("login", "/login", (SKIP_LINK,), sites=("archive",), signed_in=False),
)
