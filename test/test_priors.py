"""Tests for smplify3d_core.body.priors."""
import math
import pickle

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from smplify3d_core.body import priors as P


def test_gmof_hand_values():
    sigma = 2.0
    x = torch.tensor([0.0, 2.0, -2.0, 1e4, 0.01])
    out = P.gmof(x, sigma)
    assert out[0].item() == 0.0
    assert out[1].item() == pytest.approx(sigma**2 / 2)
    assert out[2].item() == pytest.approx(sigma**2 / 2)
    assert out[3].item() == pytest.approx(sigma**2, rel=1e-6)
    assert out[4].item() == pytest.approx(0.01**2, rel=1e-4)  # quadratic near 0
    assert P.gmof(torch.ones(2, 3, 2), 1.0).shape == (2, 3, 2)


def test_angle_prior_hand_values():
    pose = torch.zeros(3, 69, dtype=torch.float64)
    assert torch.allclose(P.angle_prior(pose), torch.full((3,), 4.0, dtype=torch.float64))
    # left elbow = SMPL joint 18 -> body_pose[(18-1)*3 + 1] = 52 (full-pose index 55), sign +1
    pose[1, 52] = -1.0  # natural bend: penalty drops to exp(-2)
    # right knee = SMPL joint 5 -> body_pose[(5-1)*3 + 0] = 12 (full-pose 15), sign -1
    pose[2, 12] = -0.5  # hyper-extension: exp(0.5)^2
    out = P.angle_prior(pose)
    assert out[1].item() == pytest.approx(3 + math.exp(-2.0))
    assert out[2].item() == pytest.approx(3 + math.exp(1.0))
    # other components have no effect
    pose2 = torch.zeros(1, 69)
    pose2[0, 53] = 3.0
    pose2[0, 0] = 3.0
    assert P.angle_prior(pose2).item() == pytest.approx(4.0)
    with pytest.raises(ValueError):
        P.angle_prior(torch.zeros(2, 72))


def test_shape_prior():
    betas = torch.tensor([[1.0, 2.0, 0.0], [0.5, -0.5, 3.0]])
    assert torch.allclose(P.shape_prior(betas), torch.tensor([5.0, 9.5]))


def _toy_gmm():
    means = np.array([[0.0, 0.0, 0.0], [5.0, 5.0, -5.0]])
    a = np.array([[1.0, 0.2, 0.0], [0.2, 2.0, 0.3], [0.0, 0.3, 0.5]])
    b = np.array([[0.3, 0.0, 0.1], [0.0, 0.4, 0.0], [0.1, 0.0, 3.0]])
    covars = np.stack([a, b])
    weights = np.array([0.7, 0.3])
    return means, covars, weights


