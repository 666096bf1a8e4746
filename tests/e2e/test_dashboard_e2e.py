"""End to end: the dashboard in Debian's Chromium (headless, driven by Playwright) against the real server.

The test builds the demo plant (``pcaps/generate/demo.py``, what ``make demo`` serves): the project's
sample captures, recorded on loopback, with plant addresses given to their clients and servers by
``tcpprep``/``tcprewrite``, a three-zone policy that makes the replay raise real policy alerts (Modbus
writes and an unencrypted OPC UA session where the conduit allows neither) and a small device CA. Then,
through ``zonewarden tokens create`` and ``zonewarden serve --replay`` on 127.0.0.1, the browser signs in,
reads the map, opens and acknowledges an alert, reads a PLC's register map and names and tags it.

Screenshots go to the test's temporary folder; with ``ZW_UPDATE_SCREENSHOTS=1`` they also replace
``docs/screenshots/*.png`` (the README shows those).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from zw_paths import REPO

from pcaps.generate.demo import (
    BROKER,
    EWS,
    GATEWAY2,
    HISTORIAN,
    OPCUA_SERVER,
    PLANT,
    PLC,
    ZONES,
    PlantLink,
    build_demo,
    rewrite,
)
from sensor.assets.cli import hop_label  # the label the CLI and the dashboard's paths panel give a hop

CHROMIUM = Path("/usr/bin/chromium")
STATIC_INDEX = REPO / "api" / "static" / "index.html"
SCREENSHOTS = REPO / "docs" / "screenshots"
ZONEWARDEN = Path(sys.executable).with_name("zonewarden")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EN_DASH = "\u2013"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_zonewarden(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(ZONEWARDEN), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, (
        f"zonewarden {args[0]} failed ({result.returncode}): {result.stderr[-3000:]}"
    )
    return result


@dataclass(frozen=True)
class Server:
    url: str
    token: str
    viewer_token: str
    workdir: Path
    db: Path
    policy: Path


def wait_until_ready(
    url: str, token: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 60
) -> None:
    """Until /health answers and the in-process replay has processed every file."""
    import json

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"zonewarden serve exited with {process.returncode}: {log.read_text()[-3000:]}")
        try:
            request = urllib.request.Request(
                f"{url}/api/v1/status", headers={"Authorization": f"Bearer {token}"}
            )
            with urllib.request.urlopen(request, timeout=2) as response:
                if json.loads(response.read())["sensor"]["finished"]:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"zonewarden serve was not ready within {seconds} s: {log.read_text()[-3000:]}")


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    for tool in ("tcpprep", "tcprewrite"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} (Debian package tcpreplay) is not installed")
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (make setup installs it)")
    if not STATIC_INDEX.exists():
        pytest.skip("the dashboard is not built (make dashboard)")
    with tempfile.TemporaryDirectory(prefix="zw-dashboard-") as tmp:
        work = Path(tmp)
        demo = build_demo(work)
        captures, policy, pki = demo.captures, demo.policy, demo.pki_dir
        db = work / "store.db"
        token = last_line(run_zonewarden("tokens", "create", "--role", "analyst", "--db", str(db)).stdout)
        viewer = last_line(run_zonewarden("tokens", "create", "--role", "viewer", "--db", str(db)).stdout)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = work / "serve.log"
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    str(ZONEWARDEN),
                    "serve",
                    "--db",
                    str(db),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--policy",
                    str(policy),
                    "--pki-dir",
                    str(pki),
                    "--replay",
                    *map(str, captures),
                ],
                cwd=REPO,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            try:
                wait_until_ready(url, token, process, log)
                yield Server(url, token, viewer, work, db, policy)
            finally:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


# --- the browser ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser_context(server: Server) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with (
        sync_api.sync_playwright() as playwright,
        tempfile.TemporaryDirectory(prefix="zw-chromium-") as profile,
    ):
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1440, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


@dataclass
class Browser:
    page: Any
    errors: list[str]


@pytest.fixture
def browser(browser_context: Any, server: Server) -> Iterator[Browser]:
    """A signed-in tab; any uncaught script error in it fails the test."""
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server.url}/")
    sign_in(page, server.token)
    yield Browser(page, errors)
    page.close()
    assert errors == []


def sign_in(page: Any, token: str) -> None:
    page.fill("#token", token)
    page.click("#signin button[type=submit]")
    page.wait_for_selector("nav.sidebar")


def screenshot(page: Any, name: str, tmp_dir: Path) -> None:
    page.wait_for_timeout(300)  # let fonts and the map settle
    path = tmp_dir / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    if os.environ.get("ZW_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / f"{name}.png")


def api_get(server: Server, path: str) -> Any:
    import json

    request = urllib.request.Request(
        f"{server.url}/api/v1{path}", headers={"Authorization": f"Bearer {server.token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


# --- the tests --------------------------------------------------------------------------------------


def test_dashboard_sign_in_refuses_a_wrong_token(browser_context: Any, server: Server) -> None:
    page = browser_context.new_page()
    try:
        page.goto(f"{server.url}/")
        page.fill("#token", "zw_000000000000_" + "A" * 43)
        page.click("#signin button[type=submit]")
        page.wait_for_selector(".signin .error")
        assert "not valid" in page.inner_text(".signin .error")
        assert page.locator("nav.sidebar").count() == 0
        sign_in(page, server.token)
        assert page.locator("nav.sidebar a.active").inner_text() == "Overview"
    finally:
        page.close()


def test_dashboard_overview_counts_what_the_api_counts(
    browser: Browser, server: Server, tmp_path: Path
) -> None:
    page = browser.page
    page.wait_for_selector("[data-tile=assets]")
    assets = api_get(server, "/assets?limit=1")
    alerts = api_get(server, "/alerts?limit=1")
    status = api_get(server, "/status")
    assert assets["total"] == len({a for link in PLANT for a in (link.client, link.server)})
    assert page.inner_text("[data-tile=assets] .value") == f"{assets['total']:,}"
    assert page.inner_text("[data-tile=alerts] .value") == f"{alerts['total']:,}"
    assert page.inner_text("[data-tile=packets] .value") == f"{status['packets']:,}"
    assert page.inner_text("[data-tile=gaps] .value") == f"{status['gaps']:,}"
    screenshot(page, "overview", tmp_path)


def test_dashboard_map_shows_the_plant_assets_and_zones(
    browser: Browser, server: Server, tmp_path: Path
) -> None:
    page = browser.page
    page.click("nav a[data-route=map]")
    page.wait_for_selector("#cy[data-ready=true]")
    cy = page.locator("#cy")
    expected_assets = {a for link in PLANT for a in (link.client, link.server)}
    assert int(cy.get_attribute("data-assets")) == len(expected_assets)
    assert cy.get_attribute("data-zones") == ",".join(sorted(ZONES))
    assert int(cy.get_attribute("data-violations")) >= 1

    # Click the PLC node where it is drawn: its detail names its zone and roles.
    box = cy.bounding_box()
    position = page.evaluate(f"window.__zwMap.renderedPosition({PLC!r})")
    page.mouse.click(box["x"] + position["x"], box["y"] + position["y"])
    page.wait_for_selector(f"#map-detail[data-selected='node:{PLC}']")
    detail = page.inner_text("#map-detail")
    assert "control" in detail
    assert "Modbus server" in detail

    # An edge's detail: the engineering workstation's writes to the PLC are a violation.
    edges = page.evaluate("window.__zwMap.edges()")
    writes = [e for e in edges if e["source"] == EWS and e["target"] == PLC and e["protocol"] == "modbus"]
    assert len(writes) == 1
    assert writes[0]["policy"] == "violation"
    historian = [e for e in edges if e["source"] == HISTORIAN]  # its OPC UA session is SignAndEncrypt
    assert [e["policy"] for e in historian] == ["allowed"]
    page.evaluate(f"window.__zwMap.selectEdge({writes[0]['id']!r})")
    page.wait_for_selector("#map-detail .map-alerts[data-loaded=true]")  # the edge's alerts, from the API
    detail = page.inner_text("#map-detail")
    assert "violation" in detail
    assert "write_single_coil" in detail  # the operations seen, and the alert raised on them
    screenshot(page, "map", tmp_path)

    # Filter by zone: only the DMZ and its peers remain.
    page.select_option("select[name=zone]", "dmz")
    page.wait_for_function("document.querySelector('#cy').dataset.zones !== 'control,dmz,scada'")
    assert int(cy.get_attribute("data-assets")) == 3  # the broker and the two line gateways


def test_dashboard_alert_can_be_opened_and_acknowledged(
    browser: Browser, server: Server, tmp_path: Path
) -> None:
    page = browser.page
    page.goto(f"{server.url}/#/alerts?category=policy&status=open")
    page.wait_for_selector("tr[data-alert-id]")
    screenshot(page, "alerts", tmp_path)
    row = page.locator("tr[data-status=open]").first
    alert_id = row.get_attribute("data-alert-id")
    row.locator("a").first.click()
    page.wait_for_selector("#alert-signature")
    assert page.inner_text("#alert-status") == "open"
    page.fill("textarea[name=comment]", "e2e: seen, engineering work was planned")
    page.click("button[data-action=acknowledge]")
    page.wait_for_function("document.querySelector('#alert-status').innerText === 'acknowledged'")
    screenshot(page, "alert", tmp_path)
    assert api_get(server, f"/alerts/{alert_id}")["status"] == "acknowledged"


def test_dashboard_asset_page_shows_the_register_map(
    browser: Browser, server: Server, tmp_path: Path
) -> None:
    page = browser.page
    page.click("nav a[data-route=assets]")
    page.wait_for_selector(f"tr[data-ip='{PLC}']")
    page.fill("input[name=q]", PLC)
    page.wait_for_function("document.querySelectorAll('tr[data-ip]').length === 1")
    screenshot_later = page.locator(f"tr[data-ip='{PLC}'] a").first
    screenshot_later.click()
    page.wait_for_selector("#register-map")
    rows = {
        (r.get_attribute("data-unit"), r.get_attribute("data-table")): r.inner_text()
        for r in page.locator("#register-map tbody tr").all()
    }
    # pcaps/README.md: FC3 holding registers 0-9 and FC1 coils 0-15 on unit 1, FC4 input registers 4-11
    # on unit 2 (the dashboard writes ranges with an en dash).
    assert f"0{EN_DASH}9" in rows[("1", "holding_registers")]
    assert f"0{EN_DASH}15" in rows[("1", "coils")]
    assert f"4{EN_DASH}11" in rows[("2", "input_registers")]
    screenshot(page, "asset", tmp_path)
    page.goto(f"{server.url}/#/assets")
    page.wait_for_selector("tr[data-ip]")
    screenshot(page, "assets", tmp_path)


# Each path the panel drew: its chips in order, assets (address, zone, link) and hops (ends, policy
# status, zone crossing, marks, and each edge's id, direction against the path and label).
READ_PATHS = """rows => rows.map(row => [...row.querySelector('.path-chips').children].map(c =>
  c.classList.contains('path-asset')
    ? {ip: c.dataset.ip, zone: c.dataset.zone, href: c.querySelector('a').getAttribute('href')}
    : {client: c.dataset.client, server: c.dataset.server, policy: c.dataset.policy,
       crosses: c.dataset.crosses, marks: [...c.querySelectorAll('[data-mark]')].map(m => m.dataset.mark),
       edges: [...c.querySelectorAll('.hop-edge')].map(e =>
         [e.dataset.edge, e.dataset.way, e.querySelector('.label').textContent])}))"""


def expected_chips(path: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chips a path of GET /graph/paths should give: asset, hop, asset, ..."""

    def asset(ip: str, zone: str | None) -> dict[str, Any]:
        return {"ip": ip, "zone": zone or "", "href": f"#/assets/{ip}"}

    chips = [asset(path[0]["client"], path[0]["client_zone"])]
    for hop in path:
        marks = {"violation": ["violation"], "closed": ["closed"]}.get(hop["policy_status"], [])
        chips.append(
            {
                "client": hop["client"],
                "server": hop["server"],
                "policy": hop["policy_status"],
                "crosses": str(hop["crosses_zones"]).lower(),
                "marks": marks + (["crosses"] if hop["crosses_zones"] else []),
                "edges": [
                    [e["id"], "forward" if e["client"] == hop["client"] else "reverse", hop_label(e)]
                    for e in hop["edges"]
                ],
            }
        )
        chips.append(asset(hop["server"], hop["server_zone"]))
    return chips


