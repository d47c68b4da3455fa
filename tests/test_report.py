"""``minmax report``: one self-contained HTML page per run, written at the end of each run.

Tiny seeded runs (a toy ring, an image run with in-training scores from an untrained digits
net); then what the page says about runs killed early, truncated logs and non-run folders.
"""

import html
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from minmax import report
from minmax.cli import main
from minmax.config import resolve
from minmax.errors import DivergenceError
from minmax.metrics.features.digits import DigitsNet, save_feature_net
from minmax.train import loop
from minmax.train.loop import train

SPEED = ["train.threads=1", "train.precision=fp32", "train.channels_last=false"]  # no probe
TOY = ["model.g_width=16", "model.d_width=16", "model.g_depth=1", "model.d_depth=1",
       "train.batch_size=64", "eval.n_samples=200", "train.log_every_steps=2", *SPEED]  # fmt: skip
IMAGES = ["model.g_channels=4", "model.d_channels=4", "model.z_dim=8", "model.conditional=false",
          "train.batch_size=16", "train.log_every_steps=2", "train.ema_bn_samples=0",
          "train.grid_every_kimg=0.016", "train.kimg=0.24", "eval.every_kimg=0.08",
          "eval.metrics=fid0.05k", "eval.reference_split=train", *SPEED]  # fmt: skip


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("toy") / "run"
    train(resolve("ring", overrides=["train.kimg=0.5", *TOY]), run, progress=False)
    return run


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 40, (64, 28, 28), dtype=np.uint8)
    y = np.arange(64) % 4
    for i, label in enumerate(y):
        x[i, 4 + 6 * label : 9 + 6 * label, 6:22] = 250
    np.savez(root / "digits.npz", x=x, y=y)
    torch.manual_seed(0)
    weights = root / "digits.safetensors"  # untrained: the scores only need to exist
    save_feature_net(DigitsNet(width=4, feature_dim=16), weights, {"data": "toy"})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINMAX_CACHE", str(root / "cache"))
        overrides = [f"data.name={root / 'digits.npz'}", f"eval.features={weights}", *IMAGES]
        train(resolve("mnist-dcgan", overrides=overrides), root / "run", progress=False)
    return root / "run"


def page_of(path) -> str:
    return path.read_text(encoding="utf-8")


