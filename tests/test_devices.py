"""precision: auto picks bf16 only where it is fast."""

from __future__ import annotations

from sami_toolkit import devices
from sami_toolkit.training import TrainSettings, resolve_precision


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