def ask_who_reaches(page: Any, source: str, *, either: bool = False, max_hops: int = 4) -> None:
    page.fill("#reach input[name=reach-source]", source)
    page.fill("#reach input[name=reach-hops]", str(max_hops))
    page.set_checked("#reach input[name=reach-either]", either)
    page.evaluate("document.querySelector('#reach-answer').replaceChildren()")
    page.click("#reach button[data-action=find-paths]")
    page.wait_for_selector("#reach-answer #reach-result, #reach-answer .error")


def test_dashboard_asset_page_shows_who_can_reach_it(
    browser: Browser, server: Server, tmp_path: Path
) -> None:
    """The panel draws the paths GET /graph/paths gives: assets with their zones, each hop's edges
    (labels as the CLI's), a mark on violating and zone-crossing hops; and the API's 404 text."""
    import json

    page = browser.page
    page.goto(f"{server.url}/#/assets/{PLC}")
    page.wait_for_selector("#reach form")
    headings = page.eval_on_selector_all("main section.card > h2", "hs => hs.map(h => h.textContent)")
    at = headings.index("Who can reach this asset")
    assert headings[at - 1 : at + 2] == ["Communications", "Who can reach this asset", "Alerts"]
    # The list offers the plant's other assets, this one not.
    page.wait_for_function(f"document.querySelectorAll('#reach-sources option').length >= {len(ZONES)}")
    offered = set(page.eval_on_selector_all("#reach-sources option", "os => os.map(o => o.value)"))
    assert EWS in offered and OPCUA_SERVER in offered and PLC not in offered

    questions = [
        # the engineering workstation's Modbus writes: one hop, scada -> control, a policy violation
        (PLC, EWS, False),
        # the OPC UA server reaches the PLC only against a connection's direction, through the HMI
        (PLC, OPCUA_SERVER, True),
        # a line gateway's MQTT topics, control -> dmz, allowed by the conduit
        (BROKER, GATEWAY2, False),
    ]
    shown = PLC
    for target, source, either in questions:
        if target != shown:
            shown = target
            page.goto(f"{server.url}/#/assets/{target}")
            page.wait_for_function(f"document.querySelector('#asset-ip')?.textContent === {target!r}")
            page.wait_for_selector("#reach form")
        ask_who_reaches(page, source, either=either)
        directed = "false" if either else "true"
        question = f"source={source}&target={target}&max_hops=4&directed={directed}"
        answer = api_get(server, f"/graph/paths?{question}")
        assert answer["paths"], f"the plant has no path {source} -> {target}"
        assert page.get_attribute("#reach-result", "data-source") == source
        drawn = page.eval_on_selector_all("#reach-result li.path", READ_PATHS)
        assert drawn == [expected_chips(path) for path in answer["paths"]]
        if source == EWS:
            [[hop]] = answer["paths"]
            assert hop["policy_status"] == "violation" and hop["crosses_zones"] is True
            assert page.locator("#reach .path-hop.violation [data-mark=violation]").is_visible()
            assert page.inner_text("#reach .path-hop.violation [data-mark=violation]") == "⚠ policy violation"
            assert "modbus/502 fc " in page.inner_text("#reach .path-hop.violation")
            page.locator("#reach").scroll_into_view_if_needed()
            screenshot(page, "asset-reach", tmp_path)
        if source == OPCUA_SERVER:
            # Directed, it does not reach the PLC at all.
            assert [len(path) for path in answer["paths"]] == [2]
            ask_who_reaches(page, source, either=False)
            assert api_get(server, f"/graph/paths?source={source}&target={target}")["paths"] == []
            assert page.inner_text("#reach-result .empty") == "No path within 4 hops."
            assert page.locator("#reach-result li.path").count() == 0
        if source == GATEWAY2:
            assert "pub plant/line2/setpoint" in page.inner_text("#reach-result")

    # An asset in a path links to its own page.
    page.click(f"#reach-result .path-asset[data-ip='{GATEWAY2}'] a")
    page.wait_for_function(f"document.querySelector('#asset-ip')?.textContent === {GATEWAY2!r}")

    # An address the store does not know: the API's 404 message, as it says it.
    unknown = "10.99.99.99"
    with pytest.raises(urllib.error.HTTPError) as refused:
        api_get(server, f"/graph/paths?source={unknown}&target={GATEWAY2}")
    assert refused.value.code == 404
    message = json.loads(refused.value.read())["error"]["message"]
    assert unknown in message
    ask_who_reaches(page, unknown)
    assert page.inner_text("#reach-answer .error") == message
    assert page.locator("#reach-result").count() == 0


