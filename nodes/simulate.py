"""The simulate node: a simulated observing session, for demos and tests."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from starloom.astro.errors import StarloomError
from starloom.graph_runtime.node import (Node, Params, PathParam, Port, Quantity, expand_paths,
                                         file_fingerprints)


class SimulateSession(Node):
    type_id = "simulate.session"
    implementation = 2  # 2: 'camera' (colour sessions) and 'lights' (real lights, unique names)
    libraries = ("astropy", "numpy")
    title = "Simulate session"
    category = "simulate"
    description = """
    A deterministic simulated observing session (see ``simulate_session``): bias, dark, flat
    and light frames of a camera with read noise, dark current, hot pixels, vignetting, a sky
    gradient, Poisson noise, and a star field with per-frame seeing and dithers; mono or Bayer.
    The same parameters always give the same frames. camera='colour': a one-shot-colour
    camera imaging the Pleiades in colour (real catalogue stars, B-V colours, coloured sky
    gradient; lights with RA/DEC but no WCS). 'lights': real raw lights replace the simulated
    ones, with neutral calibration frames (0, 0, 1) so that calibration leaves them unchanged.
    """

    class Params(Params):
        seed: int = Field(0, ge=0, description="Random seed")
        width: int = Field(600, ge=64, le=8192, description="Frame width, px")
        height: int = Field(400, ge=64, le=8192, description="Frame height, px")
        n_bias: int = Field(8, ge=1, le=500, description="Number of bias frames")
        n_darks: int = Field(6, ge=1, le=500, description="Number of dark frames")
        n_flats: int = Field(8, ge=1, le=500, description="Number of flat frames")
        n_lights: int = Field(8, ge=1, le=500, description="Number of light frames")
        light_exposure: Quantity("s", gt=0, description="Light (and dark) exposure") = 60.0
        read_noise: Quantity("electron", ge=0, description="Read noise, RMS") = 5.0
        dark_current: Quantity("electron / s", ge=0, description="Dark current per pixel") = 0.05
        dither: float = Field(6.0, ge=0, description="Maximum dither offset, px")
        bayer: Literal["none", "RGGB", "GRBG", "GBRG", "BGGR"] = Field("none", description="CFA pattern")
        camera: Literal["mono", "colour"] = Field(
            "mono", description="'colour': a one-shot-colour camera (bayer, default RGGB) "
                                "imaging a real star field in colour (the Pleiades, KStars "
                                "B-V) with a coloured sky gradient, see simulate_colour_session")
        lights: str = PathParam("", description="Folder or glob of real raw light frames: they "
                                "replace the simulated lights, and bias, darks and flats become "
                                "neutral frames (0, 0, 1) so calibration leaves them unchanged")
        header: dict[str, str | float] = Field(
            default_factory=dict, description="Header cards set on every frame, e.g. "
            "{\"INSTRUME\": \"ZWO ASI120MC-S\", \"GAIN\": 0}: to stand for a real camera's settings")

    outputs = {"bias": Port("FrameSeries", "bias frames"),
               "darks": Port("FrameSeries", "dark frames, light exposure"),
               "flats": Port("FrameSeries", "flat frames"),
               "lights": Port("FrameSeries", "dithered light frames")}

    @classmethod
    def fingerprint(cls, params, hash_file):
        return file_fingerprints(_light_files(params.lights), hash_file) if params.lights else []

    def run(self, ctx, params):
        from starloom.astro.frames import FrameSeries
        from starloom.astro.simulate import simulate_session
        p = params
        if p.lights:
            return _real_lights(ctx, p.lights)
        if p.camera == "colour":
            from starloom.astro.simulate_colour import simulate_colour_session

            frames = simulate_colour_session(
                seed=p.seed, shape=(p.height, p.width), n_bias=p.n_bias, n_darks=p.n_darks,
                n_flats=p.n_flats, n_lights=p.n_lights, light_exposure=p.light_exposure,
                read_noise=p.read_noise, dark_current=p.dark_current, dither=p.dither,
                bayer="RGGB" if p.bayer == "none" else p.bayer)
        else:
            frames = simulate_session(
                seed=p.seed, shape=(p.height, p.width), n_bias=p.n_bias, n_darks=p.n_darks,
                dark_exposure=p.light_exposure, n_flats=p.n_flats, n_lights=p.n_lights,
                light_exposure=p.light_exposure, read_noise=p.read_noise,
                dark_current=p.dark_current, dither=p.dither,
                bayer=None if p.bayer == "none" else p.bayer)
        out = {}
        for port, kind in (("bias", "bias"), ("darks", "dark"), ("flats", "flat"), ("lights", "light")):
            ccds = frames[kind]
            for ccd in ccds:
                ccd.header.update(p.header)
            out[port] = FrameSeries.from_frames(ccds, [f"sim_{kind}_{i + 1:03d}" for i in range(len(ccds))])
        return out


def _light_files(path: str) -> list[str]:
    from starloom.nodes.io import FITS_PATTERNS

    files = expand_paths(path, tuple(FITS_PATTERNS.split(",")))
    if not files:
        raise StarloomError(f"parameter 'lights': no FITS files match '{path}'")
    return files


def _real_lights(ctx, path: str) -> dict:
    """Real lights from ``path`` and neutral calibration frames of their shape and header."""
    from starloom.astro.frames import FrameSeries
    from starloom.astro.collection import collect_frames
    from starloom.astro.simulate_colour import neutral_calibration

    series = collect_frames(_light_files(path), hash_file=ctx.hash_file, frame_type="light").series
    neutral = neutral_calibration(series[0])
    ctx.diagnostics.update(lights=path, n_lights=len(series))
    out = {port: FrameSeries.from_frames(neutral[kind], [f"neutral_{kind}_{i + 1}" for i in range(3)])
           for port, kind in (("bias", "bias"), ("darks", "dark"), ("flats", "flat"))}
    out["lights"] = series
    return out


NODES = [SimulateSession]
