"""The HTML drift report: self-contained (nothing loaded from anywhere), one plot per drifted feature and the
prediction, and plots that show the shift the checks found."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from monitoring import drift as D
from monitoring.report import distribution_svg, render_html

URL_ATTRIBUTES = {"src", "href", "srcset", "data", "poster", "action", "xlink:href", "background"}


class _Page(HTMLParser):
    """Collects the tags, the URL-carrying attributes, the figures and the inline SVG of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[tuple[str, str, str]] = []
        self.figures: list[str] = []
        self.svg_depth = 0
        self.svgs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in URL_ATTRIBUTES and value:
                self.urls.append((tag, name, value))
        if tag == "figure":
            self.figures.append(dict(attrs).get("data-feature") or "")


def assert_offline_report(text: str) -> list[str]:
    """Asserts the page loads nothing (no script, no external URL, no style import) and each plot is
    well-formed SVG; returns the features plotted, in order."""
    page = _Page()
    page.feed(text)
    page.close()
    assert "script" not in page.tags and "iframe" not in page.tags and "link" not in page.tags
    external = [u for u in page.urls if "://" in u[2] or u[2].startswith("//")]
    assert not external, f"the report loads from elsewhere: {external}"
    assert "http://" not in text and "https://" not in text and "@import" not in text
    svgs = text.split("<svg ")[1:]
    assert len(svgs) == len(page.figures), "one inline SVG per figure"
    for svg in svgs:
        root = ET.fromstring("<svg " + svg.split("</svg>")[0] + "</svg>")  # well-formed XML: a browser draws it
        assert len(root.findall("rect")) >= 4
    return page.figures


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(5)
    n = 5000
    base = pd.DataFrame({"amount": rng.gamma(2.0, 50.0, n), "visits": rng.poisson(3.0, n).astype(float),
                         "age": rng.normal(40.0, 10.0, n), "plan": rng.choice(["basic", "premium"], n, p=[0.6, 0.4])})
    cur = pd.DataFrame({"amount": rng.gamma(2.0, 50.0, n) * 1.3, "visits": rng.poisson(3.0, n).astype(float),
                        "age": rng.normal(40.0, 10.0, n), "plan": rng.choice(["basic", "premium", "gold"], n,
                                                                             p=[0.45, 0.45, 0.1])})
    return base, cur


def _report(base: pd.DataFrame, cur: pd.DataFrame,
            with_prediction: bool = True) -> tuple[str, D.Decision, list[D.FeatureDrift]]:
    policy = D.DriftPolicy()
    rng = np.random.default_rng(9)
    prediction = (rng.beta(2, 5, len(base)), rng.beta(2, 5, len(cur))) if with_prediction else None
    rows = D.compare(base, cur, numeric=["amount", "visits", "age"], categorical={"plan": ("basic", "premium")},
                     policy=policy, prediction=prediction)
    decision = D.decide(rows, len(cur), policy)
    plots = {}
    for name in decision.drifted_features:
        plots[name] = (D.categorical_distribution(name, base[name], cur[name], ("basic", "premium"))
                       if name == "plan" else D.numeric_distribution(name, base[name], cur[name], policy.n_bins))
    if prediction is not None:
        plots["churn_probability"] = D.numeric_distribution("churn_probability", *prediction, policy.n_bins)
    html = render_html("2026-07-01", decision, rows, [], plots, "gs://b/train.csv", "gs://b/predictions/",
                       stats_file="input_stats_2026-07-01.json")
    return html, decision, rows


def test_report_is_self_contained_with_one_plot_per_drifted_feature_and_the_prediction():
    html, decision, rows = _report(*_frames())
    assert set(decision.drifted_features) == {"amount", "plan"}
    plotted = assert_offline_report(html)
    assert plotted == [*decision.drifted_features, "churn_probability"]
    assert 'href="input_stats_2026-07-01.json"' in html, "TFDV's statistics stay a download beside the report"
    assert "RETRAIN" in html and "amount" in html
    caption = html.split('data-feature="amount"><figcaption>')[1].split("</figcaption>")[0]
    metric = {r.feature: r for r in rows}["amount"].metric
    assert caption.lower().replace("_", " ").count(metric.replace("_", " ")) == 1, f"{metric} twice: {caption}"


def test_a_page_loading_a_script_from_the_internet_is_refused():
    """The check itself can fail: TFDV's Facets view (what the report used to embed) loads its scripts."""
    facets = ('<script src="https://cdnjs.cloudflare.com/ajax/libs/webcomponentsjs/1.3.3/webcomponents-lite.js">'
              '</script><link rel="import" href="https://raw.githubusercontent.com/PAIR-code/facets/1.0.0/'
              'facets-dist/facets-jupyter.html"><facets-overview id="elem"></facets-overview>')
    html, _, _ = _report(*_frames())
    with pytest.raises(AssertionError):
        assert_offline_report(html.replace("</body>", facets + "</body>"))


def test_no_drift_and_no_prediction_gives_a_page_without_plots():
    base, _ = _frames()
    same = base.sample(frac=1.0, random_state=1).reset_index(drop=True)
    html, decision, _ = _report(base, same, with_prediction=False)
    assert decision.status == "no_drift"
    assert assert_offline_report(html) == []
    assert "nothing to plot" in html


def _bar_heights(svg: str, colour: str) -> list[float]:
    root = ET.fromstring(svg)
    return [float(r.get("height", "0")) for r in root.findall("rect") if r.get("fill") == colour
            and r.find("title") is not None]


def test_the_plot_shows_where_the_data_moved():
    """Quantile buckets: the baseline's bars are even; a 30% larger amount piles the current rows up top."""
    base, cur = _frames()
    dist = D.numeric_distribution("amount", base["amount"].to_numpy(), cur["amount"].to_numpy(), 20)
    svg = distribution_svg(dist)
    grey, orange = _bar_heights(svg, "#9e9e9e"), _bar_heights(svg, "#d95f02")
    assert len(grey) == len(orange) == len(dist.labels) >= 15
    assert max(grey) - min(grey) < 0.1 * max(grey), "baseline bars about even"
    assert orange[-1] > 1.5 * grey[-1] and orange[0] < 0.8 * grey[0], "current shifted to the top buckets"
    assert dist.labels[0].startswith("≤ ") and dist.labels[-1].startswith("> ")


def test_category_plot_names_unseen_and_null_buckets():
    dist = D.categorical_distribution("plan", ["basic"] * 60 + ["premium"] * 40,
                                      ["basic"] * 50 + [" premium"] * 40 + ["gold"] * 10 + [None] * 3,
                                      ("basic", "premium"))
    assert dist.labels == ["basic", "premium", D.UNSEEN, D.NULL]
    assert dist.baseline == [60.0, 40.0, 0.0, 0.0] and dist.current == [50.0, 40.0, 10.0, 3.0]
    svg = distribution_svg(dist)
    assert "&lt;unseen&gt;" in svg and ET.fromstring(svg) is not None


def test_feature_names_and_notes_are_escaped():
    row = D.skipped("<b>x</b>", "numeric", "psi", "note with <script>alert(1)</script>")
    decision = D.Decision("no_drift", False, "no drift in 0 features", [], False, False)
    html = render_html("2026-07-01", decision, [row], [], {}, "a", "b")
    assert "<script>" not in html and "&lt;script&gt;" in html