def test_dashboard_alerts_arrive_live(browser: Browser, server: Server) -> None:
    page = browser.page
    page.goto(f"{server.url}/#/alerts")
    page.wait_for_selector("tr[data-alert-id]")
    page.wait_for_selector("#live-state.open")
    before = set(page.eval_on_selector_all("tr[data-alert-id]", "rows => rows.map(r => r.dataset.alertId)"))
    # A device nobody zoned polls the PLC: default deny, so the sensor writing to the same store raises a
    # new policy alert, and the page shows it without being reloaded.
    intruder = PlantLink("modbus-pymodbus-polling.pcap", "10.10.9.9", PLC)
    out = server.workdir / "intruder"
    out.mkdir(exist_ok=True)
    capture = rewrite(intruder, out)
    # The capture keeps its original packet times (recorded long before this test ran): the stream
    # follows the store's insertion order, so alerts from a replay of old captures arrive all the same.
    run_zonewarden("replay", str(capture), "--policy", str(server.policy), "--db", str(server.db), "-q")
    page.wait_for_function(
        "document.querySelector('#live-count').innerText.includes('new alert')", timeout=15000
    )
    page.wait_for_function(f"document.querySelectorAll('tr[data-alert-id]').length > {len(before)}")
    after = set(page.eval_on_selector_all("tr[data-alert-id]", "rows => rows.map(r => r.dataset.alertId)"))
    assert after - before
    assert "10.10.9.9" in page.inner_text("main")


