"""Saved views (dmlib.course.tools.views): what an untrusted notebook shows before it runs."""

import base64
import io

import matplotlib

matplotlib.use("Agg")

import nbformat  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from dmlib.animation import trajectory_html  # noqa: E402
from dmlib.course.checks._core import report_line  # noqa: E402
from dmlib.course.grade import check_lines  # noqa: E402
from dmlib.course.tools.views import WIDGET_STATE, WIDGET_VIEW, saved_views, view_problems  # noqa: E402

PNG = base64.b64encode(b"\x89PNG fake").decode()


def _model(name, **state):
    return {"model_name": name, "model_module": "@jupyter-widgets/controls",
            "model_module_version": "2.0.0", "state": state}


def _notebook():
    ids = {k: f"{i:032x}" for i, k in enumerate(
        ["bar", "left", "prog", "right", "box", "slider", "out", "closed"], start=1)}
    ref = lambda k: f"IPY_MODEL_{ids[k]}"  # noqa: E731
    states = {
        ids["bar"]: _model("HBoxModel", children=[ref("left"), ref("prog"), ref("right")]),
        ids["left"]: _model("HTMLModel", value="train:\u2007100%"),
        ids["prog"]: _model("FloatProgressModel", value=1500.0, max=1500.0),
        ids["right"]: _model("HTMLModel", value="\u20071500/1500\u2007[00:36&lt;00:00]"),
        ids["box"]: _model("VBoxModel", children=[ref("slider"), ref("out")]),
        ids["slider"]: _model("IntSliderModel", value=200),
        ids["out"]: _model("OutputModel", outputs=[
            {"output_type": "display_data", "data": {"image/png": PNG, "text/plain": "<Figure>"},
             "metadata": {}}]),
    }

    def view(key, text):
        return nbformat.v4.new_output("display_data", data={
            WIDGET_VIEW: {"model_id": ids[key], "version_major": 2, "version_minor": 0},
            "text/plain": text})

    anim = trajectory_html({t: torch.randn(50, 2, generator=torch.Generator().manual_seed(t))
                            for t in range(10, -1, -1)}, n_frames=4)
    cell = nbformat.v4.new_code_cell("run()")
    cell.outputs = [view("bar", "train:   0%|          | 0/1500 [00:00<?, ?it/s]"),
                    view("box", "interactive(children=(IntSlider(value=200, ...)"),
                    view("closed", "sampling:   0%|          | 0/100"),
                    nbformat.v4.new_output("display_data", data={"text/html": anim,
                                                                 "text/plain": "<HTML>"})]
    nb = nbformat.v4.new_notebook(cells=[cell])
    nb.metadata["widgets"] = {WIDGET_STATE: {"state": states, "version_major": 2, "version_minor": 0}}
    return nb


def test_saved_views_replace_reprs_bars_and_players():
    nb = _notebook()
    assert len(view_problems(nb)) == 4  # two 0% bars (one closed), a raw repr, a player
    assert saved_views(nb) == 4
    outs = nb.cells[0].outputs
    assert len(outs) == 3  # the closed bar (leave=False) is gone
    assert outs[0].data["text/plain"].startswith("train: 100%|##########| 1500/1500 [00:36<00:00]")
    assert outs[1].data["image/png"] == PNG and WIDGET_VIEW in outs[1].data
    gif = Image.open(io.BytesIO(base64.b64decode(outs[2].data["image/gif"])))
    assert gif.format == "GIF" and gif.n_frames == 4
    assert "text/html" not in outs[2].data
    assert view_problems(nb) == []
    assert saved_views(nb) == 0  # idempotent
    nbformat.validate(nb)


def test_wrapped_check_lines_are_joined_by_the_grader():
    hint = ("on the linear schedule with T=1000: you used a running sum; alpha_bar_t is a "
            "running product, and this sentence makes the line long enough to wrap twice")
    text = "\n".join([report_line(f"FAIL check_alpha_bar: {hint}"),
                      "[demo] " + report_line(f"FAIL check_snr: {hint}"),
                      report_line("PASS check_snr: all 3 cases agree with the reference"),
                      "done"])
    assert all(len(line) <= 88 for line in text.splitlines()[:2])
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text + "\n")]
    assert check_lines(cell) == [("FAIL", "check_alpha_bar", hint),
                                 ("PASS", "check_snr", "all 3 cases agree with the reference")]
