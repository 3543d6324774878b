"""The colour model and the robust fit of photometric colour calibration (PCC).

A star's expected colour in the camera's R, G and B channels is modelled from its catalogue
B-V, as photometric colour calibration in Siril (``src/algos/photometric_cc.c``, lock042/siril)
and PixInsight (PhotometricColorCalibration, PixInsight reference documentation) did before
their spectrophotometric successors:

1. colour temperature from B-V by Ballesteros (2012, EPL 97, 34008, eq. 14), derived for a
   blackbody seen through the Johnson B and V bands::

       T = 4600 K * (1 / (0.92 (B-V) + 1.7) + 1 / (0.92 (B-V) + 0.62))

2. the photon flux of a blackbody of that temperature (Planck's law, astropy's ``BlackBody``),
   integrated over simple top-hat R, G and B bands (`RGB_BANDS`, a generic one-shot-colour
   sensor behind a UV/IR-cut filter), gives the R/G and B/G ratios;
3. the ratios are divided by those of the white reference, so that a star of the white
   reference's colour comes out grey (R = G = B).

The channel factors are then the robust (sigma-clipped) mean of ``ln(expected / measured)``
over the matched stars, per ratio, with G fixed at 1: a multiplicative white balance is exactly
a constant offset in these logarithmic colours.
"""
from __future__ import annotations

import numpy as np

__all__ = ["RGB_BANDS", "WHITE_REFERENCES", "bv_to_temperature", "expected_ratios",
           "fit_factors", "plot_colour_fit"]

#: Top-hat pass bands (nm) of a generic colour sensor behind a UV/IR-cut filter: the Bayer dyes
#: of common CMOS sensors pass roughly 400-500, 500-600 and 600-700 nm.
RGB_BANDS = {"R": (600.0, 700.0), "G": (500.0, 600.0), "B": (400.0, 500.0)}

#: B-V of the white references. 'G2V': the Sun, B-V = 0.653 (Ramirez et al. 2012, ApJ 752, 5).
#: 'average_spiral': the integrated colour of an Sb spiral galaxy, (B-V)_T^0 ~ 0.70 (RC3 means by
#: morphological type, Roberts & Haynes 1994, ARA&A 32, 115): a colour-index stand-in for the
#: Average Spiral Galaxy spectrum of PixInsight's white reference database.
WHITE_REFERENCES = {"G2V": 0.653, "average_spiral": 0.70}
#: Smallest spread (natural log units, ~1 %) used by the outlier clipping of `fit_factors`.
STD_FLOOR = 0.01


def bv_to_temperature(bv):
    """Colour temperature (K) of a star from its B-V (Ballesteros 2012, EPL 97, 34008).

    Parameters
    ----------
    bv : float or numpy.ndarray
        Johnson B-V colour index, mag.

    Returns
    -------
    float or numpy.ndarray
        Temperature in kelvin (float64).
    """
    bv = np.asarray(bv, dtype=float)
    return 4600.0 * (1.0 / (0.92 * bv + 1.7) + 1.0 / (0.92 * bv + 0.62))


def _band_photons(temperature, bands=RGB_BANDS, n=61) -> np.ndarray:
    """Photon flux of blackbodies in each band (arbitrary units), shape (len(T), 3) R, G, B."""
    from astropy import units as u
    from astropy.modeling.physical_models import BlackBody

    temps = np.atleast_1d(np.asarray(temperature, dtype=float))
    out = np.empty((len(temps), 3))
    for j, key in enumerate(("R", "G", "B")):
        lam = np.linspace(*bands[key], n) * u.nm
        # B_lambda * lambda / (h c) is the photon rate: a sensor counts photons, not energy
        bb = BlackBody(temperature=temps[:, None] * u.K,
                       scale=1.0 * u.erg / (u.cm**2 * u.s * u.AA * u.sr))
        flux = (bb(lam[None, :]) * lam[None, :]).value
        out[:, j] = np.trapezoid(flux, lam.value, axis=1)
    return out


def expected_ratios(bv, white_bv: float, bands=RGB_BANDS) -> tuple[np.ndarray, np.ndarray]:
    """Expected R/G and B/G of stars of colour ``bv``, relative to the white reference.

    Parameters
    ----------
    bv : array_like
        B-V of the stars, mag.
    white_bv : float
        B-V of the white reference (e.g. `WHITE_REFERENCES` ['G2V']).
    bands : dict, optional
        R, G, B top-hat bands (nm).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        R/G and B/G photon-flux ratios, each divided by the white reference's, so 1 for a star
        of the white reference's colour.
    """
    stars = _band_photons(bv_to_temperature(bv), bands)
    white = _band_photons(bv_to_temperature([white_bv]), bands)[0]
    return (stars[:, 0] / stars[:, 1] / (white[0] / white[1]),
            stars[:, 2] / stars[:, 1] / (white[2] / white[1]))


