"""Figures and interactive demos.

- ``plots``: matplotlib figures, one module a topic
- ``widgets``: ipywidgets demos, each with a static fallback for the rendered book
- ``glue``: the run's numbers pasted into the chapter's prose (myst-nb glue) (Chapter 4)

The top layer of the library: nothing else in ``t2i_lib`` imports it.
"""