def test_dashboard_viewer_cannot_acknowledge(browser_context: Any, server: Server) -> None:
    page = browser_context.new_page()
    try:
        page.goto(f"{server.url}/")
        page.evaluate("sessionStorage.clear()")
        page.reload()
        sign_in(page, server.viewer_token)
        page.goto(f"{server.url}/#/alerts?status=open")
        page.wait_for_selector("tr[data-status=open] a")
        page.locator("tr[data-status=open] a").first.click()
        page.wait_for_selector("#alert-signature")
        # GET /me says a viewer may not triage: the actions are not offered, the page says why.
        page.wait_for_selector("#read-only")
        assert "may read alerts" in page.inner_text("#read-only")
        assert page.locator("button[data-action=acknowledge]").count() == 0
        assert page.locator("button[data-action=close]").count() == 0
        assert page.inner_text("#alert-status") == "open"
        assert page.get_attribute("#whoami", "data-role") == "viewer"
        # The API still refuses it (hiding a button is a courtesy, not the control).
        refused = page.evaluate(
            """async (id) => (await fetch(`/api/v1/alerts/${id}/ack`, {method: "POST",
                headers: {"Content-Type": "application/json",
                          Authorization: `Bearer ${sessionStorage.getItem("zonewarden.token")}`},
                body: "{}"})).status""",
            page.url.split("/alerts/")[1],
        )
        assert refused == 403
    finally:
        page.close()


