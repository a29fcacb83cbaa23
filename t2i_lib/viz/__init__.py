"""Figures and interactive demos.

- ``plots``: matplotlib figures, one module a topic (Chapters 1-5)
- ``widgets``: ipywidgets demos, each with a static fallback for the rendered book (Chapters 1, 3, 4)
- ``glue``: the run's numbers pasted into the chapter's prose (myst-nb glue) (Chapter 4)
- ``tables``: results tables, HTML in the book and aligned text elsewhere (Chapters 2-3)

The top layer of the library: nothing else in ``t2i_lib`` imports it.
"""
