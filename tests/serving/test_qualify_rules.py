"""benchmarks/qualify_pc.py's verdict rules: a step holds its rate only if every product got a complete
verdict in time and the stations managed to send at that rate."""

from __future__ import annotations

import pytest

from benchmarks.qualify_pc import classify, rate_kept, step_held


def _step(samples: list[tuple[float, str]], achieved: float, asked: float) -> dict:
    return {
        **classify(samples),
        "requests": len(samples),
        "achieved_products_per_s": achieved,
        "rate_kept": rate_kept(achieved, asked),
    }


def test_a_step_in_budget_at_the_asked_rate_holds() -> None:
    assert step_held(_step([(60.0, "ACCEPT"), (80.0, "REJECT")], achieved=23.9, asked=24.0))


@pytest.mark.parametrize(
    "samples",
    [[(60.0, "ACCEPT"), (451.0, "ACCEPT")], [(60.0, "REJECT_INCOMPLETE")], [(60.0, "error:RpcError")], []],
)
def test_a_late_incomplete_failed_or_empty_step_does_not_hold(samples: list[tuple[float, str]]) -> None:
    assert not step_held(_step(samples, achieved=24.0, asked=24.0))


def test_a_step_the_stations_could_not_send_at_its_rate_does_not_hold() -> None:
    # Closed-loop stations behind a slow server send fewer products: every one in budget proves nothing.
    assert not step_held(_step([(60.0, "ACCEPT")] * 10, achieved=17.0, asked=24.0))


def test_the_rate_is_kept_from_97_percent_of_it() -> None:
    assert rate_kept(11.65, 12.0) and rate_kept(12.03, 12.0)
    assert not rate_kept(11.58, 12.0)  # the classifier's 12/s step: a server behind by 3.5 %


def test_the_heatmap_mode_is_asked_in_every_request() -> None:
    from benchmarks.latency import product_request
    from benchmarks.qualify_pc import parse_args
    from tfad.serving.protos import pb

    assert parse_args([]).heatmaps == "none"
    assert parse_args(["--heatmaps", "all"]).heatmaps == "all"
    with pytest.raises(SystemExit):
        parse_args(["--heatmaps", "some"])
    manifest = {"input": {"height": 8, "width": 8, "channels": 1}, "thresholds": {"regions": {"R0": 0.1}}}
    modes = (
        ("none", pb.HEATMAP_MODE_NONE),
        ("rejected", pb.HEATMAP_MODE_REJECTED),
        ("all", pb.HEATMAP_MODE_ALL),
    )
    for mode, wire in modes:
        images, request = product_request(manifest, 3, seed=1, heatmaps=mode)
        assert images.shape == (3, 8, 8, 1) and request.heatmaps == wire and len(request.patches) == 3


def test_the_table_names_the_heatmaps_a_product_got_back() -> None:
    from benchmarks.qualify_pc import table

    def model(heatmaps: int | None) -> dict:
        return {
            "model": {"label": "resganad:line-cpu"},
            "sequential": {"latency": {"n": 3, "p50_ms": 100.0, "p99_ms": 120.0}, "reject_incomplete": 0},
            "load": {
                "requests": 4,
                "in_budget": 4,
                "reject_incomplete": 0,
                "late": 0,
                "errors": 0,
                "latency": {"p99_ms": 130.0},
            },
            "ramp": None,
            "flops_per_product": None,
            "achieved_gflops_bare_p50": None,
            "heatmaps_per_product": heatmaps,
            "pass": True,
        }

    rows = table([model(60), model(0), model(None)]).splitlines()[2:]
    assert rows[0].startswith("| resganad:line-cpu (60 heatmaps/product) |")
    assert rows[1].startswith("| resganad:line-cpu |") and rows[2].startswith("| resganad:line-cpu |")
