"""SAMI losses, MI estimators and the response-token KL against hand computations (spec §1.3, §1.6, §3)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from sami_toolkit.training.losses import infonce_mi, kl_response_tokens, paper_mi, sami_loss


def _lse(values: list[float]) -> float:
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def _hand_row(s: list[list[float]]) -> float:
    """L_row = -(1/C) Σ_k [S_kk − lse_j S_kj]  (spec §1.3)."""
    c = len(s)
    return -sum(s[k][k] - _lse([s[k][j] for j in range(c)]) for k in range(c)) / c


def _hand_col(s: list[list[float]]) -> float:
    """L_col = -(1/C) Σ_j [S_jj − lse_k S_kj]  (spec §1.3)."""
    c = len(s)
    return -sum(s[j][j] - _lse([s[k][j] for k in range(c)]) for j in range(c)) / c


def _hand_paper_mi(s: list[list[float]]) -> float:
    """(1/C) Σ_j [S_jj − (1/C) Σ_k S_kj]  (spec §1.6)."""
    c = len(s)
    return sum(s[j][j] - sum(s[k][j] for k in range(c)) / c for j in range(c)) / c


def _random_matrix(c: int, seed: int, scale: float = 5.0) -> list[list[float]]:
    rng = random.Random(seed)
    return [[rng.uniform(-scale, scale) - 20.0 for _ in range(c)] for _ in range(c)]


@pytest.mark.parametrize("c", [2, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_sami_loss_matches_hand_computation(c: int, seed: int) -> None:
    s = _random_matrix(c, seed)
    t = torch.tensor(s, dtype=torch.float64)
    row, col = _hand_row(s), _hand_col(s)
    assert sami_loss(t, "responses").item() == pytest.approx(row, rel=1e-6)
    assert sami_loss(t, "constitutions").item() == pytest.approx(col, rel=1e-6)
    assert sami_loss(t, "both").item() == pytest.approx((row + col) / 2, rel=1e-6)


def test_rows_are_constitutions_not_responses() -> None:
    # asymmetric matrix: rows (constitutions) differ strongly, columns barely
    s = torch.tensor([[0.0, -1.0], [-10.0, -10.5]])
    # responses variant normalises within a row: row 1 gives softmax over (-10, -10.5) → target is j=1 (-10.5)
    expected = -0.5 * ((0.0 - _lse([0.0, -1.0])) + (-10.5 - _lse([-10.0, -10.5])))
    assert sami_loss(s, "responses").item() == pytest.approx(expected, rel=1e-6)


def test_reduction_none_and_leading_dims() -> None:
    torch.manual_seed(0)
    s = torch.randn(2, 3, 4, 4)
    per = sami_loss(s, reduction="none")
    assert per.shape == (2, 3)
    assert per[1, 2].item() == pytest.approx(sami_loss(s[1, 2]).item(), rel=1e-6)
    assert sami_loss(s).item() == pytest.approx(per.mean().item(), rel=1e-6)
    assert paper_mi(s, reduction="none").shape == (2, 3)
    assert infonce_mi(s, reduction="none").shape == (2, 3)


@pytest.mark.parametrize("bad, message", [
    (torch.zeros(3), "shape"),
    (torch.zeros(2, 3), "square"),
    (torch.zeros(1, 1), "C = 2"),
    (torch.zeros(2, 2, dtype=torch.long), "floating"),
])
def test_bad_shapes_raise_clear_value_error(bad: torch.Tensor, message: str) -> None:
    for fn in (sami_loss, infonce_mi, paper_mi):
        with pytest.raises(ValueError, match=message):
            fn(bad)


def test_unknown_variant_and_reduction() -> None:
    with pytest.raises(ValueError, match="variant"):
        sami_loss(torch.zeros(2, 2), variant="rows")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reduction"):
        sami_loss(torch.zeros(2, 2), reduction="sum")  # type: ignore[arg-type]


@pytest.mark.parametrize("variant", ["both", "responses", "constitutions"])
@pytest.mark.parametrize("c", [2, 4])
def test_gradients_reach_every_entry(variant: str, c: int) -> None:
    torch.manual_seed(c)
    s = (torch.randn(c, c) * 3).requires_grad_()
    sami_loss(s, variant).backward()  # type: ignore[arg-type]
    assert torch.all(s.grad != 0), s.grad
    # diagonal entries are pushed up, off-diagonal ones down
    assert torch.all(torch.diagonal(s.grad) < 0)
    off = s.grad[~torch.eye(c, dtype=torch.bool)]
    assert torch.all(off > 0)


def test_infonce_mi_never_exceeds_log_c() -> None:
    gen = torch.Generator().manual_seed(0)
    for c in (2, 3, 4, 8):
        for scale in (0.1, 10.0, 1000.0):
            s = torch.randn(64, c, c, generator=gen) * scale
            # put most mass on the diagonal too, the regime where the bound is approached
            s_diag = s + torch.eye(c) * scale * 5
            for variant in ("both", "responses", "constitutions"):
                for m in (s, s_diag):
                    values = infonce_mi(m, variant=variant, reduction="none")  # type: ignore[arg-type]
                    assert torch.all(values <= math.log(c) + 1e-5)
    perfect = torch.full((4, 4), -1e4) + torch.eye(4) * 1e4
    assert infonce_mi(perfect).item() == pytest.approx(math.log(4), abs=1e-5)


@pytest.mark.parametrize("c", [2, 4])
def test_infonce_mi_is_log_c_minus_loss(c: int) -> None:
    s = _random_matrix(c, 7)
    t = torch.tensor(s, dtype=torch.float64)
    assert infonce_mi(t, "constitutions").item() == pytest.approx(math.log(c) - _hand_col(s), rel=1e-6)


@pytest.mark.parametrize("c", [2, 4])
def test_paper_mi_matches_hand_computation(c: int) -> None:
    s = _random_matrix(c, 3)
    assert paper_mi(torch.tensor(s, dtype=torch.float64)).item() == pytest.approx(_hand_paper_mi(s), rel=1e-9)


def test_paper_mi_is_not_bounded_by_log_c() -> None:
    # sum log-probs with a large diagonal margin: the paper's estimator exceeds log C, InfoNCE cannot (spec §1.6)
    s = torch.tensor([[-10.0, -60.0], [-50.0, -12.0]])
    assert paper_mi(s).item() > math.log(2)
    assert infonce_mi(s).item() <= math.log(2) + 1e-6
    assert paper_mi(s).item() >= infonce_mi(s, "constitutions").item()


def _hand_kl(p_logits: list[float], q_logits: list[float]) -> float:
    lp = [x - _lse(p_logits) for x in p_logits]
    lq = [x - _lse(q_logits) for x in q_logits]
    return sum(math.exp(a) * (a - b) for a, b in zip(lp, lq))


def test_kl_response_tokens_hand_computation_and_mask() -> None:
    torch.manual_seed(0)
    policy = torch.randn(2, 3, 5, dtype=torch.float64)
    ref = torch.randn(2, 3, 5, dtype=torch.float64)
    mask = torch.tensor([[True, False, True], [False, False, True]])
    expected = [_hand_kl(policy[i, t].tolist(), ref[i, t].tolist()) for i in range(2) for t in range(3)
                if mask[i, t]]
    got = kl_response_tokens(policy, ref, mask)
    assert got.item() == pytest.approx(sum(expected) / len(expected), rel=1e-6)
    # masked positions (prompt/padding) do not enter
    policy2 = policy.clone()
    policy2[0, 1] += torch.randn(5, dtype=torch.float64) * 5
    assert kl_response_tokens(policy2, ref, mask).item() == pytest.approx(got.item(), rel=1e-12)
    # response positions do
    policy2[0, 0] += torch.randn(5, dtype=torch.float64) * 5
    assert kl_response_tokens(policy2, ref, mask).item() != pytest.approx(got.item(), rel=1e-3)
    # no mask = every position
    all_pos = [_hand_kl(policy[i, t].tolist(), ref[i, t].tolist()) for i in range(2) for t in range(3)]
    assert kl_response_tokens(policy, ref).item() == pytest.approx(sum(all_pos) / 6, rel=1e-6)
    assert kl_response_tokens(ref, ref, mask).item() == pytest.approx(0.0, abs=1e-9)


def test_kl_gradient_flows_into_policy_only() -> None:
    policy = torch.randn(4, 7, requires_grad=True)
    ref = torch.randn(4, 7, requires_grad=True)
    kl_response_tokens(policy, ref).backward()
    assert policy.grad is not None and torch.any(policy.grad != 0)
    assert ref.grad is None


def test_kl_shape_errors() -> None:
    with pytest.raises(ValueError, match="same shape"):
        kl_response_tokens(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="mask shape"):
        kl_response_tokens(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="no response token"):
        kl_response_tokens(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, dtype=torch.bool))


def test_loss_components_are_registered() -> None:
    from sami_toolkit.core.errors import ConfigError
    from sami_toolkit.plugins.registry import load_plugins

    registry = load_plugins()
    s = torch.tensor([[-1.0, -3.0], [-2.5, -0.5]])
    for name, variant in (("sami", "both"), ("two-sided", "both"), ("sami-responses", "responses"),
                          ("sami-constitutions", "constitutions")):
        cls = registry.get("losses", name)
        loss = cls.from_options({})
        assert loss(s).item() == pytest.approx(sami_loss(s, variant).item(), rel=1e-7)  # type: ignore[arg-type]
    weighted = registry.get("losses", "sami").from_options({"weight": 2.0})
    assert weighted(s).item() == pytest.approx(2 * sami_loss(s).item(), rel=1e-7)
    with pytest.raises(ConfigError, match="wieght"):
        registry.get("losses", "sami").from_options({"wieght": 2.0})
