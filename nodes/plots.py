"""Plot nodes: images with a celestial grid, detected and catalogue stars (WCSAxes)."""
from __future__ import annotations

from pydantic import Field
from starloom.graph_runtime.node import Node, Params, Port


class AnnotatedImage(Node):
    type_id = "plots.annotated_image"
    libraries = ("astropy", "matplotlib")
    title = "Annotated sky image"
    category = "plots"
    description = """
    Draw an image with a celestial coordinate grid (matplotlib WCSAxes), an asinh display
    stretch over a percentile interval, detected stars as green circles and catalogue stars as
    red crosses, and write it to outputs/ (PNG, or PDF/SVG by the file name's suffix). RGB
    images are drawn as the mean of their planes.
    """

    class Params(Params):
        filename: str = Field("annotated.png", pattern=r"(?i)^[^/\\]+\.(png|pdf|svg)$",
                              description="Output file name (.png, .pdf or .svg)")
        title: str = Field("", description="Plot title; empty: the OBJECT keyword, if any")
        percentile: float = Field(99.5, gt=50, le=100, description="Percentile interval of the "
                                                                  "display stretch")
        max_catalog: int = Field(300, ge=0, le=100_000, description="Brightest catalogue stars "
                                                                   "drawn (inside the image)")
        label_mag: float | None = Field(None, ge=-2, le=30, description="Write the magnitude "
                                           "of catalogue stars brighter than this; empty: none")
        dpi: int = Field(100, ge=30, le=600, description="Resolution of the figure, dots per inch")

    inputs = {"image": Port("Image", "image with a celestial WCS"),
              "stars": Port("Table", "detected stars (x, y in px, fwhm) measured on this image",
                            optional=True),
              "catalog": Port("Table", "catalogue stars (ra, dec in deg, mag)", optional=True)}
    outputs = {"path": Port("Path", "written figure")}

    def run(self, ctx, params, image, stars=None, catalog=None):
        import numpy as np
        from starloom.astro.frames import as_header
        from starloom.astro.plots import plot_annotated
        from starloom.astro.wcsutil import mean_plane, require_wcs, rows_on_data
        w = require_wcs(image, "image")
        data, mask = mean_plane(image)
        if mask is not None:
            data = np.where(mask, np.nan, data)
        if catalog is not None and len(catalog):
            catalog = rows_on_data(catalog, w, data)
        title = params.title or str(as_header(image.meta).get("OBJECT", "") or "").strip() or None
        path = plot_annotated(ctx.output_path(params.filename), data, w, stars=stars,
                                 catalog=catalog, title=title, max_catalog=params.max_catalog,
                                 percent=params.percentile, dpi=params.dpi,
                                 label_mag=params.label_mag)
        ctx.diagnostics.update(n_stars=0 if stars is None else len(stars),
                               n_catalog=0 if catalog is None else len(catalog))
        return {"path": str(path)}


NODES = [AnnotatedImage]
