"""A phantom's contrasts: tissue and lesion intensities, partial volume, bias field and noise.

Per contrast, tissue means with realistic *relative* order (T1: WM > GM > CSF; T2: CSF > GM > WM;
FLAIR: GM > WM > CSF; PD: CSF >= GM > WM, low contrast; T1c: T1 plus enhancing choroid plexus and
vessels), jittered per case (+-10%, order kept), partial volume (the piecewise-constant image smoothed
with a Gaussian of 0.5-0.7 voxel), a smooth multiplicative bias field (about +-15-20%), Rician (default)
or Gaussian noise with an SNR of 15-30 relative to the brightest tissue (WM on T1), and a random overall
scale (brightest tissue mean 300-1200). Voxels outside the brain are exactly 0 (skull-stripped: the
brain mask is applied after the noise).

Tumour means are set relative to the case's tissue means (:data:`_TUMOUR_MEANS`, each drawn per case
within a range that keeps the order), BraTS-like: T1 hypo-intense (necrosis darkest, between CSF and
GM; enhancing ~GM; edema between GM and WM); T1c as T1 but the rim enhancing (1.5-1.9 x WM); T2 edema
bright (0.70-0.82 x CSF), necrosis brighter (0.86-0.95 x CSF), enhancing between GM and edema; FLAIR
edema bright (1.2-1.45 x GM), necrosis dark-ish (between CSF and WM: suppressed fluid), enhancing
between GM and edema; PD edema brighter than WM (1.12-1.2 x WM), necrosis ~CSF. A smooth texture (+-6%, up to
twice that) varies them inside the tumour; partial volume, bias field and noise (whose level follows
the healthy tissue) are applied as to the rest.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from brainbundles.data.phantom.anatomy import _Anatomy
from brainbundles.data.phantom.grid import _Fourier
from brainbundles.data.phantom.tissue import (
    _BG,
    _CHOROID,
    _CSF,
    _DGM,
    _EDEMA,
    _ENH,
    _GLIOSIS,
    _GM,
    _LACUNE,
    _NEC,
    _TISSUE_LABEL,
    _VESSEL,
    _WM,
    _WMH,
)

#: contrasts :func:`make_phantom` can render
CONTRASTS: tuple[str, ...] = ("t1", "t1c", "t2", "flair", "pd")

#: relative tissue means per contrast for (CSF, GM, deep GM, WM), before the per-case jitter and scale
_BASE_MEANS: dict[str, dict[int, float]] = {
    "t1": {_CSF: 0.22, _GM: 0.62, _DGM: 0.76, _WM: 1.00},
    "t1c": {_CSF: 0.22, _GM: 0.62, _DGM: 0.76, _WM: 1.00},
    "t2": {_CSF: 1.00, _GM: 0.52, _DGM: 0.46, _WM: 0.38},
    "flair": {_CSF: 0.14, _GM: 1.00, _DGM: 0.84, _WM: 0.70},
    "pd": {_CSF: 1.00, _GM: 0.92, _DGM: 0.86, _WM: 0.80},
}
#: least ratio between the means of tissues next to each other in a contrast's order
_MIN_STEP = 1.04
#: relative intensity (x WM) of choroid plexus and vessels on T1c; on the other contrasts they look like CSF
_ENHANCEMENT = {_CHOROID: 2.0, _VESSEL: 1.8}
#: tumour means per contrast, relative to the case's (jittered) means: ``class: (a, b, lo, hi)`` gives
#: ``mean[a] + f * (mean[b] - mean[a])`` with ``f`` drawn uniformly in ``[lo, hi]`` per case (``a = _BG``,
#: whose mean is 0, makes it ``f * mean[b]``); a class may refer to the classes listed before it. The
#: ranges keep the orders stated below whatever the draw (the tissue means are at least 4% apart).
_TUMOUR_MEANS: dict[str, dict[int, tuple[int, int, float, float]]] = {
    # T1: hypo-intense; necrosis darkest (between CSF and GM), enhancing ~GM, edema between GM and WM
    "t1": {_NEC: (_CSF, _GM, 0.25, 0.5), _ENH: (_BG, _GM, 0.88, 0.98), _EDEMA: (_GM, _WM, 0.3, 0.55)},
    # T1c: as T1, the enhancing rim bright (1.5-1.9 x WM)
    "t1c": {_NEC: (_CSF, _GM, 0.2, 0.45), _ENH: (_BG, _WM, 1.5, 1.9), _EDEMA: (_GM, _WM, 0.3, 0.55)},
    # T2: edema bright (0.70-0.82 x CSF), necrosis brighter (0.86-0.95 x CSF), enhancing between GM and edema
    "t2": {_EDEMA: (_BG, _CSF, 0.7, 0.82), _NEC: (_BG, _CSF, 0.86, 0.95), _ENH: (_GM, _EDEMA, 0.3, 0.6)},
    # FLAIR: edema bright (1.2-1.45 x GM), necrosis dark-ish (suppressed fluid: between CSF and WM),
    # enhancing bright-ish (between GM and edema)
    "flair": {_EDEMA: (_BG, _GM, 1.2, 1.45), _NEC: (_CSF, _WM, 0.35, 0.7), _ENH: (_GM, _EDEMA, 0.15, 0.5)},
    # PD: edema brighter than WM (1.12-1.2 x WM, ~GM-CSF), necrosis ~CSF, enhancing between WM and GM
    "pd": {_EDEMA: (_BG, _WM, 1.12, 1.2), _NEC: (_GM, _CSF, 0.8, 1.05), _ENH: (_WM, _GM, 0.6, 1.0)},
}
#: amplitude of the smooth intensity texture inside the tumour (relative)
_TUMOUR_TEXTURE = 0.06
#: white-matter lesion means per contrast, as :data:`_TUMOUR_MEANS`: WMH hyper-intense on FLAIR (1.15-1.4 x
#: GM), T2 and PD, mildly hypo-intense on T1 (between GM and WM); the other pathology is a lacune (a cavity
#: with fluid signal, dark on FLAIR) with a gliotic rim that is bright on FLAIR, as WMH are
_WMH_MEANS: dict[str, dict[int, tuple[int, int, float, float]]] = {
    "t1": {_WMH: (_GM, _WM, 0.3, 0.65), _LACUNE: (_BG, _CSF, 1.0, 1.2), _GLIOSIS: (_CSF, _GM, 0.5, 0.9)},
    "t1c": {_WMH: (_GM, _WM, 0.3, 0.65), _LACUNE: (_BG, _CSF, 1.0, 1.2), _GLIOSIS: (_CSF, _GM, 0.5, 0.9)},
    "t2": {_WMH: (_GM, _CSF, 0.25, 0.55), _LACUNE: (_BG, _CSF, 0.9, 1.0), _GLIOSIS: (_GM, _CSF, 0.3, 0.6)},
    "flair": {_WMH: (_BG, _GM, 1.15, 1.4), _LACUNE: (_CSF, _WM, 0.0, 0.3), _GLIOSIS: (_BG, _GM, 1.1, 1.3)},
    "pd": {_WMH: (_GM, _CSF, 0.4, 1.0), _LACUNE: (_BG, _CSF, 0.95, 1.0), _GLIOSIS: (_GM, _CSF, 0.3, 0.8)},
}

#: MS lesion means per contrast, relative to the case's tissue means: ``(a, b, mild, severe)`` gives
#: ``mean[a] + f * (mean[b] - mean[a])`` where ``f`` goes from ``mild`` to ``severe`` with the lesion voxel's
#: severity (drawn per lesion, lower towards its edge). FLAIR bright (1.1-1.45 x GM), T2 bright (between GM
#: and CSF, CSF brightest), PD bright (1.08-1.3 x GM, about CSF or above), T1 (and T1c: no enhancement)
#: mildly dark (between GM and WM, the severe ones nearer GM)
_MS_MEANS: dict[str, tuple[int, int, float, float]] = {
    "t1": (_GM, _WM, 0.7, 0.15),
    "t1c": (_GM, _WM, 0.7, 0.15),
    "t2": (_GM, _CSF, 0.25, 0.65),
    "flair": (_BG, _GM, 1.1, 1.45),
    "pd": (_BG, _GM, 1.08, 1.3),
}


def _tissue_means(rng: np.random.Generator, contrast: str) -> np.ndarray:
    """Per-tissue means for one case: jittered (+-10%) with the contrast's tissue order kept (and at least
    4% between neighbours), scaled so the brightest tissue is at 300-1200."""
    base = _BASE_MEANS[contrast]
    order = sorted(base, key=base.get)  # tissues from darkest to brightest
    jittered = np.sort(np.array([base[t] for t in order]) * rng.uniform(0.9, 1.1, len(order)))
    for k in range(1, len(jittered)):  # keep some contrast between neighbouring tissues
        jittered[k] = max(jittered[k], jittered[k - 1] * _MIN_STEP)
    means = np.zeros(len(_TISSUE_LABEL), dtype=np.float64)
    means[order] = jittered
    for t in (_CHOROID, _VESSEL):
        means[t] = means[_CSF]
    if contrast == "t1c":
        for t, rel in _ENHANCEMENT.items():
            means[t] = rel * means[_WM]
    means *= rng.uniform(300.0, 1200.0) / jittered[-1]
    return means


def _lesion_means(
    rng: np.random.Generator, table: dict[int, tuple[int, int, float, float]], means: np.ndarray
) -> None:
    """Fill in lesion classes' means (a contrast's :data:`_TUMOUR_MEANS` or :data:`_WMH_MEANS`) from the
    case's tissue means."""
    for cls, (a, b, lo, hi) in table.items():
        means[cls] = means[a] + rng.uniform(lo, hi) * (means[b] - means[a])


