"""Robust penalty and body priors of SMPLify / SMPLify-3D (torch, batched over persons).

All priors return the *unweighted* per-person value, shape ``(B,)``. The optimizer applies
the squared weights of the research code itself (``w_pose**2 * pose_prior(...)``,
``w_angle**2 * angle_prior(...)``, ``w_shape**2 * shape_prior(...)``).

Everything is device- and dtype-agnostic: tensors stay on the device/dtype of the input;
:class:`MaxMixturePosePrior` is an ``nn.Module`` whose buffers follow ``.to(...)``.
"""
from __future__ import annotations

import os
import pickle
from functools import lru_cache
from typing import Dict, Union

import numpy as np
import torch

__all__ = [
    "gmof",
    "MaxMixturePosePrior",
    "fit_pose_gmm",
    "save_gmm_pickle",
    "load_gmm_pickle",
    "angle_prior",
    "shape_prior",
    "ANGLE_PRIOR_BODY_POSE_INDICES",
    "ANGLE_PRIOR_SIGNS",
]

PathLike = Union[str, "os.PathLike[str]"]


def gmof(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Geman–McClure robust penalty, elementwise: ``sigma² x² / (sigma² + x²)``.

    Quadratic (≈ x²) for ``|x| << sigma``, equal to ``sigma²/2`` at ``|x| = sigma`` and
    saturating at ``sigma²`` for ``|x| >> sigma``. Same shape as ``x``.
    """
    sigma_sq = float(sigma) ** 2
    x_sq = x * x
    return sigma_sq * x_sq / (sigma_sq + x_sq)


# --------------------------------------------------------------------------- angle / shape


#: SMPLify's elbow/knee bending prior: full-pose (72-d) indices 55, 58, 12, 15 → the 69-d
#: body pose (joints 1..23, no global orientation) holds them at 52, 55, 9, 12.
#: Full-pose 55 = left elbow (SMPL joint 18) y-axis, 58 = right elbow (joint 19) y-axis,
#: 12 = left knee (joint 4) x-axis, 15 = right knee (joint 5) x-axis.
ANGLE_PRIOR_BODY_POSE_INDICES = (52, 55, 9, 12)
#: Signs s of SMPLify: a positive ``s·θ`` is the unnatural (hyper-extension) direction.
ANGLE_PRIOR_SIGNS = (1.0, -1.0, -1.0, -1.0)


def angle_prior(body_pose: torch.Tensor) -> torch.Tensor:
    """SMPLify's elbow and knee bending prior.

    ``sum_k exp(s_k · θ_k)²`` over the axis-angle components θ at body-pose indices
    (52, 55, 9, 12) (full-pose indices 55, 58, 12, 15: left elbow y, right elbow y,
    left knee x, right knee x) with signs (+1, −1, −1, −1). Bending the joint the natural
    way makes ``s·θ`` negative and the penalty decays toward 0; hyper-extension grows it
    exponentially. A zero pose scores 4.

    Args:
        body_pose: (B, 69) axis-angle body pose (SMPL joints 1..23), radians.

    Returns:
        (B,) unweighted prior (the caller multiplies by ``w_angle²``).
    """
    if body_pose.ndim != 2 or body_pose.shape[1] != 69:
        raise ValueError(f"body_pose must have shape (B, 69), got {tuple(body_pose.shape)}")
    idx, signs = _angle_prior_tables(body_pose.device, body_pose.dtype)
    return torch.exp(body_pose.index_select(1, idx) * signs).pow(2).sum(dim=-1)


@lru_cache(maxsize=None)
def _angle_prior_tables(device: torch.device, dtype: torch.dtype):
    """The angle prior's indices and signs on ``device``, made once (not copied there at every step)."""
    return (torch.tensor(ANGLE_PRIOR_BODY_POSE_INDICES, device=device),
            torch.tensor(ANGLE_PRIOR_SIGNS, dtype=dtype, device=device))


def shape_prior(betas: torch.Tensor) -> torch.Tensor:
    """Shape prior ``sum betas²`` per person.

    Args:
        betas: (B, K) shape coefficients.

    Returns:
        (B,) unweighted prior (the caller multiplies by ``w_shape²``).
    """
    if betas.ndim != 2:
        raise ValueError(f"betas must have shape (B, K), got {tuple(betas.shape)}")
    return betas.pow(2).sum(dim=-1)


# --------------------------------------------------------------------------- GMM pose prior


_GMM_HELP = (
    "gmm_08.pkl (SMPLify's 8-component pose GMM) comes with the SMPLify code from the "
    "SMPLify website (smplify.is.tue.mpg.de) or the smplify-x / SMPLify-3D repositories "
    "(file 'gmm_08.pkl'); set the config key `pose_prior_path` to its location, or fit one "
    "on your own poses with smplify3d_core.body.priors.fit_pose_gmm + save_gmm_pickle."
)


def _validate_gmm(means, covars, weights) -> Dict[str, np.ndarray]:
    means = np.asarray(means, dtype=np.float64)
    covars = np.asarray(covars, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if means.ndim != 2:
        raise ValueError(f"GMM 'means' must have shape (M, D), got {means.shape}")
    m, d = means.shape
    if covars.shape != (m, d, d):
        raise ValueError(f"GMM 'covars' must have shape ({m}, {d}, {d}), got {covars.shape}")
    if weights.shape != (m,):
        raise ValueError(f"GMM 'weights' must have shape ({m},), got {weights.shape}")
    for name, arr in (("means", means), ("covars", covars), ("weights", weights)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"GMM '{name}' contains NaN or inf values")
    if np.any(weights <= 0):
        raise ValueError("GMM 'weights' must all be positive")
    return {"means": means, "covars": covars, "weights": weights}


def load_gmm_pickle(path: PathLike) -> Dict[str, np.ndarray]:
    """Read a GMM pickle in SMPLify's gmm_08.pkl layout.

    The file is a pickled dict with keys ``'means'`` (M, D), ``'covars'`` (M, D, D),
    ``'weights'`` (M,) (Python-2 pickles are read with ``encoding='latin1'``).
    Raises FileNotFoundError (with where to get the file) or ValueError (bad layout).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Pose prior GMM file not found: {path!r}. {_GMM_HELP}")
    with open(path, "rb") as fh:
        try:
            data = pickle.load(fh, encoding="latin1")
        except Exception as exc:  # noqa: BLE001 - report any unpickling failure clearly
            raise ValueError(f"Cannot read GMM pickle {path!r}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"GMM pickle {path!r} must hold a dict, got {type(data).__name__}")
    missing = [k for k in ("means", "covars", "weights") if k not in data]
    if missing:
        raise ValueError(
            f"GMM pickle {path!r} is missing keys {missing}; expected 'means', 'covars', 'weights'"
        )
    try:
        return _validate_gmm(data["means"], data["covars"], data["weights"])
    except ValueError as exc:
        raise ValueError(f"GMM pickle {path!r}: {exc}") from exc


def save_gmm_pickle(gmm: Dict[str, np.ndarray], path: PathLike) -> None:
    """Write ``gmm`` (keys means (M, D), covars (M, D, D), weights (M,)) in the gmm_08.pkl
    layout: a dict of float64 numpy arrays, pickle protocol 2."""
    checked = _validate_gmm(gmm["means"], gmm["covars"], gmm["weights"])
    directory = os.path.dirname(os.fspath(path))
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(checked, fh, protocol=2)


class MaxMixturePosePrior(torch.nn.Module):
    """SMPLify's max-mixture Gaussian pose prior on the 69-d axis-angle body pose.

    For each component m (mean μ_m, covariance Σ_m, weight w_m) the per-person energy is

        E_m(x) = 0.5 (x − μ_m)ᵀ Σ_m⁻¹ (x − μ_m) − log w_m + 0.5 log det Σ_m

    and ``forward`` returns ``min_m E_m(x)`` (the "max mixture": the most likely single
    component, not the log-sum over components).

    Constant: ``E_m(x) = −log(w_m N(x; μ_m, Σ_m)) − (D/2) log(2π)``, i.e. the exact Gaussian
    negative log-likelihood of the best component *without* the ``(D/2) log 2π`` term
    (D = 69). smplify-x's ``MaxMixturePrior`` additionally subtracts
    ``0.5 log det Σ_min`` (it normalises determinants by the smallest one) and adds
    ``(D/2) log 2π``; it therefore differs from this value only by a pose-independent
    constant, so gradients and the argmin are identical. The value may be negative.

    Build-time numerics are float64 (precisions Σ⁻¹, their Cholesky factors, log-dets);
    buffers are stored in ``dtype`` (float32 by default) and follow ``.to(device/dtype)``.

    Buffers: ``means`` (M, D), ``precisions`` (M, D, D), ``precision_chol`` (M, D, D)
    (lower-triangular L with Σ⁻¹ = L Lᵀ), ``constants`` (M,) = −log w_m + 0.5 log det Σ_m,
    ``weights`` (M,).
    """

    means: torch.Tensor
    precisions: torch.Tensor
    precision_chol: torch.Tensor
    constants: torch.Tensor
    weights: torch.Tensor

    def __init__(self, means, covars, weights, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        gmm = _validate_gmm(
            _as_numpy(means), _as_numpy(covars), _as_numpy(weights)
        )
        means64, covars64, weights64 = gmm["means"], gmm["covars"], gmm["weights"]
        covars64 = 0.5 * (covars64 + np.transpose(covars64, (0, 2, 1)))
        try:
            cov_chol = np.linalg.cholesky(covars64)  # Σ = C Cᵀ
        except np.linalg.LinAlgError as exc:
            raise ValueError("GMM 'covars' must be symmetric positive definite") from exc
        logdet = 2.0 * np.sum(np.log(np.diagonal(cov_chol, axis1=1, axis2=2)), axis=1)
        eye = np.eye(means64.shape[1])
        precisions = np.stack([np.linalg.solve(c, eye) for c in covars64])
        precisions = 0.5 * (precisions + np.transpose(precisions, (0, 2, 1)))
        prec_chol = np.linalg.cholesky(precisions)  # Σ⁻¹ = L Lᵀ
        constants = -np.log(weights64) + 0.5 * logdet
        self.register_buffer("means", torch.as_tensor(means64, dtype=dtype))
        self.register_buffer("precisions", torch.as_tensor(precisions, dtype=dtype))
        self.register_buffer("precision_chol", torch.as_tensor(prec_chol, dtype=dtype))
        self.register_buffer("constants", torch.as_tensor(constants, dtype=dtype))
        self.register_buffer("weights", torch.as_tensor(weights64, dtype=dtype))

    @classmethod
    def from_pickle(cls, path: PathLike, dtype: torch.dtype = torch.float32) -> "MaxMixturePosePrior":
        """Build from a gmm_08.pkl-layout pickle (see :func:`load_gmm_pickle` for errors)."""
        gmm = load_gmm_pickle(path)
        return cls(gmm["means"], gmm["covars"], gmm["weights"], dtype=dtype)

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def component_energies(self, body_pose: torch.Tensor) -> torch.Tensor:
        """Per-component energies E_m(x), shape (B, M), for body_pose (B, D).

        Computed in the buffers' dtype, returned in ``body_pose``'s dtype.
        """
        if body_pose.ndim != 2 or body_pose.shape[1] != self.dim:
            raise ValueError(
                f"body_pose must have shape (B, {self.dim}), got {tuple(body_pose.shape)}"
            )
        diff = body_pose.unsqueeze(1).to(self.means.dtype) - self.means.unsqueeze(0)  # (B, M, D)
        # ||Lᵀ d||² = dᵀ L Lᵀ d = dᵀ Σ⁻¹ d  (non-negative by construction)
        z = torch.einsum("mji,bmj->bmi", self.precision_chol, diff)
        quad = z.pow(2).sum(dim=-1)  # (B, M)
        energies = 0.5 * quad + self.constants.unsqueeze(0)
        return energies.to(body_pose.dtype)

    def forward(self, body_pose: torch.Tensor) -> torch.Tensor:
        """Max-mixture energy per person.

        Args:
            body_pose: (B, 69) axis-angle body pose (SMPL joints 1..23), radians.

        Returns:
            (B,) ``min_m E_m(body_pose)``, unweighted (the caller multiplies by ``w_pose²``).
        """
        return self.component_energies(body_pose).min(dim=1).values


def _as_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


# --------------------------------------------------------------------------- GMM fitting (numpy EM)


def _kmeans_pp_init(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: (k, D) centres chosen from the rows of x."""
    n = x.shape[0]
    centres = [x[rng.integers(n)]]
    closest = np.sum((x - centres[0]) ** 2, axis=1)
    for _ in range(1, k):
        total = closest.sum()
        if total <= 0:  # all remaining points coincide with a centre
            idx = int(rng.integers(n))
        else:
            idx = int(rng.choice(n, p=closest / total))
        centres.append(x[idx])
        closest = np.minimum(closest, np.sum((x - x[idx]) ** 2, axis=1))
    return np.stack(centres)


def _log_gauss(x: np.ndarray, means: np.ndarray, covars: np.ndarray) -> np.ndarray:
    """log N(x_n; μ_m, Σ_m), shape (N, M)."""
    n, d = x.shape
    out = np.empty((n, means.shape[0]))
    for m in range(means.shape[0]):
        chol = np.linalg.cholesky(covars[m])
        sol = np.linalg.solve(chol, (x - means[m]).T)  # (D, N)
        maha = np.sum(sol * sol, axis=0)
        logdet = 2.0 * np.sum(np.log(np.diag(chol)))
        out[:, m] = -0.5 * (maha + logdet + d * np.log(2.0 * np.pi))
    return out


def fit_pose_gmm(
    poses: np.ndarray,
    n_components: int = 8,
    seed: int = 0,
    reg: float = 1e-4,
    iters: int = 100,
    tol: float = 1e-6,
    n_init: int = 3,
) -> Dict[str, np.ndarray]:
    """Fit a full-covariance Gaussian mixture to poses with plain numpy EM.

    Initialisation: ``n_init`` k-means++ seedings, each refined by 10 Lloyd iterations, the
    one of lowest inertia kept (deterministic for ``seed``); then up to ``iters`` EM iterations, stopping early when the mean
    log-likelihood improves by less than ``tol``. ``reg`` is added to every covariance
    diagonal (in the input unit², radians² for poses) to keep them positive definite.
    A component that loses all its points is re-seeded on the worst-explained sample.

    Args:
        poses: (N, D) samples (D = 69 for SMPL body poses), N >= n_components.

    Returns:
        dict with float64 ``means`` (M, D), ``covars`` (M, D, D), ``weights`` (M,)
        (sums to 1) — the gmm_08.pkl layout, ready for :func:`save_gmm_pickle`.
    """
    x = np.asarray(poses, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"poses must have shape (N, D), got {x.shape}")
    n, d = x.shape
    k = int(n_components)
    if k < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components}")
    if n < k:
        raise ValueError(f"need at least n_components={k} poses, got {n}")
    if not np.all(np.isfinite(x)):
        raise ValueError("poses contains NaN or inf values")
    if reg < 0:
        raise ValueError(f"reg must be >= 0, got {reg}")
    rng = np.random.default_rng(seed)
    eye = np.eye(d)

    # k-means++ then a few Lloyd steps; keep the best (lowest inertia) of n_init seedings
    sq_norm = np.sum(x * x, axis=1)[:, None]

    def _sq_dist(centres: np.ndarray) -> np.ndarray:  # (N, M) without an (N, M, D) temporary
        return sq_norm - 2.0 * x @ centres.T + np.sum(centres * centres, axis=1)[None, :]

    best_inertia, means = np.inf, None
    for _ in range(max(1, int(n_init))):
        centres = _kmeans_pp_init(x, k, rng)
        for _ in range(10):
            labels = np.argmin(_sq_dist(centres), axis=1)
            for m in range(k):
                members = x[labels == m]
                if len(members):
                    centres[m] = members.mean(axis=0)
        inertia = float(np.sum(np.min(_sq_dist(centres), axis=1)))
        if inertia < best_inertia:
            best_inertia, means = inertia, centres
    labels = np.argmin(_sq_dist(means), axis=1)
    global_cov = np.cov(x, rowvar=False).reshape(d, d) if n > 1 else np.zeros((d, d))
    covars = np.empty((k, d, d))
    weights = np.empty(k)
    for m in range(k):
        members = x[labels == m]
        if len(members) > d:
            covars[m] = np.cov(members, rowvar=False).reshape(d, d)
        else:
            covars[m] = global_cov
        covars[m] += reg * eye
        if reg == 0:
            covars[m] += 1e-9 * eye
        weights[m] = max(len(members), 1) / n
    weights /= weights.sum()

    prev = -np.inf
    for _ in range(int(iters)):
        # E step
        log_p = _log_gauss(x, means, covars) + np.log(weights)[None, :]
        log_norm = np.logaddexp.reduce(log_p, axis=1)
        resp = np.exp(log_p - log_norm[:, None])  # (N, M)
        ll = float(np.mean(log_norm))
        # M step
        nk = resp.sum(axis=0)
        for m in range(k):
            if nk[m] < 1e-8:  # dead component: re-seed at the worst-explained point
                worst = int(np.argmin(log_norm))
                means[m] = x[worst]
                covars[m] = global_cov + reg * eye
                nk[m] = 1.0
                continue
            means[m] = resp[:, m] @ x / nk[m]
            diff = x - means[m]
            covars[m] = (resp[:, m, None] * diff).T @ diff / nk[m] + reg * eye
            covars[m] = 0.5 * (covars[m] + covars[m].T)
        weights = nk / nk.sum()
        if ll - prev < tol:
            break
        prev = ll
    return {"means": means, "covars": covars, "weights": weights}