def test_dashboard_policy_page_shows_violations_per_conduit(
    browser: Browser, server: Server, tmp_path: Path
) -> None:
    page = browser.page
    page.click("nav a[data-route=policy]")
    conduit = page.wait_for_selector("#violations-by-conduit [data-conduit=scada-to-control]")
    text = conduit.inner_text()
    assert "function not allowed" in text
    assert "security mode too low" in text
    screenshot(page, "policy", tmp_path)


def test_dashboard_certificates_issued_and_observed(browser: Browser, server: Server, tmp_path: Path) -> None:
    page = browser.page
    page.click("nav a[data-route=certificates]")
    page.wait_for_selector("#observed tr[data-sha256]")
    observed = api_get(server, "/certificates/observed")
    assert page.locator("#observed tr[data-sha256]").count() == observed["total"] > 0
    issued = page.locator("tr[data-serial]")
    assert issued.count() == api_get(server, "/pki/certificates")["total"]
    assert page.locator("tr[data-serial] .badge.revoked").count() == 1
    screenshot(page, "certificates", tmp_path)


@pytest.mark.parametrize("route", ["rules"])
def test_dashboard_other_pages_render_without_errors(
    browser: Browser, server: Server, route: str, tmp_path: Path
) -> None:
    page = browser.page
    page.click(f"nav a[data-route={route}]")
    page.wait_for_selector(f".page[data-page={route}]")
    screenshot(page, route, tmp_path)