def _lesion_texture(rng: np.random.Generator, anatomy: _Anatomy, t: np.ndarray) -> np.ndarray:
    """A smooth relative texture (1 +- 6%, up to twice that) at the flat indices ``t``."""
    texture = _Fourier.draw(rng, 12, rng.uniform(4.0, 6.0))
    ti, tj, tk = np.unravel_index(t, anatomy.grid.shape)
    ux, uy, uz = anatomy.u
    tp = (ux[ti].astype(np.float32), uy[tj].astype(np.float32), uz[tk].astype(np.float32))
    return 1.0 + np.float32(_TUMOUR_TEXTURE) * np.clip(texture(tp), -2.0, 2.0)


def _render_contrast(seed: int, anatomy: _Anatomy, contrast: str, noise: str) -> np.ndarray:
    """One contrast on the RAS grid: tissue means, partial volume, bias field, noise, brain mask."""
    stream = 10 + CONTRASTS.index(contrast)
    rng = np.random.default_rng([seed, stream])
    means = _tissue_means(rng, contrast)
    peak = means.max()  # the noise level follows the healthy tissue
    pv_sigma = rng.uniform(0.5, 0.7)
    bias_field = _Fourier.draw(rng, 8, 0.35)
    bias_amp = rng.uniform(0.06, 0.09)
    snr = rng.uniform(15.0, 30.0)

    ux, uy, uz = anatomy.u
    piecewise = means.astype(np.float32)[anatomy.tissue]
    # lesions draw from their own streams: the healthy tissue renders as without them
    for t, first, table in ((anatomy.tumour, 30, _TUMOUR_MEANS), (anatomy.wmh, 40, _WMH_MEANS)):
        if t is None:
            continue
        trng = np.random.default_rng([seed, first + CONTRASTS.index(contrast)])
        _lesion_means(trng, table[contrast], means)
        rel = _lesion_texture(trng, anatomy, t)
        piecewise.ravel()[t] = means.astype(np.float32)[anatomy.tissue.ravel()[t]] * rel
    if anatomy.ms is not None and anatomy.ms_level is not None:  # per voxel: the lesion's severity
        trng = np.random.default_rng([seed, 50 + CONTRASTS.index(contrast)])
        a, b, mild, severe = _MS_MEANS[contrast]
        f = np.float32(mild) + np.float32(severe - mild) * anatomy.ms_level
        lesion = np.float32(means[a]) + f * np.float32(means[b] - means[a])
        piecewise.ravel()[anatomy.ms] = lesion * _lesion_texture(trng, anatomy, anatomy.ms)
    img = gaussian_filter(piecewise, pv_sigma, mode="constant")
    idx = anatomy.brain
    ii, jj, kk = np.unravel_index(idx, anatomy.grid.shape)
    p = (ux[ii].astype(np.float32), uy[jj].astype(np.float32), uz[kk].astype(np.float32))
    vals = img.ravel()[idx] * np.exp(np.float32(bias_amp) * np.clip(bias_field(p), -2.5, 2.5))
    if noise != "none":
        sigma = np.float32(peak / snr)
        nrng = np.random.default_rng([seed, stream + 10])
        re = vals + sigma * nrng.standard_normal(vals.shape, dtype=np.float32)
        if noise == "rician":
            im = sigma * nrng.standard_normal(vals.shape, dtype=np.float32)
            vals = np.sqrt(re * re + im * im)
        else:
            vals = np.maximum(re, 0.0)
    out = np.zeros(anatomy.grid.shape, dtype=np.float32)
    out.ravel()[idx] = vals
    return out
