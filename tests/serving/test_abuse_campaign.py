"""The abuse campaign (issue 14 item 8) in short: ~300 seeded malformed and legal requests against each
server, every mutation kind at least once; benchmarks/abuse_campaign.py runs the full 10 000 per server.

Nothing here depends on timing: the servers get a 60 s cycle budget and at most 2 calls are in flight (well
under --max_queue and --max_rpc_threads), so every legal product is decided and every outcome is fixed by the
seed alone.
"""

from __future__ import annotations

from serving_testutils import start_server_of_kind

from benchmarks.abuse_campaign import KIND_NAMES, format_report, run_campaign

REQUESTS = 300
SEED = 14


def test_abuse_campaign_short(server_kind, make_model_root, exported_version, tmp_path, caplog):
    handle = start_server_of_kind(
        server_kind, make_model_root(f"abuse-{server_kind}"), tmp_path, cycle_budget_ms=60000
    )
    try:
        report = run_campaign(
            handle.target,
            exported_version,
            REQUESTS,
            SEED,
            server=server_kind,
            concurrency=2,
            log=handle.log if server_kind == "cc" else lambda: caplog.text,  # in-process: its log records
        )
    finally:
        handle.stop()
    text = format_report(report)
    assert set(report.statuses) == set(KIND_NAMES), text  # every mutation kind was sent
    assert all(v == "ok" for v in report.checks.values()), text  # alive, healthy, same reference scores
    assert report.violation_count == 0, text
