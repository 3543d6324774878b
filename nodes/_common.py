"""Helpers shared by the built-in nodes: combine parameters, frame matching."""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from starloom.astro.errors import StarloomError
from starloom.graph_runtime.node import Params

if TYPE_CHECKING:  # the science is imported where a node runs, not when the registry is built
    from astropy.nddata import CCDData
    from starloom.astro.frames import FrameSeries


# Sigma-clipping bounds and iterations, declared once and named the same wherever frames are
# clipped (stacking, co-adding); each Params class places them after its method and rejection.
SigmaBound = Annotated[float, Field(gt=0, le=20)]
ClipIterations = Annotated[int, Field(ge=1, le=100, description="Clipping iterations "
                                                                "(ccdproc.combine does 1)")]
SIGMA_LOW = "Lower clipping bound, in standard deviations"
SIGMA_HIGH = "Upper clipping bound, in standard deviations"
_LINEAR_FIT = " (linear_fit: in mean absolute deviations from the fitted line; Siril uses 5)"


class CombineParams(Params):
    """How frames are combined pixel by pixel (see ``FrameSeries.reduce`` and
    ``starloom.astro.combiner.combine_bands``, whose docstring gives each rejection's formula
    and source)."""

    method: Literal["average", "median", "sum"] = Field(
        "median", description="Combination along the frame axis")
    rejection: Literal["none", "sigma_clip", "winsorized", "minmax", "linear_fit", "percentile",
                       "gesd"] = Field(
        "sigma_clip", description="Outlier rejection before combining: sigma clipping (centre: "
                                  "median, spread: standard deviation), winsorized sigma "
                                  "clipping, min/max extremes, linear-fit clipping (Siril), "
                                  "percentile clipping (Siril) or the generalized ESD test "
                                  "(Rosner 1983)")
    sigma_low: SigmaBound = Field(3.0, description=SIGMA_LOW + _LINEAR_FIT)
    sigma_high: SigmaBound = Field(3.0, description=SIGMA_HIGH + _LINEAR_FIT)
    maxiters: ClipIterations = 5
    nlow: int = Field(1, ge=0, le=1000, description="minmax: lowest values dropped per pixel")
    nhigh: int = Field(1, ge=0, le=1000, description="minmax: highest values dropped per pixel")
    percentile_low: float = Field(
        0.2, gt=0, le=1, description="percentile: reject values below median x (1 - this), a "
                                     "fraction of the median (Siril's default 0.2)")
    percentile_high: float = Field(
        0.1, gt=0, le=1, description="percentile: reject values above median x (1 + this), a "
                                     "fraction of the median (Siril's default 0.1)")
    gesd_outliers: float = Field(
        0.3, gt=0, le=0.5, description="gesd: most outliers tested per pixel, as a fraction of "
                                       "its values (Siril's default 0.3)")
    gesd_alpha: float = Field(
        0.05, gt=0, lt=0.5, description="gesd: significance level of the test (Siril's "
                                        "default 0.05)")

    def combine(self, series: FrameSeries, ctx=None, **kw) -> CCDData:
        if ctx is not None:
            self.warn_few_frames(len(series), ctx)
        return series.reduce(self.method, rejection=self.rejection, sigma_low=self.sigma_low,
                             sigma_high=self.sigma_high, maxiters=self.maxiters, nlow=self.nlow,
                             nhigh=self.nhigh, percentile_low=self.percentile_low,
                             percentile_high=self.percentile_high,
                             gesd_outliers=self.gesd_outliers, gesd_alpha=self.gesd_alpha,
                             progress=ctx.progress if ctx is not None else None, **kw)

    def warn_few_frames(self, n: int, ctx) -> None:
        """Warn when there are too few frames to combine or reject anything.

        Rejection tells an outlier from the others' spread: with 2 values per pixel there is
        no majority (sigma clipping around their median clips neither, min/max drops one of
        the two without knowing which is wrong), so it needs at least 3 frames.
        """
        if n == 1:
            ctx.warn("only 1 frame: nothing is combined or rejected; the result is that frame")
        elif n == 2 and self.rejection != "none":
            ctx.warn(f"only 2 frames: rejection '{self.rejection}' needs at least 3 frames to "
                     f"reject outliers")


def renamed_params(params: dict, names: dict[str, str | tuple[str, ...]],
                   values: dict[str, dict] | None = None) -> dict:
    """Params of an older node version under today's names, for ``Node.upgrade``.

    ``names`` maps an old parameter name to its new name (or to several names that each take
    the old value); ``values`` maps a new parameter name to {old value: new value}. Parameters
    not named are kept as they are.
    """
    out = {}
    for key, value in params.items():
        new = names.get(key, key)
        for name in (new,) if isinstance(new, str) else new:
            out[name] = (values or {}).get(name, {}).get(value, value)
    return out


def single_image(value, what: str, ctx=None, *, longest_exposure: bool = False):
    """The image of an input that takes an Image or a FrameSeries.

    Of a series: the first frame (with a warning through ``ctx`` when there are more), or with
    ``longest_exposure`` the frame with the longest EXPTIME (a master dark's most dark signal).

    Raises
    ------
    StarloomError
        The series is empty (``what`` names the input).
    """
    if hasattr(value, "data"):
        return value
    if not len(value):
        raise StarloomError(f"input '{what}' is an empty series")
    if longest_exposure:
        exposures = [r.meta.get("EXPTIME") or 0 for r in value.refs]
        return value[exposures.index(max(exposures))]  # the first of equals, as np.argmax
    if len(value) > 1 and ctx is not None:
        ctx.warn(f"{len(value)} frames given: using the first, {value.names[0]}")
    return value[0]
