"""Interactive demos. Each is live (ipywidgets) in a kernel and a static HTML fallback in the rendered book.

- ``base``: the live/static choice (``T2I_STATIC_WIDGETS``), PNG encoding (Chapter 1)
- ``latent``: the latent-space explorer (Chapter 1)
- ``estimators``: the gradient-estimator explorer (Chapter 3)
- ``codebook``: the codebook explorer: which image cells chose a code (Chapter 4)
"""

from t2i_lib.viz.widgets.base import widget_mode
from t2i_lib.viz.widgets.codebook import codebook_explorer
from t2i_lib.viz.widgets.estimators import estimator_explorer
from t2i_lib.viz.widgets.latent import latent_explorer

__all__ = ["codebook_explorer", "estimator_explorer", "latent_explorer", "widget_mode"]
