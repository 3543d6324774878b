"""Colour nodes: debayer CFA mosaics (:mod:`starloom.astro.debayer`), compose RGB and LRGB
from filter stacks and stretch colour images for display (:mod:`starloom.astro.colour`).

Colour images travel between nodes as planar RGB ``CCDData`` of shape (3, ny, nx).
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from starloom.graph_runtime.node import Node, Params, Port

PatternName = Literal["auto", "RGGB", "GRBG", "GBRG", "BGGR"]


class DebayerParams(Params):
    method: Literal["bilinear", "malvar2004", "menon2007", "superpixel"] = Field(
        "malvar2004", description="Interpolation (colour-demosaicing: bilinear, Malvar 2004, Menon "
                                  "2007) or 'superpixel' (each 2x2 tile -> one RGB pixel, half size)")
    pattern: PatternName = Field(
        "auto", description="CFA pattern from the array's first pixel (FITS pixel 1,1 as stored); "
                            "'auto': from BAYERPAT, honouring ROWORDER and XBAYROFF/YBAYROFF")


def _debayer(ctx, params, image, name):
    import numpy as np
    from starloom.astro.debayer import debayer_ccd
    rgb = debayer_ccd(image, params.method, params.pattern, name=name)
    levels = [float(np.nanmedian(p)) for p in rgb.data]
    ctx.history(f"debayered ({rgb.header['CFAPAT']}, {params.method})")
    return rgb, {"pattern": rgb.header["CFAPAT"], "method": params.method,
                 "shape": list(rgb.shape), "median_rgb": levels}


class Debayer(Node):
    type_id = "colour.debayer"
    libraries = ("astropy", "colour-demosaicing", "scipy")
    title = "Debayer"
    category = "colour"
    description = """
    Turn a one-shot-colour (CFA, Bayer) mosaic into a planar RGB image (3, ny, nx), float32,
    WCS kept: bilinear, Malvar 2004 or Menon 2007 interpolation (colour-demosaicing, on float
    data, no quantizing) or super-pixel binning (half size, WCS rescaled). The pattern comes
    from BAYERPAT, flipped for ROWORDER = 'BOTTOM-UP' and shifted by XBAYROFF/YBAYROFF, or
    from the 'pattern' parameter when the header lacks or misstates it. NaN and masked pixels
    are masked in the output with the neighbours their kernel reached.
    """

    Params = DebayerParams
    inputs = {"image": Port("Image", "CFA mosaic, 2-D")}
    outputs = {"image": Port("Image", "planar RGB image (3, ny, nx)")}

    def run(self, ctx, params, image):
        rgb, info = _debayer(ctx, params, image, "input 'image'")
        ctx.diagnostics.update(info)
        _preview(ctx, rgb)
        return {"image": rgb}


class DebayerFrames(Node):
    type_id = "colour.debayer_frames"
    libraries = ("astropy", "colour-demosaicing", "scipy")
    title = "Debayer frames"
    category = "colour"
    per_frame = "frames"
    description = """
    Debayer every frame of a series (as 'Debayer' does for one image), e.g. to register and
    stack in colour. Each frame is cached on its own.
    """

    Params = DebayerParams
    inputs = {"frames": Port("FrameSeries", "CFA mosaics")}
    outputs = {"frames": Port("FrameSeries", "planar RGB frames (3, ny, nx)")}

    def run(self, ctx, params, frame):
        rgb, info = _debayer(ctx, params, frame, ctx.frame or "frame")
        ctx.diagnostics.update(info)
        return {"frames": rgb}


class ComposeRGB(Node):
    type_id = "colour.compose_rgb"
    libraries = ("astropy", "reproject")
    title = "Compose RGB / LRGB"
    category = "colour"
    description = """
    Build a planar RGB image (3, ny, nx) from red, green and blue filter stacks, each
    reprojected onto the reference stack's WCS first (reproject_interp, bilinear); stacks
    without a WCS must share one pixel grid. With a luminance (L) stack, LRGB: L, scaled onto
    the RGB intensity (R+G+B)/3 by a clipped least-squares line, replaces that intensity while
    the colour differences R-Y, G-Y, B-Y are kept.
    """

    class Params(Params):
        reference: Literal["red", "green", "blue", "luminance"] = Field(
            "red", description="Stack whose WCS and pixel grid the result takes")

    inputs = {"red": Port("Image", "red filter stack"),
              "green": Port("Image", "green filter stack"),
              "blue": Port("Image", "blue filter stack"),
              "luminance": Port("Image", "luminance (L) stack, for LRGB", optional=True)}
    outputs = {"image": Port("Image", "planar RGB image (3, ny, nx)")}

    def run(self, ctx, params, red, green, blue, luminance=None):
        from starloom.astro.colour import compose_rgb

        rgb, info = compose_rgb(red, green, blue, luminance, reference=params.reference)
        ctx.diagnostics.update(info)
        ctx.history(f"composed {rgb.header['COLORSPC']} on the {params.reference} stack's grid")
        _preview(ctx, rgb, "linked")
        return {"image": rgb}


def _preview(ctx, rgb, colour="unlinked"):
    """A small colour PNG of the result for the run report (unlinked: raw colour casts hidden)."""
    from starloom.astro import stretch
    from starloom.astro.colour import colour_stretch

    small = stretch.thumbnail(rgb.data, 512)
    stretch.write_png(ctx.artifact_path("preview.png"), colour_stretch(small, colour), 8)


NODES = [Debayer, DebayerFrames, ComposeRGB]
