"""The summary page of a flat-field model: plots (matplotlib, Agg) and one HTML file.

What it shows follows AstroPath's flat-field summary (AstroPathJHU/AstroPathPipeline,
``astropath/hpfs/flatfield``): the distribution of the correction factors per channel, the
factors and their uncertainties as images, the mean-relative intensity profiles of the
validation half before and after correction, and tables of the statistics. The PNGs are
embedded in the HTML as data URIs so the page is one self-contained file.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
from astropy.table import Table

from .fileio import write_text_atomic
from .flatmodel import FlatModel, _view

MAX_PDF_ROWS = 25  # rows of a table that fit on the PDF's first page

__all__ = ["summary_figures", "png_bytes", "write_summary_html", "write_summary_pdf"]


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _distribution(model: FlatModel):
    fig = _figure((6.4, 3.6))
    ax = fig.add_subplot()
    keep = model.flags == 0
    values = model.factors[keep & np.isfinite(model.factors)]
    lo, hi = np.percentile(values, [0.05, 99.95]) if values.size else (0.0, 1.0)
    bins = np.linspace(lo, hi, 120)
    for name, site in model.channels.items():
        v = _view(model.factors, site)[_view(keep, site)]
        ax.hist(v, bins=bins, histtype="step", label=name)
    ax.set_xlabel("flat-field factor (relative response, mean 1 per channel)")
    ax.set_ylabel("pixels")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("Distribution of the flat-field factors (pixels kept)")
    return fig


def _image(data, title, label, mask=None):
    fig = _figure((6.4, 4.8))
    ax = fig.add_subplot()
    shown = np.where(mask, np.nan, data) if mask is not None else data
    finite = shown[np.isfinite(shown)]
    vmin, vmax = np.percentile(finite, [0.5, 99.5]) if finite.size else (0, 1)
    im = ax.imshow(shown, origin="lower", vmin=vmin, vmax=vmax, cmap="viridis",
                   interpolation="nearest")
    fig.colorbar(im, ax=ax, label=label)
    ax.set_title(title)
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    return fig


def _profiles(model: FlatModel, images: dict):
    """Mean-relative intensity along x (central rows) and along y (central columns), per
    channel, before and after correction."""
    fig = _figure((6.4, 6.4))
    axes = fig.subplots(2, 1)
    for name, site in model.channels.items():
        for key, style in (("before", "-"), ("after", "--")):
            img = _view(np.where(images["valid"], images[key], np.nan), site)
            for axis, ax in ((0, axes[0]), (1, axes[1])):
                n = img.shape[axis]
                half = max(1, n // 20)
                band = np.take(img, np.arange(n // 2 - half, n // 2 + half + 1), axis=axis)
                profile = np.nanmean(band, axis=axis)
                off = site[1] if axis == 0 else site[0]
                ax.plot(np.arange(profile.size) * site[2] + off, profile, style, lw=0.7,
                        label=f"{name} {key}")
    axes[0].set_xlabel("x (px), mean of the central rows")
    axes[1].set_xlabel("y (px), mean of the central columns")
    for ax in axes:
        ax.set_ylabel("mean-relative intensity")
    axes[0].set_title("Validation half: before (solid) and after (dashed) correction")
    axes[0].legend(fontsize="small", ncol=4)
    return fig


def summary_figures(model: FlatModel, images: dict | None = None) -> dict:
    """The summary's figures by file name: ``factor_distribution.png``, ``factors.png``,
    ``uncertainty.png``, ``excluded.png`` and, with the validation ``images`` of
    :func:`starloom.astro.flatmodel.split_half_validation`, ``profiles.png``."""
    figs = {
        "factor_distribution.png": _distribution(model),
        "factors.png": _image(model.factors, "Flat-field factors (excluded pixels blank)",
                              "relative response", model.flags != 0),
        "uncertainty.png": _image(model.uncertainty, "Standard error of the factors",
                                  "standard error", model.flags != 0),
        "excluded.png": _image(model.flags.astype(float), "Excluded pixels: 1 saturated, "
                               "2 low response, 4 noisy, 8 no data (sums)", "flags"),
    }
    if images is not None:
        figs["profiles.png"] = _profiles(model, images)
    return figs


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.colnames)
    body = []
    for row in table:
        cells = []
        for c in table.colnames:
            v = row[c]
            text = f"{v:.5g}" if isinstance(v, (float, np.floating)) else str(v)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def png_bytes(figures: dict) -> dict[str, bytes]:
    """Each figure rendered as PNG (100 dpi), by the same name."""
    out = {}
    for name, fig in figures.items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        out[name] = buf.getvalue()
    return out


def write_summary_html(path, pngs: dict[str, bytes], tables: dict[str, Table],
                       notes: list[str]) -> Path:
    """Write the summary page (atomically), every PNG embedded.

    Parameters
    ----------
    path : str or os.PathLike
        The HTML file.
    pngs : dict
        File name -> PNG bytes (from :func:`png_bytes` of :func:`summary_figures`).
    tables : dict
        Section title -> Table.
    notes : list of str
        Lines of text shown at the top (frames used, validation split, ...).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>Flat-field model</title>",
             "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;"
             "text-align:right}img{max-width:100%}</style></head><body>",
             "<h1>Flat-field model</h1><ul>"]
    parts += [f"<li>{html.escape(n)}</li>" for n in notes] + ["</ul>"]
    for title, table in tables.items():
        parts.append(f"<h2>{html.escape(title)}</h2>{_table_html(table)}")
    for name, data in pngs.items():
        uri = base64.b64encode(data).decode()
        parts.append(f"<h2>{html.escape(name[:-4].replace('_', ' '))}</h2>"
                     f"<img src='data:image/png;base64,{uri}' alt='{html.escape(name)}'>")
    parts.append("</body></html>")
    return write_text_atomic(path, "\n".join(parts))


