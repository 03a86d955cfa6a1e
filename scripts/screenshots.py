"""The README's screenshots: the dashboard's pages at 1280 and 390 px, in English and Italian.

Against a running `make run` (its demo data and emulator), in Debian's Chromium
(Playwright never downloads a browser): logs in as the demo's `ipsuser`, presses
Run on "My Test Job" once (confirming in the page's dialog), then saves the jobs
page, the job's page, that run's page and History, each at both widths and in
both languages, in docs/screenshots/<page>-<lang>-<width>.png.

Run: make run   (in another terminal)
     .venv/bin/python scripts/screenshots.py [--url http://127.0.0.1:8000] [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
WIDTHS = {1280: 860, 390: 844}
LANGUAGES = {"en": "en-US", "it": "it-IT"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" / "screenshots"))
    parser.add_argument("--user", default="ipsuser")
    parser.add_argument("--password", default="demo")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pages = {}
        for lang, locale in LANGUAGES.items():
            for width, height in WIDTHS.items():
                context = browser.new_context(viewport={"width": width, "height": height}, locale=locale,
                                              timezone_id="Europe/Rome")
                page = context.new_page()
                page.goto(f"{args.url}/accounts/login/")
                page.fill("#id_username", args.user)
                page.fill("#id_password", args.password)
                page.keyboard.press("Enter")
                page.wait_for_url(re.compile(re.escape(args.url) + r"/(\?.*)?$"))
                if not pages:
                    # One run to show: Run on My Test Job, confirmed in the page's dialog.
                    row = page.locator("tr", has_text="My Test Job").first
                    row.locator("form.run button").click()
                    dialog = page.locator("dialog[open]")
                    if dialog.count():
                        dialog.locator("button[value=confirm], button.primary").first.click()
                    expect(row.locator("a[href*='/runs/']").first).to_be_visible()
                    job_link = page.locator("a[href^='/jobs/']", has_text="My Test Job").first.get_attribute("href")
                    pages = {"jobs": "/", "job": job_link,
                             "run": row.locator("a[href*='/runs/']").first.get_attribute("href"), "history": "/history/"}
                for name, path in pages.items():
                    page.goto(args.url + path)
                    page.wait_for_load_state("networkidle")
                    target = out / f"{name}-{lang}-{width}.png"
                    page.screenshot(path=str(target), full_page=width < 1000)
                    print(target)
                context.close()
        browser.close()


if __name__ == "__main__":
    main()
