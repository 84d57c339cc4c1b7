import pytest
import torch

from minigen.core.profiles import PROFILES, current_profile, pick


@pytest.mark.parametrize(
    "raw, expected", [("smoke", "smoke"), (" CPU ", "cpu"), ("Gpu\n", "gpu")]
)
def test_profile_from_env_is_trimmed_and_case_insensitive(
    monkeypatch, raw, expected
):
    monkeypatch.setenv("MINIGEN_PROFILE", raw)
    assert current_profile() == expected


@pytest.mark.parametrize("cuda, expected", [(True, "gpu"), (False, "cpu")])
@pytest.mark.parametrize("unset", [True, False])
def test_unset_or_empty_profile_follows_cuda(monkeypatch, cuda, expected, unset):
    if unset:
        monkeypatch.delenv("MINIGEN_PROFILE", raising=False)
    else:
        monkeypatch.setenv("MINIGEN_PROFILE", "  ")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert current_profile() == expected


def test_unknown_profile_names_value_and_valid_ones(monkeypatch):
    monkeypatch.setenv("MINIGEN_PROFILE", "laptop")
    with pytest.raises(ValueError, match="'laptop'") as info:
        current_profile()
    assert all(name in str(info.value) for name in PROFILES)


@pytest.mark.parametrize("profile", PROFILES)
def test_pick_returns_the_value_of_the_current_profile(monkeypatch, profile):
    monkeypatch.setenv("MINIGEN_PROFILE", profile)
    values = {"smoke": 20, "cpu": 2_000, "gpu": 20_000}
    assert pick(**values) == values[profile]


def test_pick_takes_all_three_keywords_only(monkeypatch):
    monkeypatch.setenv("MINIGEN_PROFILE", "cpu")
    with pytest.raises(TypeError):
        pick(1, 2, 3)
    with pytest.raises(TypeError):
        pick(smoke=1, cpu=2)