def write_summary_pdf(path, figures: dict, tables: dict[str, Table], notes: list[str]) -> Path:
    """The same summary as a PDF (matplotlib's ``PdfPages``): a first page with the notes and
    the tables, then one page per figure. Written to a temporary name and renamed.

    Parameters
    ----------
    path : str or os.PathLike
        The PDF file.
    figures : dict
        File name -> matplotlib Figure (from :func:`summary_figures`).
    tables : dict
        Section title -> Table (wide tables are drawn with 4 significant digits).
    notes : list of str

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    from matplotlib.backends.backend_pdf import PdfPages

    from .fileio import atomic_write

    first = _figure((11.0, 8.5))
    ax = first.add_subplot()
    ax.axis("off")
    ax.set_title("Flat-field model", loc="left", fontsize=14)
    y = 0.97
    for note in notes:
        ax.text(0.0, y, note, transform=ax.transAxes, fontsize=8, va="top")
        y -= 0.03
    for title, table in tables.items():
        if len(table) > MAX_PDF_ROWS:
            ax.text(0.0, y - 0.01, f"{title}: {len(table)} rows, in the HTML summary",
                    transform=ax.transAxes, fontsize=10, va="top")
            y -= 0.04
            continue
        cells = [[f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)[:24]
                  for v in row] for row in table.iterrows()]
        ax.text(0.0, y - 0.01, title, transform=ax.transAxes, fontsize=10, va="top")
        height = 0.025 * (len(cells) + 1)
        drawn = ax.table(cellText=cells, colLabels=table.colnames, loc="upper left",
                         bbox=[0.0, y - 0.04 - height, 1.0, height])
        drawn.auto_set_font_size(False)
        drawn.set_fontsize(5)
        y -= height + 0.07
    with atomic_write(path) as f, PdfPages(f) as pdf:
        pdf.savefig(first)
        for fig in figures.values():
            pdf.savefig(fig)
    return Path(path)