def test_max_mixture_matches_scipy_and_picks_min():
    means, covars, weights = _toy_gmm()
    prior = P.MaxMixturePosePrior(means, covars, weights, dtype=torch.float64)
    rng = np.random.default_rng(0)
    x = np.concatenate([means[0] + rng.normal(size=(3, 3)) * 0.5,
                        means[1] + rng.normal(size=(3, 3)) * 0.5,
                        rng.normal(size=(4, 3)) * 4])
    d = 3
    # documented constant: E_m = -log(w_m N(x; mu_m, S_m)) - (D/2) log(2 pi)
    energies = np.stack([
        -np.log(weights[m]) - multivariate_normal(means[m], covars[m]).logpdf(x) - 0.5 * d * np.log(2 * np.pi)
        for m in range(2)
    ], axis=1)
    got_all = prior.component_energies(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(got_all, energies, rtol=1e-10, atol=1e-10)  # energies can cross 0
    got = prior(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(got, energies.min(axis=1), rtol=1e-10, atol=1e-10)
    # points near each mean pick that component (not a log-sum-exp)
    assert np.all(np.argmin(energies[:3], axis=1) == 0)
    assert np.all(np.argmin(energies[3:6], axis=1) == 1)
    # at the midpoint of two identical components: max mixture = single-component value,
    # a full mixture NLL would be log(2) lower
    sym = P.MaxMixturePosePrior(np.array([[-1.0, 0, 0], [1.0, 0, 0]]), np.stack([np.eye(3)] * 2),
                                np.array([0.5, 0.5]), dtype=torch.float64)
    val = sym(torch.zeros(1, 3, dtype=torch.float64)).item()
    assert val == pytest.approx(0.5 * 1.0 + np.log(2.0))


def test_max_mixture_float32_batched_and_grad():
    means, covars, weights = _toy_gmm()
    prior = P.MaxMixturePosePrior(means, covars, weights)
    assert prior.means.dtype == torch.float32
    x = torch.randn(5, 3, requires_grad=True)
    out = prior(x)
    assert out.shape == (5,) and out.dtype == torch.float32
    out.sum().backward()
    assert torch.all(torch.isfinite(x.grad))
    # gradient at a component mean (when it is the argmin) is zero
    x0 = torch.tensor(means[:1], dtype=torch.float32, requires_grad=True)
    prior(x0).sum().backward()
    assert torch.allclose(x0.grad, torch.zeros_like(x0.grad), atol=1e-5)
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        prior(torch.zeros(2, 69))
    prior64 = prior.to(torch.float64)
    assert prior64.precision_chol.dtype == torch.float64


def test_bad_gmm_raises():
    means, covars, weights = _toy_gmm()
    with pytest.raises(ValueError, match="covars"):
        P.MaxMixturePosePrior(means, covars[:, :2, :2], weights)
    with pytest.raises(ValueError, match="weights"):
        P.MaxMixturePosePrior(means, covars, weights[:1])
    bad = covars.copy()
    bad[0] = -np.eye(3)
    with pytest.raises(ValueError, match="positive definite"):
        P.MaxMixturePosePrior(means, bad, weights)


def _two_clusters(n=400, d=69, seed=0):
    rng = np.random.default_rng(seed)
    mu_a = np.zeros(d)
    mu_b = np.full(d, 2.0)
    x = np.concatenate([mu_a + 0.1 * rng.normal(size=(n, d)), mu_b + 0.1 * rng.normal(size=(n // 2, d))])
    return x, mu_a, mu_b


def test_fit_pose_gmm_recovers_means():
    x, mu_a, mu_b = _two_clusters()
    gmm = P.fit_pose_gmm(x, n_components=2, seed=0, iters=20)
    assert gmm["means"].shape == (2, 69) and gmm["covars"].shape == (2, 69, 69)
    order = np.argsort(gmm["means"][:, 0])
    np.testing.assert_allclose(gmm["means"][order[0]], mu_a, atol=0.05)
    np.testing.assert_allclose(gmm["means"][order[1]], mu_b, atol=0.05)
    np.testing.assert_allclose(gmm["weights"][order], [2 / 3, 1 / 3], atol=1e-6)
    assert gmm["weights"].sum() == pytest.approx(1.0)
    # per-dimension variance ~0.01 (+reg)
    assert np.mean(np.diagonal(gmm["covars"][order[0]])) == pytest.approx(0.01 + 1e-4, rel=0.2)
    # deterministic for the seed
    gmm2 = P.fit_pose_gmm(x, n_components=2, seed=0, iters=20)
    for k in gmm:
        np.testing.assert_array_equal(gmm[k], gmm2[k])
    with pytest.raises(ValueError):
        P.fit_pose_gmm(x[:1], n_components=2)


def test_gmm_pickle_round_trip(tmp_path):
    x, _, _ = _two_clusters(n=200)
    gmm = P.fit_pose_gmm(x, n_components=2, seed=1, iters=10)
    path = tmp_path / "sub" / "gmm_08.pkl"
    P.save_gmm_pickle(gmm, path)
    with open(path, "rb") as fh:
        raw = pickle.load(fh, encoding="latin1")
    assert set(raw) == {"means", "covars", "weights"}
    assert isinstance(raw["means"], np.ndarray)
    prior = P.MaxMixturePosePrior.from_pickle(path, dtype=torch.float64)
    direct = P.MaxMixturePosePrior(gmm["means"], gmm["covars"], gmm["weights"], dtype=torch.float64)
    pose = torch.as_tensor(x[:7])
    torch.testing.assert_close(prior(pose), direct(pose))
    # the fitted prior prefers in-distribution poses
    assert prior(pose).max() < prior(torch.full((1, 69), 1.0, dtype=torch.float64)).item()


def test_from_pickle_errors(tmp_path):
    missing = tmp_path / "nope" / "gmm_08.pkl"
    with pytest.raises(FileNotFoundError) as info:
        P.MaxMixturePosePrior.from_pickle(missing)
    msg = str(info.value)
    assert str(missing) in msg and "pose_prior_path" in msg and "smplify" in msg.lower()
    bad = tmp_path / "bad.pkl"
    with open(bad, "wb") as fh:
        pickle.dump({"means": np.zeros((2, 69))}, fh, protocol=2)
    with pytest.raises(ValueError, match="covars"):
        P.MaxMixturePosePrior.from_pickle(bad)
    bad2 = tmp_path / "bad2.pkl"
    with open(bad2, "wb") as fh:
        pickle.dump({"means": np.zeros((2, 69)), "covars": np.zeros((2, 69, 3)), "weights": np.ones(2)}, fh)
    with pytest.raises(ValueError, match="shape"):
        P.MaxMixturePosePrior.from_pickle(bad2)