def fit_factors(measured_rg, measured_bg, expected_rg, expected_bg, sigma=3.0, snr=None):
    """Robust R and B channel factors (G = 1) mapping measured colours onto expected ones.

    Parameters
    ----------
    measured_rg, measured_bg, expected_rg, expected_bg : numpy.ndarray
        Positive flux ratios per star.
    sigma : float
        Sigma-clipping bound on the per-star log offsets (astropy ``sigma_clip``, median
        centre, MAD-based standard deviation floored at `STD_FLOOR`).
    snr : numpy.ndarray (n_stars, 3), optional
        Signal-to-noise ratio of each star's R, G, B flux: the factors are then the
        inverse-variance weighted means of the kept log offsets (variance of ln(a/b) =
        1/snr_a**2 + 1/snr_b**2, first-order error propagation), else plain means.

    Returns
    -------
    factors : numpy.ndarray (3,)
        R, G, B multipliers (G = 1).
    used : numpy.ndarray of bool
        Stars kept by the clipping in both ratios.
    residual_mag : float
        Robust scatter (MAD standard deviation) of the calibrated colours about the expected
        ones, in magnitudes (2.5 log10), the larger of the two ratios.
    slopes : (float, float)
        Slope of a straight-line fit of measured against expected log colour over the kept stars,
        per ratio: 1 when the colour model matches the camera (a diagnostic, not applied).
    """
    from astropy.stats import mad_std, sigma_clip

    d_r = np.log(expected_rg) - np.log(measured_rg)
    d_b = np.log(expected_bg) - np.log(measured_bg)
    def spread(d, axis=None):  # a 1 % floor: never clip stars for sub-percent differences
        return max(float(mad_std(d, ignore_nan=True)), STD_FLOOR)

    clip_r = sigma_clip(d_r, sigma=sigma, maxiters=10, cenfunc="median", stdfunc=spread)
    clip_b = sigma_clip(d_b, sigma=sigma, maxiters=10, cenfunc="median", stdfunc=spread)
    used = ~np.ma.getmaskarray(clip_r) & ~np.ma.getmaskarray(clip_b)
    if snr is None:
        w_r = w_b = np.ones(len(d_r))
    else:
        inv2 = 1.0 / np.maximum(np.asarray(snr, float), 1e-3) ** 2
        w_r, w_b = 1.0 / (inv2[:, 0] + inv2[:, 1]), 1.0 / (inv2[:, 2] + inv2[:, 1])
    k_r = np.exp(np.average(d_r[used], weights=w_r[used]))
    k_b = np.exp(np.average(d_b[used], weights=w_b[used]))
    mag = 2.5 / np.log(10.0)
    residual = mag * max(float(mad_std(d_r[used])), float(mad_std(d_b[used])))
    slopes = []
    for meas, exp in ((measured_rg, expected_rg), (measured_bg, expected_bg)):
        x = np.log(exp[used])
        slopes.append(float(np.polyfit(x, np.log(meas[used]), 1)[0]) if np.ptp(x) > 0 else float("nan"))
    return np.array([k_r, 1.0, k_b]), used, residual, tuple(slopes)


def plot_colour_fit(path, table, factors, *, title=""):
    """Colour-colour diagram of a PCC fit: measured against expected log colours.

    Parameters
    ----------
    path : path-like
        PNG file.
    table : astropy.table.Table
        Matched stars with ``rg_measured``, ``bg_measured``, ``rg_expected``, ``bg_expected``,
        ``used`` and ``bv``.
    factors : array_like (3,)
        R, G, B factors; the fitted relation is ``measured = expected / factor``.
    title : str
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2))
    FigureCanvasAgg(fig)
    used = np.asarray(table["used"], dtype=bool)
    for i, (key, k) in enumerate((("rg", factors[0]), ("bg", factors[2]))):
        ax = fig.add_subplot(1, 2, i + 1)
        x = np.log10(np.asarray(table[f"{key}_expected"], float))
        y = np.log10(np.asarray(table[f"{key}_measured"], float))
        sc = ax.scatter(x[used], y[used], c=np.asarray(table["bv"])[used], cmap="coolwarm",
                        s=14, vmin=-0.2, vmax=1.8, label="used")
        ax.scatter(x[~used], y[~used], marker="x", c="0.5", s=14, label="clipped")
        line = np.linspace(np.nanmin(x), np.nanmax(x), 2)
        ax.plot(line, line - np.log10(k), "k-", lw=1, label=f"fit: factor {k:.3f}")
        name = "R/G" if key == "rg" else "B/G"
        ax.set_xlabel(f"log10 expected {name} (catalogue B-V)")
        ax.set_ylabel(f"log10 measured {name}")
        ax.legend(fontsize=8, loc="best")
        fig.colorbar(sc, ax=ax, label="B-V")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
