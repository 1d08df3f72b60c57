"""A simulated Piper API on loopback: deterministic synthetic scenario runs, with injectable faults.

    dataset = FakeDataset.generate(seed=7, sessions=200)
    state = FakePiper(dataset, latency_ms=5, error_rate=0.02)
    with serve(state) as base_url:
        ...  # GET {base_url}/v1/orgs/{dataset.org_id}/scenarios/runs/by-session/{quoted session id}
"""

from __future__ import annotations

from connector.fake_api.app import FakePiper, RecordedRequest, create_app
from connector.fake_api.data import FakeDataset
from connector.fake_api.server import run_forever, serve

__all__ = ["FakeDataset", "FakePiper", "RecordedRequest", "create_app", "run_forever", "serve"]
