"""precision: auto picks bf16 only where it is fast."""

from __future__ import annotations

import pytest

from sami_toolkit.models import devices
from sami_toolkit import get_component
from sami_toolkit.training.precision import resolve_precision
from sami_toolkit.training.settings import TrainSettings


def test_auto_precision_follows_the_cpu(monkeypatch):
    settings = TrainSettings()
    assert settings.precision == "auto"
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision(settings, "cpu") == "bf16-mixed"
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision(settings, "cpu") == "fp32"


def test_explicit_precision_is_kept(monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    for precision in ("bf16-mixed", "bf16", "fp32"):
        assert resolve_precision(TrainSettings(precision=precision), "cpu") == precision


def test_cpu_flag_detection_reads_cpuinfo():
    flags = open("/proc/cpuinfo").read()
    expected = "avx512_bf16" in flags or "amx_bf16" in flags
    devices.cpu_has_native_bf16.cache_clear()
    assert devices.cpu_has_native_bf16() is expected


def test_sampler_auto_dtype_follows_the_cpu(monkeypatch):
    """The ``hf`` sampler loads bf16 weights only where bf16 is fast, like ``precision: auto``."""
    sampler = get_component("samplers", "hf", {})
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert sampler._dtype("cpu") == "bfloat16"
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    assert sampler._dtype("cpu") == "float32"
    assert get_component("samplers", "hf", {"dtype": "float32"})._dtype("cuda") == "float32"


@pytest.mark.parametrize("options, native, expected", [
    ({}, True, True),  # auto on a bf16 CPU: autocast
    ({}, False, False),  # auto on an AVX2-only CPU: plain fp32
    ({"dtype": "bfloat16"}, True, False),  # weights already bf16: nothing to autocast
    ({"autocast": False}, True, False),
    ({"autocast": True}, False, True),
])
def test_mi_evaluator_autocast_auto_follows_the_cpu(monkeypatch, options, native, expected):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native)
    assert get_component("evaluators", "mi", options).uses_autocast("cpu") is expected


def test_mi_evaluator_autocast_rejects_other_strings():
    from sami_toolkit.core.errors import ConfigError

    with pytest.raises(ConfigError, match="autocast"):
        get_component("evaluators", "mi", {"autocast": "sometimes"})
