"""ClusterBrowser: pick a SpRAy cluster, see its mean heatmap and some of its images.

>>> import numpy as np
>>> from lrp_tutor.analysis import spray
>>> R = np.zeros((30, 6, 6)); R[:15, 0, 0] = 1; R[15:, 5, 5] = 1
>>> R += np.random.default_rng(0).random(R.shape) * 0.1
>>> browser = spray(R, size=None, n_neighbors=4).widget(images=np.random.rand(30, 6, 6))
>>> type(browser.widget).__name__, browser.cluster
('VBox', 0)
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties

from ..viz import style
from ..viz._axes import new_figure, symmetric_norm
from ._base import WidgetShell
from ._image import png_bytes
from ._look import Look


def _image_of(images: Any, i: int) -> np.ndarray:
    image = images[int(i)]
    image = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3 and image.shape[0] in (1, 3):
        image = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    return image


class ClusterBrowser(WidgetShell):
    """A dropdown of clusters; for the chosen one its mean heatmap and ``examples`` images.

    Parameters
    ----------
    result : SpRAyResult
    images : array or tensor, optional
        The inputs, indexed like the store (``result.indices`` picks from them).
    examples : int
        How many images of the cluster to show.
    scale : float, optional
        Lecture-mode size.
    """

    def __init__(
        self, result: Any, *, images: Any = None, examples: int = 8, scale: float | None = None
    ) -> None:
        self.result, self.images, self.examples = result, images, examples
        self.look = look = Look(scale)
        options = [
            (f"cluster {c} ({n} heatmaps)", c) for c, n in enumerate(result.sizes().tolist())
        ]
        self.choice = w.Dropdown(options=options, value=0, description="")
        self.image = look.image()
        self.widget = w.VBox([self.choice, self.image])
        self._figure: Figure | None = None
        self._show()
        self.choice.observe(lambda _change: self._show(), names="value")

    @property
    def cluster(self) -> int:
        """The cluster shown."""
        return int(self.choice.value)

    def _show(self) -> None:
        c = self.cluster
        mean = self.result.cluster_means()[c]
        members = self.result.members(c)[: self.examples] if self.images is not None else []
        with self.look.drawing(), style.context():
            # A row of square pictures and, above them, room for the title's lines at the
            # style's title size (the type grows faster than the figure in lecture mode, so
            # there the title takes two lines to stay within its narrow panel).
            st = style.current()
            lines = 2 if st.lecture else 1
            title_pt = FontProperties(size=mpl.rcParams["axes.titlesize"]).get_size_in_points()
            side = 1.6 * st.figure_scale
            height = max(2.0 * st.figure_scale, side + lines * 1.25 * title_pt / 72 + 0.15)
            fig = new_figure(1.6 * (1 + len(members)), 2.0)
            fig.set_size_inches(fig.get_figwidth(), height)
            axes = fig.subplots(1, 1 + len(members), squeeze=False)[0]
            limit = float(np.abs(mean).max()) or 1.0
            axes[0].imshow(mean, cmap="bwr", norm=symmetric_norm(limit))
            axes[0].set_title("mean of" + ("\n" if lines == 2 else " ") + f"cluster {c}")
            for ax, i in zip(axes[1:], members, strict=True):
                ax.imshow(_image_of(self.images, i), cmap="gray")
                ax.set_title(f"#{int(i)}")
            for ax in axes:
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_anchor("S")  # square pictures at the bottom of their cells, titles above
            style.finish(fig)
            self.image.value = png_bytes(fig)
        self._figure = fig

    @property
    def figure(self) -> Figure | None:
        return self._figure

    def __repr__(self) -> str:
        return f"<ClusterBrowser: cluster {self.cluster} of {self.result.n_clusters}>"
