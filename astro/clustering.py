"""State clustering of frames and synthetic frames per cluster.

Method: tile_compile's state-based clustering and synthetic frames (J. Amon, "Tile-Based
Quality Reconstruction for DSO", methodology v3.3.9, sections 5.9-5.10,
github.com/jeamy/tile_compile). Each frame's state vector is
``v_f = (G_f, mean_t Q_ft, var_t Q_ft, B_f, sigma_f)`` (global weight, mean and variance of its
local quality over the tiles, background, noise); the vectors are standardised
(scikit-learn ``StandardScaler``) and clustered with scikit-learn ``KMeans`` or a
``GaussianMixture``. The number of clusters is a parameter or, when 0, the one with the best
silhouette score (Rousseeuw 1987, J. Comput. Appl. Math. 20, 53) between 2 and ``max_clusters``
(tile_compile uses ``clip(N/10, 5, 30)``). A synthetic frame is the ``G``-weighted mean of its
cluster's frames, ``S_k = sum_{f in k} G_f I_f / sum_{f in k} G_f`` (5.10.1).
"""
from __future__ import annotations

import numpy as np
from astropy.table import Table

from .errors import ParamError

__all__ = ["state_vectors", "cluster_states", "synthetic_frames"]

STATE_COLUMNS = ("global_weight", "mean_q_local", "var_q_local", "background", "noise")


def state_vectors(local: Table, global_table: Table | None = None) -> tuple[list, np.ndarray]:
    """Frame names and state vectors ``(n_frames, 5)`` in :data:`STATE_COLUMNS` order.

    ``local`` is a local-metrics table (columns ``frame``, ``frame_index``, ``global_weight``,
    ``q_local``, ``background``, ``noise``); background and noise come from ``global_table``
    (columns ``name``, ``background``, ``noise``) when given, else the frame's median over its
    tiles.
    """
    idx = np.asarray(local["frame_index"], int)
    n = int(idx.max()) + 1 if len(idx) else 0
    names = [""] * n
    for i, name in zip(idx, local["frame"]):
        names[i] = str(name)
    vec = np.full((n, len(STATE_COLUMNS)), np.nan)
    for i in range(n):
        rows = idx == i
        q = np.asarray(local["q_local"], float)[rows]
        vec[i] = [np.asarray(local["global_weight"], float)[rows][0], np.nanmean(q), np.nanvar(q),
                  np.nanmedian(np.asarray(local["background"], float)[rows]),
                  np.nanmedian(np.asarray(local["noise"], float)[rows])]
    if global_table is not None and {"name", "background", "noise"} <= set(global_table.colnames):
        by = {str(r["name"]): (float(r["background"]), float(r["noise"])) for r in global_table}
        for i, name in enumerate(names):
            if name in by:
                vec[i, 3:] = by[name]
    return names, vec


def cluster_states(vectors: np.ndarray, *, method: str = "kmeans", n_clusters: int = 0,
                   max_clusters: int = 8, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Cluster frames by their state vectors.

    Parameters
    ----------
    vectors : ndarray, shape (n_frames, n_features)
        State vectors (:func:`state_vectors`); NaN entries are replaced by the column median.
    method : {'kmeans', 'gmm'}
        scikit-learn ``KMeans`` (``n_init=10``) or ``GaussianMixture`` (full covariance).
    n_clusters : int
        Number of clusters; 0 chooses it by the silhouette score among 2..``max_clusters``.
    max_clusters : int
        Upper bound of the automatic choice (and never more than ``n_frames - 1``).
    seed : int
        ``random_state`` of the estimators (deterministic result).

    Returns
    -------
    labels : ndarray of int, shape (n_frames,)
    info : dict
        ``n_clusters``, ``silhouette`` (per tried k, or of the given k), ``method``.

    Raises
    ------
    ParamError
        Fewer than 3 frames, an unknown method, or ``n_clusters`` >= the number of frames.
    """
    from sklearn.metrics import silhouette_score
    from sklearn.preprocessing import StandardScaler

    n = len(vectors)
    if n < 3:
        raise ParamError("frames", f"clustering needs at least 3 frames, got {n}")
    if method not in ("kmeans", "gmm"):
        raise ParamError("method", f"must be 'kmeans' or 'gmm', got {method!r}")
    if n_clusters >= n:
        raise ParamError("n_clusters", f"{n_clusters} clusters for {n} frames")
    v = np.array(vectors, float)
    med = np.nanmedian(v, axis=0)
    v = np.where(np.isfinite(v), v, np.nan_to_num(med)[None, :])
    x = StandardScaler().fit_transform(v)
    ks = [n_clusters] if n_clusters else list(range(2, max(2, min(max_clusters, n - 1)) + 1))
    scores, fits = {}, {}
    for k in ks:
        labels = _fit(x, method, k, seed)
        fits[k] = labels
        scores[k] = float(silhouette_score(x, labels)) if len(set(labels)) > 1 else -1.0
    best = max(scores, key=scores.get)
    return fits[best], {"n_clusters": int(best), "silhouette": scores, "method": method}


def _fit(x, method, k, seed):
    if method == "kmeans":
        from sklearn.cluster import KMeans

        return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)
    from sklearn.mixture import GaussianMixture

    return GaussianMixture(n_components=k, random_state=seed).fit(x).predict(x)


def synthetic_frames(frames, labels: np.ndarray, global_weight: np.ndarray, progress=None):
    """One synthetic frame per cluster: the ``G``-weighted average of its frames.

    Parameters
    ----------
    frames : FrameSeries
        Registered, normalised frames (read band by band by ``FrameSeries.reduce``).
    labels : ndarray of int, shape (n_frames,)
        Cluster of each frame.
    global_weight : ndarray, shape (n_frames,)
        ``G`` of each frame; a cluster whose weights sum to 0 is averaged unweighted.

    Returns
    -------
    list of (int, CCDData)
        Cluster label and synthetic frame (header ``NCOMBINE``, ``CLUSTER``, ``CLMASS``: the
        cluster's summed G).
    """
    out = []
    labels = np.asarray(labels, int)
    g = np.asarray(global_weight, float)
    for j, k in enumerate(sorted(set(labels.tolist()))):
        idx = np.flatnonzero(labels == k)
        w = g[idx] if g[idx].sum() > 0 else np.ones(len(idx))
        ccd = frames.subset(idx).reduce("average", weights=w)
        ccd.header["CLUSTER"] = (int(k), "state cluster of the frames averaged")
        ccd.header["CLMASS"] = (float(g[idx].sum()), "summed global weight of the cluster")
        out.append((int(k), ccd))
        if progress is not None:
            progress(j + 1, len(set(labels.tolist())))
    return out
