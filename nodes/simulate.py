"""The simulate node: a simulated observing session, for demos and tests."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from starloom.astro.frames import FrameSeries
from starloom.astro.simulate import simulate_session
from starloom.graph_runtime.node import Node, Params, Port, Quantity


class SimulateSession(Node):
    type_id = "simulate.session"
    libraries = ("astropy", "numpy")
    title = "Simulate session"
    category = "simulate"
    description = """
    A deterministic simulated observing session (see ``simulate_session``): bias, dark, flat
    and light frames of a camera with read noise, dark current, hot pixels, vignetting, a sky
    gradient, Poisson noise, and a star field with per-frame seeing and dithers; mono or Bayer.
    The same parameters always give the same frames.
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

    outputs = {"bias": Port("FrameSeries", "bias frames"),
               "darks": Port("FrameSeries", "dark frames, light exposure"),
               "flats": Port("FrameSeries", "flat frames"),
               "lights": Port("FrameSeries", "dithered light frames")}

    def run(self, ctx, params):
        p = params
        frames = simulate_session(
            seed=p.seed, shape=(p.height, p.width), n_bias=p.n_bias, n_darks=p.n_darks,
            dark_exposure=p.light_exposure, n_flats=p.n_flats, n_lights=p.n_lights,
            light_exposure=p.light_exposure, read_noise=p.read_noise, dark_current=p.dark_current,
            dither=p.dither, bayer=None if p.bayer == "none" else p.bayer)
        out = {}
        for port, kind in (("bias", "bias"), ("darks", "dark"), ("flats", "flat"), ("lights", "light")):
            ccds = frames[kind]
            out[port] = FrameSeries.from_frames(ccds, [f"sim_{kind}_{i + 1:03d}" for i in range(len(ccds))])
        return out


NODES = [SimulateSession]
