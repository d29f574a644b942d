"""Saved views: what a chapter shows when it is opened and not yet run.

A notebook fresh from a clone is *untrusted* in JupyterLab, so its outputs are rendered
without JavaScript and without the widget renderer: a widget falls back to its
``text/plain`` repr (``interactive(children=(IntSlider(...``), a tqdm bar to the text of its
first draw ("0%| 0/1500"), and a matplotlib ``to_jshtml`` player to an inert, sanitized
shell. ``saved_views(nb)`` rewrites the stored outputs of a full run so that each of them
has a rendering that needs no trust, taken from the widget state that nbclient stored in
the notebook's metadata:

* a tqdm bar gets the text of its **last** state (``train: 100%|####| 1500/1500 [...]``);
* any other widget (``interact``, a VBox with an Output) gets the **last figure** its
  Output widgets drew, as an ``image/png`` beside the widget view (the untrusted view shows
  the image, a running kernel shows the live widget), and a short ``text/plain`` line;
* a ``to_jshtml`` animation becomes an **animated GIF** (``image/gif``) of its frames; the
  interactive player appears when the chapter is run.

It is applied by ``python -m dmlib.course.tools.pairs execute`` after each full-mode run, and by
``python -m dmlib.course.tools.pairs views`` to stored outputs; ``view_problems`` (used by the pair
check) names any output that would still show a raw repr, a "0%" bar or a player.
"""

from __future__ import annotations

import base64
import html
import io
import re

import nbformat

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_TEXT = "(interactive widget: run the chapter to use its controls; the figure is its saved view)"
_REF = re.compile(r"IPY_MODEL_([0-9a-f]{32})")
_JSHTML_FRAME = re.compile(r'frames\[(\d+)\] = "data:image/(png|jpeg);base64,([^"]+)"')
_JSHTML_INTERVAL = re.compile(r"new Animation\(frames, img_id, slider_id, ([0-9.]+)")
_RAW_REPR = re.compile(r"^(interactive|VBox|HBox|Box|Output|IntSlider|FloatSlider|Dropdown|"
                       r"SelectionSlider|Tab|Accordion)\(")


def _states(nb: nbformat.NotebookNode) -> dict:
    return (nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}) or {}).get("state", {}) or {}


def _descendants(model_id: str, states: dict) -> list[dict]:
    """The widget ``model_id`` and every model it references, depth first, each once."""
    seen, order, stack = set(), [], [model_id]
    while stack:
        mid = stack.pop()
        if mid in seen or mid not in states:
            continue
        seen.add(mid)
        order.append(states[mid])
        refs = _REF.findall(str(states[mid].get("state", {})))
        stack.extend(reversed(refs))
    return order


def _text_of_html(value: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", value or "")).replace("\u2007", " ")


def tqdm_text(model_id: str, states: dict) -> str | None:
    """The last line a tqdm.auto bar showed, from its stored widget state (None if not tqdm)."""
    box = states.get(model_id)
    if not box or box.get("model_name") != "HBoxModel":
        return None
    kids = [states.get(m) for m in _REF.findall(str(box["state"].get("children", "")))]
    names = [k.get("model_name") if k else None for k in kids]
    if names != ["HTMLModel", "FloatProgressModel", "HTMLModel"]:
        return None
    prog = kids[1]["state"]
    try:
        frac = float(prog.get("value", 0)) / float(prog.get("max", 1) or 1)
    except (TypeError, ValueError):
        frac = 0.0
    frac = min(max(frac, 0.0), 1.0)
    bar = "#" * round(10 * frac) + " " * (10 - round(10 * frac))
    left, right = _text_of_html(kids[0]["state"].get("value")), _text_of_html(kids[2]["state"].get("value"))
    return f"{left}|{bar}|{right}".strip()


def widget_figure(model_id: str, states: dict) -> dict | None:
    """The last image (its mime bundle) drawn into an Output widget under ``model_id``."""
    found = None
    for model in _descendants(model_id, states):
        if model.get("model_name") != "OutputModel":
            continue
        for out in model.get("state", {}).get("outputs", []) or []:
            data = out.get("data", {})
            if "image/png" in data:
                found = {"image/png": data["image/png"]}
    return found


def jshtml_to_gif(text: str) -> bytes | None:
    """An animated GIF of the frames of a matplotlib ``to_jshtml`` player (None if not one)."""
    frames = sorted((int(i), base64.b64decode(b)) for i, _, b in _JSHTML_FRAME.findall(text))
    if len(frames) < 2:
        return None
    from PIL import Image

    m = _JSHTML_INTERVAL.search(text)
    interval = int(float(m.group(1))) if m else 250
    images = [Image.open(io.BytesIO(b)).convert("RGB") for _, b in frames]
    # one palette for all frames (the first frame's colours plus the data's), no dithering noise
    images = [im.quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
              for im in images]
    buf = io.BytesIO()
    durations = [interval] * (len(images) - 1) + [max(interval, 1500)]  # rest on the samples
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=durations, optimize=False, disposal=1)
    return buf.getvalue()


def _is_jshtml(data: dict) -> bool:
    h = data.get("text/html", "")
    h = "".join(h) if isinstance(h, list) else h
    return "new Animation(frames" in h and "_anim_img" in h


def saved_views(nb: nbformat.NotebookNode) -> int:
    """Rewrite ``nb``'s outputs in place as described in the module docstring; return how
    many outputs changed. Idempotent."""
    states = _states(nb)
    changed = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            data = out.get("data")
            if not data:
                continue
            if WIDGET_VIEW in data:
                mid = data[WIDGET_VIEW].get("model_id", "")
                if states and mid not in states:  # closed (a tqdm bar with leave=False)
                    out["data"] = None
                    changed += 1
                    continue
                text = tqdm_text(mid, states)
                if text is not None:
                    new = {WIDGET_VIEW: data[WIDGET_VIEW], "text/plain": text}
                else:
                    new = {WIDGET_VIEW: data[WIDGET_VIEW], "text/plain": WIDGET_TEXT}
                    new.update(widget_figure(mid, states) or {})
                if new != dict(data):
                    out["data"] = nbformat.from_dict(new)
                    changed += 1
            elif _is_jshtml(data):
                h = data["text/html"]
                gif = jshtml_to_gif("".join(h) if isinstance(h, list) else h)
                if gif is not None:
                    out["data"] = nbformat.from_dict({
                        "image/gif": base64.b64encode(gif).decode("ascii"),
                        "text/plain": "(animation: the saved view is a GIF; run the chapter for "
                                      "the player with play / step controls)"})
                    out["metadata"] = {}
                    changed += 1
        cell["outputs"] = [o for o in cell.get("outputs", []) if o.get("data", True) is not None]
    return changed


def view_problems(nb: nbformat.NotebookNode, name: str = "notebook") -> list[str]:
    """Outputs that would show a raw widget repr, a "0%" bar or an inert player untrusted."""
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            data = out.get("data") or {}
            plain = data.get("text/plain", "")
            plain = "".join(plain) if isinstance(plain, list) else plain
            if WIDGET_VIEW in data and (_RAW_REPR.match(plain) or re.search(r"\b0%\|", plain)):
                problems.append(f"{name}: cell {i} stores a widget whose saved view is "
                                f"{plain[:40]!r} (run `python -m dmlib.course.tools.pairs views chapters`)")
            elif _is_jshtml(data):
                problems.append(f"{name}: cell {i} stores an animation player that needs trust "
                                f"(run `python -m dmlib.course.tools.pairs views chapters`)")
    return problems


__all__ = ["saved_views", "view_problems", "tqdm_text", "widget_figure", "jshtml_to_gif"]
