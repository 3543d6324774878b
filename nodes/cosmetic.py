"""Cosmetic correction nodes: hot, cold, bad-pixel and cosmic-ray maps, and their correction.

The numerics are :mod:`starloom.astro.cosmetic` (Siril's deviant-pixel detection with local
robust statistics, ccdproc's ``ccdmask`` and ``cosmicray_lacosmic``). Every map is an Image
output (uint8, 1 = flagged) that can be saved and viewed; figures go to the artifacts.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field
from starloom.astro.errors import StarloomError
from starloom.graph_runtime.node import Node, Params, Port, Quantity

from ._common import single_image

CfaMode = Literal["auto", "yes", "no"]
CFA_DESCRIPTION = ("CFA (Bayer) mosaic: 'auto' when the frame has BAYERPAT; then only "
                   "neighbours of the same colour are used")


def _map_image(mask: np.ndarray, imagetyp: str, source=None) -> CCDData:
    """A pixel map as an Image: uint8 data (1 = flagged), IMAGETYP, and the source's
    instrument keywords so the map can be matched to its camera later."""
    import astropy.units as u
    import numpy as np
    from astropy.io import fits
    from astropy.nddata import CCDData
    img = CCDData(np.asarray(mask, np.uint8), unit=u.dimensionless_unscaled, meta=fits.Header())
    img.header["IMAGETYP"] = imagetyp
    img.header["NFLAGGED"] = (int(np.count_nonzero(mask)), "pixels flagged in this map")
    for key in ("INSTRUME", "XBINNING", "YBINNING", "BAYERPAT", "GAIN", "OFFSET"):
        if source is not None and source.header.get(key) is not None:
            img.header[key] = source.header[key]
    return img


def _plot(ctx, filename, data, mask, title, counts=None):
    from starloom.astro.cosmetic_plots import plot_pixel_map

    plot_pixel_map(data, mask, ctx.artifact_path(filename), title, counts=counts)


class DeviantPixels(Node):
    type_id = "cosmetic.deviant_pixels"
    libraries = ("astropy", "scipy", "matplotlib")
    title = "Hot/cold pixel maps"
    category = "cosmetic"
    description = """
    Hot and cold pixel maps of a master dark or master flat: pixels more than sigma_hot above
    (sigma_cold below) the median of their 5x5 same-colour neighbourhood, in robust standard
    deviations (mad_std) of the residuals, as Siril's cosmetic correction with local
    statistics. Given a series of master darks, the longest exposure is used.
    """

    class Params(Params):
        sigma_hot: float = Field(5.0, ge=0, description="Hot threshold, robust sigma above the local median (0: off)")
        sigma_cold: float = Field(5.0, ge=0, description="Cold threshold, robust sigma below the local median (0: off)")
        cfa: CfaMode = Field("auto", description=CFA_DESCRIPTION)

    inputs = {"master": Port(("Image", "FrameSeries"), "master dark (bias-subtracted) or master flat")}
    outputs = {"hot": Port("Image", "hot pixel map (uint8, 1 = hot)"),
               "cold": Port("Image", "cold pixel map (uint8, 1 = cold)"),
               "map": Port("Image", "hot or cold pixels (uint8)")}

    def run(self, ctx, params, master):
        from starloom.astro import cosmetic
        img = single_image(master, "master", longest_exposure=True)
        cfa = cosmetic.is_cfa(img.header, params.cfa)
        hot, cold = cosmetic.deviant_pixels(img.data, params.sigma_hot, params.sigma_cold, cfa=cfa)
        ctx.diagnostics.update(hot=int(hot.sum()), cold=int(cold.sum()), cfa=cfa,
                               source=str(img.header.get("IMAGETYP", "")))
        _plot(ctx, "deviant_pixels.png", img.data, hot | cold, "hot and cold pixels")
        return {"hot": _map_image(hot, "Hot Pixel Map", img),
                "cold": _map_image(cold, "Cold Pixel Map", img),
                "map": _map_image(hot | cold, "Bad Pixel Map", img)}


class BadPixelMap(Node):
    type_id = "cosmetic.bad_pixel_map"
    libraries = ("ccdproc", "astropy", "matplotlib")
    title = "Bad-pixel map (ccdmask)"
    category = "cosmetic"
    description = """
    Bad pixels and bad column segments of a flat by ccdproc.ccdmask (IRAF's ccdmask: pixels
    departing from a moving median by more than lsigma/hsigma robust sigma). On a CFA mosaic it
    runs on each colour plane.
    """

    class Params(Params):
        lsigma: float = Field(9.0, gt=0, description="Low threshold, robust sigma (ccdmask)")
        hsigma: float = Field(9.0, gt=0, description="High threshold, robust sigma (ccdmask)")
        ncmed: int = Field(7, ge=1, description="Columns of the moving median box (ccdmask)")
        nlmed: int = Field(7, ge=1, description="Lines of the moving median box (ccdmask)")
        cfa: CfaMode = Field("auto", description=CFA_DESCRIPTION)

    inputs = {"flat": Port(("Image", "FrameSeries"), "master flat (or flat ratio)")}
    outputs = {"map": Port("Image", "bad-pixel map (uint8, 1 = bad)")}

    def run(self, ctx, params, flat):
        from starloom.astro import cosmetic
        img = single_image(flat, "flat", longest_exposure=True)
        cfa = cosmetic.is_cfa(img.header, params.cfa)
        bad = cosmetic.bad_pixel_map(img, cfa=cfa, lsigma=params.lsigma, hsigma=params.hsigma,
                                     ncmed=params.ncmed, nlmed=params.nlmed)
        ctx.diagnostics.update(bad=int(bad.sum()), cfa=cfa)
        _plot(ctx, "bad_pixel_map.png", img.data, bad, "ccdmask bad pixels")
        return {"map": _map_image(bad, "Bad Pixel Map", img)}


class HotPixelsFromLights(Node):
    type_id = "cosmetic.hot_pixels_from_lights"
    libraries = ("astropy", "scipy", "matplotlib")
    title = "Hot pixels from lights"
    category = "cosmetic"
    description = """
    Find hot pixels without darks, from the light frames themselves (before registration):
    single-pixel spikes (sigma above the 5x5 median, with no bright neighbour, so not a star)
    at the same place in at least min_fraction of the frames. Stars move with the pointing and
    light their neighbours, cosmic rays strike once; hot pixels stay put.
    """

    class Params(Params):
        spike_sigma: float = Field(5.0, gt=0, description="Spike threshold, background sigma above the 5x5 median")
        min_fraction: float = Field(0.5, gt=0, le=1, description="Fraction of the frames a pixel must spike in")
        neighbour_fraction: float = Field(
            0.3, ge=0, lt=1, description="A spike's second-brightest neighbour may reach this "
                                         "fraction of its excess (hot pairs, hot pixels on a "
                                         "star's wing); 0: no neighbour may be bright")
        cfa: CfaMode = Field("auto", description=CFA_DESCRIPTION)

    inputs = {"frames": Port("FrameSeries", "light frames, not registered")}
    outputs = {"map": Port("Image", "hot pixel map (uint8, 1 = hot)")}

    def run(self, ctx, params, frames):
        import numpy as np
        from starloom.astro import cosmetic
        if not len(frames):
            raise StarloomError("no light frames to find hot pixels in")
        first = frames[0]
        cfa = cosmetic.is_cfa(first.header, params.cfa)
        hot, counts = cosmetic.hot_pixels_from_lights(
            frames, params.spike_sigma, params.min_fraction, cfa=cfa,
            neighbour_fraction=params.neighbour_fraction, progress=ctx.progress)
        ctx.diagnostics.update(hot=int(hot.sum()), n_frames=len(frames), cfa=cfa,
                               recurrence=np.bincount(counts.ravel()).tolist())
        _plot(ctx, "hot_pixels_from_lights.png", first.data, hot,
              f"hot pixels (first frame of {len(frames)})", counts=counts)
        ctx.history(f"{int(hot.sum())} hot pixels found in {len(frames)} light frames")
        return {"map": _map_image(hot, "Hot Pixel Map", first)}


class CosmicRays(Node):
    type_id = "cosmetic.cosmic_rays"
    libraries = ("ccdproc", "astroscrappy", "astropy")
    title = "Cosmic rays (L.A.Cosmic)"
    category = "cosmetic"
    per_frame = "frames"
    description = """
    Detect cosmic-ray hits in each frame with L.A.Cosmic (van Dokkum 2001) through
    ccdproc.cosmicray_lacosmic (astroscrappy), and replace them from their same-colour
    neighbours. Outputs the corrected frames and one cosmic-ray map per frame.
    """

    class Params(Params):
        sigclip: float = Field(4.5, gt=0, description="Laplacian-to-noise limit (L.A.Cosmic sigclip)")
        sigfrac: float = Field(0.3, gt=0, description="Fraction of sigclip for neighbouring pixels")
        objlim: float = Field(5.0, gt=0, description="Contrast limit between a ray and an object (star)")
        gain: Quantity("electron/adu", gt=0, description="Detector gain used for the noise model") = 1.0
        readnoise: Quantity("electron", ge=0, description="Read noise used for the noise model") = 6.5
        satlevel: Quantity("electron", gt=0, description="Saturation level in electrons (ADU times gain, L.A.Cosmic's convention); saturated stars are not rays") = 65535.0
        niter: int = Field(4, ge=1, le=10, description="L.A.Cosmic iterations")
        noise: Literal["detector", "measured"] = Field(
            "detector", description="Noise model: 'detector' from gain and read noise, "
                                    "'measured' from the frame's own pixel-to-pixel noise "
                                    "(unknown gain, rescaled or flat-fielded frames)")
        method: Literal["median", "interpolate"] = Field("median", description="How flagged pixels are replaced")
        cfa: CfaMode = Field("auto", description=CFA_DESCRIPTION)

    inputs = {"frames": Port("FrameSeries", "frames (ADU)")}
    outputs = {"frames": Port("FrameSeries", "frames with cosmic rays replaced"),
               "maps": Port("FrameSeries", "cosmic-ray map of each frame (uint8)")}

    def run(self, ctx, params, frame):
        from starloom.astro import cosmetic
        cfa = cosmetic.is_cfa(frame.header, params.cfa)
        rays = cosmetic.cosmic_ray_map(frame, cfa=cfa, sigclip=params.sigclip,
                                       sigfrac=params.sigfrac, objlim=params.objlim,
                                       gain=params.gain, readnoise=params.readnoise,
                                       satlevel=params.satlevel, niter=params.niter,
                                       measured_noise=params.noise == "measured")
        out = frame.copy()
        out.data = cosmetic.correct_pixels(frame.data, rays, method=params.method, cfa=cfa)
        ctx.diagnostics.update(cosmic_ray_pixels=int(rays.sum()), cfa=cfa)
        ctx.history(f"{int(rays.sum())} cosmic-ray pixels replaced (L.A.Cosmic)")
        return {"frames": out, "maps": _map_image(rays, "Cosmic Ray Map", frame)}


class CorrectPixels(Node):
    type_id = "cosmetic.correct"
    libraries = ("astropy", "scipy")
    title = "Cosmetic correction"
    category = "cosmetic"
    per_frame = "frames"
    description = """
    Replace the pixels of the connected maps (hot, cold, bad) in each frame by the median (or
    a Gaussian-weighted interpolation) of their unflagged same-colour neighbours, and
    optionally also this frame's own isolated spikes (single hot pixels and one-pixel cosmic
    rays, spike_sigma above the 5x5 median with no bright neighbour), as Siril's cosmetic
    correction does. Apply before registration, while defects sit on whole pixels.
    """

    class Params(Params):
        method: Literal["median", "interpolate"] = Field("median", description="How flagged pixels are replaced")
        radius: int = Field(1, ge=1, le=5, description="Neighbourhood radius, pixels of the same colour")
        spike_sigma: float = Field(8.0, ge=0, description="Also replace this frame's isolated spikes above this many sigma (0: off)")
        cfa: CfaMode = Field("auto", description=CFA_DESCRIPTION)

    inputs = {"frames": Port("FrameSeries", "frames to correct (not registered)"),
              "map": Port("Image", "pixels to replace (nonzero = flagged)", optional=True),
              "map2": Port("Image", "more pixels to replace, e.g. cold or bad pixels", optional=True)}
    outputs = {"frames": Port("FrameSeries", "corrected frames")}

    def run(self, ctx, params, frame, map=None, map2=None):
        import numpy as np
        from starloom.astro import cosmetic
        cfa = cosmetic.is_cfa(frame.header, params.cfa)
        flagged = np.zeros(frame.shape, bool)
        for name, m in (("map", map), ("map2", map2)):
            if m is not None:
                if m.shape != frame.shape:
                    raise StarloomError(f"input '{name}' has shape {m.shape} but frame "
                                        f"'{ctx.frame}' has {frame.shape}")
                flagged |= np.asarray(m.data) != 0
        spikes = (cosmetic.isolated_spikes(frame.data, params.spike_sigma, cfa=cfa) & ~flagged
                  if params.spike_sigma > 0 else np.zeros(frame.shape, bool))
        out = frame.copy()
        out.data = cosmetic.correct_pixels(frame.data, flagged | spikes, method=params.method,
                                           cfa=cfa, radius=params.radius)
        ctx.diagnostics.update(mapped=int(flagged.sum()), spikes=int(spikes.sum()), cfa=cfa)
        ctx.history(f"cosmetic correction: {int(flagged.sum())} mapped pixels, "
                    f"{int(spikes.sum())} spikes")
        return {"frames": out}


NODES = [DeviantPixels, BadPixelMap, HotPixelsFromLights, CosmicRays, CorrectPixels]