def test_dashboard_asset_names_and_tags_can_be_edited(
    browser: Browser, server: Server, tmp_path: Path
) -> None:
    """An analyst names and tags the PLC on its page; the API has them, the assets table filters by tag."""
    page = browser.page
    page.goto(f"{server.url}/#/assets/{PLC}")
    page.wait_for_selector("#labels form")
    page.fill("#labels input[name=given-name]", "Line 1 filler PLC")
    page.fill("#labels input[name=tags]", "bad tag!")
    page.click("#labels button[data-action=save-labels]")
    page.wait_for_selector("#labels-message .error")
    assert api_get(server, f"/assets/{PLC}")["tags"] == []  # refused before it reached the API
    page.fill("#labels input[name=tags]", "line1 safety")
    page.click("#labels button[data-action=save-labels]")
    page.wait_for_selector("#labels-message .notice")
    saved = api_get(server, f"/assets/{PLC}")
    assert saved["given_name"] == "Line 1 filler PLC" and saved["tags"] == ["line1", "safety"]
    assert "Line 1 filler PLC" in page.inner_text("#asset-name")
    screenshot(page, "asset-labels", tmp_path)
    page.click("#asset-labels a[data-tag=safety]")
    page.wait_for_function("document.querySelectorAll('tr[data-ip]').length === 1")
    assert page.locator(f"tr[data-ip='{PLC}']").count() == 1


def test_dashboard_viewer_sees_tags_but_no_editor(browser_context: Any, server: Server) -> None:
    page = browser_context.new_page()
    try:
        page.goto(f"{server.url}/")
        page.evaluate("sessionStorage.clear()")
        page.reload()
        sign_in(page, server.viewer_token)
        page.goto(f"{server.url}/#/assets/{PLC}")
        page.wait_for_selector("#labels")
        assert page.locator("#labels form").count() == 0
        assert "may look at names and tags" in page.inner_text("#labels")
    finally:
        page.close()
