"""A rollout's report written to a folder, with the verdict pages it links to, laid out as the API serves them."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from shadowd.config import Config
from shadowd.core.rollout import RolloutSpec
from shadowd.pages.report_page import render_report_page, report_page_data
from shadowd.pages.verdict_page import render_verdict_page
from shadowd.ports import Store


async def write_rollout_site(store: Store, spec: RolloutSpec, config: Config, folder: Path) -> Path:
    """`folder/report.html` and `folder/verdicts/ID.html` for every example request id; returns the report's path."""
    data = await report_page_data(store, spec, config)
    verdict_folder = folder / "verdicts"
    verdict_folder.mkdir(parents=True, exist_ok=True)
    for request_ids in (data["report"].get("examples") or {}).values():
        for request_id in request_ids:
            row = await store.get_verdict(spec.name, request_id)
            if row is not None:
                page = render_verdict_page(row.verdict, report_link="../report.html")
                (verdict_folder / f"{quote(request_id, safe='')}.html").write_text(page, encoding="utf-8")
    report = folder / "report.html"
    report.write_text(render_report_page(data, link_base="verdicts/"), encoding="utf-8")
    return report