def assert_self_contained(page: str, images: bool = True) -> None:
    """No network: no URL anywhere, no script or stylesheet link; every src a data: URI."""
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<(script|link|iframe)\b|@import|url\(", page)
    sources = re.findall(r"\bsrc\s*=\s*['\"]?([^'\" >]*)", page)
    assert all(s.startswith("data:image/") for s in sources), sources[:3]
    assert bool(sources) == images


def machine_of(run) -> str:
    return json.loads((run / "speed.json").read_text())["machine"]


def test_the_end_of_a_toy_run_writes_its_report(toy_run):
    page = page_of(toy_run / "report.html")  # written by the run itself
    assert not list(toy_run.glob("*.part"))
    assert_self_contained(page)
    assert "finished at 0.512 kimg, stopped by kimg" in page
    for name in ("loss_D", "loss_G", "modes_captured", "hq_fraction", "reverse_kl"):
        assert name in page
    assert page.count("data:image/svg+xml;base64,") == 1  # the losses chart
    assert page.count("data:image/png;base64,") == 2  # the scatter and D vs log ratio
    assert "samples.png" in page and "discriminator.png" in page
    assert html.escape((toy_run / "config.yaml").read_text()) in page  # header included
    assert "# auto resolved on" in page and html.escape(machine_of(toy_run)) in page


def test_an_image_run_report_has_grids_scores_and_charts(image_run, tmp_path, capsys):
    out = tmp_path / "elsewhere.html"
    before = sorted(p.name for p in image_run.iterdir())
    assert main(["report", str(image_run), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert sorted(p.name for p in image_run.iterdir()) == before  # one file, written elsewhere
    page = page_of(out)
    assert_self_contained(page)
    records = [json.loads(line) for line in (image_run / "metrics.jsonl").read_text().splitlines()]
    logged = {r["metric"] for r in records if r["kind"] == "eval"}
    assert logged == {"fd0.05k_digits"}
    for name in (*logged, "loss_D", "loss_G"):
        assert name in page
    assert page.count("data:image/svg+xml;base64,") == 2  # losses, and the score over kimg
    grids = sorted((image_run / "grids").glob("*.png"))
    assert len(grids) > report.MAX_GRIDS  # so the strip must pick
    strip = page.split("Sample grids over training")[1]
    assert strip.count("<figure>") == report.MAX_GRIDS
    for grid in (grids[0], grids[-1]):  # both ends are shown, captioned with their kimg
        assert f"{float(grid.stem[4:]):g} kimg" in strip
    assert html.escape(machine_of(image_run)) in page and "preset: mnist-dcgan" in page
    assert len(page) < 2_000_000


def test_grids_are_picked_evenly_with_both_ends(tmp_path):
    (tmp_path / "grids").mkdir()
    for i in range(30):
        (tmp_path / "grids" / f"kimg{i:010.3f}.png").touch()
    picked = [int(float(p.name[4:-4])) for p in report.pick_grids(tmp_path, 5)]
    assert picked == [0, 7, 14, 22, 29]


def test_a_run_killed_before_its_first_log_line_says_no_metrics_yet(toy_run, tmp_path, capsys):
    run = tmp_path / "killed"
    run.mkdir()
    shutil.copy(toy_run / "config.yaml", run / "config.yaml")
    assert main(["report", str(run)]) == 0
    page = page_of(run / "report.html")
    assert_self_contained(page, images=False)
    assert "No metrics yet" in page and "stopped before its end" in page
    assert "preset: ring" in page


def test_a_truncated_last_line_is_skipped_and_said(toy_run, tmp_path):
    run = tmp_path / "crashed"
    shutil.copytree(toy_run, run, ignore=shutil.ignore_patterns("checkpoint", "report.html"))
    text = (run / "metrics.jsonl").read_text()
    lines = [line for line in text.splitlines() if '"final"' not in line]
    (run / "metrics.jsonl").write_text("\n".join(lines) + '\n{"kind": "train", "st')
    (run / ".lock").write_text("{}")  # as a run still training leaves it
    page = page_of(report.write_report(run))
    assert "1 line(s) of metrics.jsonl could not be read" in page
    assert "no final record: probably still training" in page
    assert "loss_D" in page and "No final record yet; the latest logged values" in page


def test_warnings_rollbacks_and_resumes_are_marked(toy_run, tmp_path):
    run = tmp_path / "eventful"
    shutil.copytree(toy_run, run, ignore=shutil.ignore_patterns("checkpoint", "report.html"))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    speed = next(r for r in records if r["kind"] == "speed")
    extra = [
        {"kind": "warning", "step": 4, "kimg": 0.256, "message": "D is winning <b>& more</b>"},
        {"kind": "rollback", "step": 6, "kimg": 0.384, "nonfinite": ["loss_D"], "to_kimg": 0.0,
         "lr_scale": 0.5},
        {**speed, "step": 6},
    ]  # fmt: skip
    with open(run / "metrics.jsonl", "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in extra)
    found = report.events(records + extra)
    assert [e.kind for e in found] == ["warning", "rollback", "resume"]
    assert [e.kimg for e in found] == pytest.approx([0.256, 0.384, 0.384])  # resume: from step
    page = page_of(report.write_report(run))
    assert "D is winning &lt;b&gt;&amp; more&lt;/b&gt;" in page and "<b>& more" not in page
    assert "rolled back to 0.0 kimg" in page and "resumed at step 6" in page


@pytest.mark.parametrize("make", ["missing", "empty", "file"])
def test_a_folder_that_is_not_a_run_is_one_line_exit_2(tmp_path, capsys, make):
    target = tmp_path / "x"
    if make == "empty":
        target.mkdir()
        (target / "notes.txt").write_text("hello")
    elif make == "file":
        target.write_text("hello")
    assert main(["report", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("minmax: error:") and len(err.splitlines()) == 1, err
    assert "not a run folder" in err or "does not exist" in err
    assert not (tmp_path / "x" / "report.html").exists()


def test_a_diverged_run_still_gets_its_report(tmp_path, monkeypatch):
    real = loop.iteration

    def poisoned(cfg, run, *args):  # G's weights NaN from step 5 on, again after a rollback
        losses = real(cfg, run, *args)
        if run.count.step >= 5:
            with torch.no_grad():
                next(run.G.parameters()).fill_(float("nan"))
        return losses

    monkeypatch.setattr(loop, "iteration", poisoned)
    run = tmp_path / "run"
    cfg = resolve("ring", overrides=["train.kimg=1", "train.checkpoint_every_kimg=0.256",
                                     "train.on_nonfinite=rollback", "train.max_rollbacks=1",
                                     "eval.plots=false", *TOY])  # fmt: skip
    with pytest.raises(DivergenceError):
        train(cfg, run, progress=False)
    page = page_of(run / "report.html")
    assert "diverged at" in page and "rolled back to 0.256 kimg" in page
    assert "after 1 rollback(s): stopped (see diverged/)" in page


def test_a_report_that_fails_only_warns_and_the_run_finishes(tmp_path, monkeypatch, capsys):
    def broken(run_dir):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(report, "render", broken)
    run = tmp_path / "run"
    summary = train(resolve("ring", overrides=["train.kimg=0.128", *TOY]), run, progress=False)
    assert summary["stopped_by"] == "kimg" and not (run / "report.html").exists()
    assert "warning: no report.html written (RuntimeError: disk on fire)" in capsys.readouterr().err


BROWSER = next(filter(None, map(shutil.which, ["chromium-headless-shell", "chromium",
                                                "google-chrome"])), None)  # fmt: skip


def screenshot(page, out) -> np.ndarray:
    """``page`` as the browser draws it (RGB); the run fails on any console message."""
    args = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--enable-logging=stderr", "--v=0", "--window-size=1000,2400",
            f"--screenshot={out}", page.as_uri()]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "CONSOLE" not in done.stderr, done.stderr[-2000:]
    return np.asarray(Image.open(out).convert("RGB")).astype(int)


def count_near(pixels: np.ndarray, rgb: tuple[int, int, int]) -> int:
    return int((np.abs(pixels - rgb).sum(-1) < 60).sum())


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium here")
def test_the_page_renders_in_headless_chromium(toy_run, tmp_path):
    """Checked on pixels: the SVG chart draws its two loss lines (a copy of the run without
    its PNGs has nothing else in those colours), and the scatter and D plots draw too."""
    bare = tmp_path / "bare"
    shutil.copytree(toy_run, bare, ignore=shutil.ignore_patterns("checkpoint", "*.png"))
    report.write_report(bare)
    chart = screenshot(bare / "report.html", tmp_path / "chart.png")
    full = screenshot(toy_run / "report.html", tmp_path / "full.png")
    blue, orange, navy = (31, 119, 180), (255, 127, 14), (5, 48, 97)  # tab:, RdBu's low end
    assert count_near(chart, blue) > 100 and count_near(chart, orange) > 100  # loss_D, loss_G
    colour = [int((np.ptp(pixels, -1) > 60).sum()) for pixels in (chart, full)]  # not grey
    assert colour[1] > colour[0] + 3000  # the points, the colour maps and their bars
    assert count_near(full, navy) > count_near(chart, navy) + 300  # log P/Q_G's low end
