"""The timeline page, ``/INST/timeline``: the drawing of :mod:`.timeline` with its tables.

Its filters are the browse page's GET parameters (``cal_type``, ``origin``,
``date_time_start``, ``date_time_end``, ``include_retracted``, any column), so
its URL is its permalink and it links to the browse page of the same query.

Examples
--------
>>> Route("/{instrument}/timeline", TimelinePage(pages).render, methods=["GET"])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from .column_filters import filterable
from .reader import BadQuery, BrowseQuery
from .timeline import MAX_LANES, MAX_MARKS, draw_timeline

if TYPE_CHECKING:
    from .app import Pages

logger = logging.getLogger(__name__)

__all__ = ["TimelinePage"]


class TimelinePage:
    """The handler of the timeline page, over the pages' reader, access rule and templates.

    Parameters
    ----------
    pages : Pages
        The site's pages (:func:`~.app.create_ui`), whose guard and rendering it uses.
    """

    def __init__(self, pages: Pages):
        self.pages = pages

    def render(self, request: Request) -> Response:
        """The page, or the error page naming the bad parameter (400).

        Synchronous: Starlette runs it in a worker thread, as the other pages.
        """
        pages = self.pages
        refusal, inst = pages.guard(request)
        if refusal is not None:
            return refusal
        columns = pages.reader.column_names(inst)
        try:
            query = BrowseQuery.parse(request.query_params, columns)
            view = draw_timeline(pages.reader, inst, query)
        except BadQuery as exc:
            return pages.problem(request, 400, str(exc))
        return pages.render(
            request,
            "timeline.html",
            instrument=inst,
            query=query,
            view=view,
            columns=filterable(columns),
            max_marks=MAX_MARKS,
            max_lanes=MAX_LANES,
        )
