"""Interactive parts of the book (ipywidgets), each with a static figure for the rendered site.

A widget's output keeps a plain-text fallback that says what it is (`_show`): a notebook opened without a
live kernel (an untrusted notebook in JupyterLab, or after a kernel restart) shows that sentence, not
`VBox(children=...)`; the static figure or sample printed above it is what such a reader sees.
"""

import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import MaxNLocator

from ..capture import capture
from ..sample import generate_text

LIVE_ONLY = "run this cell in a live kernel to use them; the {what} above shows their default setting."


def _show(widget, what, fallback_of):
    """Display a widget with a readable text fallback instead of its repr."""
    from IPython.display import display
    bundle = widget._repr_mimebundle_() or {}
    bundle["text/plain"] = f"[interactive controls: {fallback_of}] " + LIVE_ONLY.format(what=what)
    display(bundle, raw=True)


def attention_explorer(model, text, itos, static_points=((0, 0), (-1, 0))):
    """Pick layer, head and query position: that query's attention row, its span and its stats.

    Shows a static figure of a few (layer, head) rows first — what the rendered book shows — then
    the sliders, which work in a live kernel.
    """
    import ipywidgets as W

    stoi = {c: i for i, c in enumerate(itos)}
    idx = torch.tensor([[stoi[c] for c in text]], device=next(model.parameters()).device)
    cap = capture(model, idx)
    n_layer, n_head, T = len(cap.layers), cap.layers[0].probs.shape[1], idx.shape[1]

    def draw(layer, head, query, ax):
        lc = cap.layers[layer]
        row = lc.probs[0, head, query, : query + 1].cpu().numpy()
        ax.bar(range(query + 1), row, color="tab:purple")
        span = lc.span[0, head, query].item() if lc.span is not None else None
        if span is not None:
            ax.axvline(query - span + 1, color="tab:cyan", ls="--", label=f"window edge, σ = {span:.1f} tokens")
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0, fontsize="small")
        st = {k: v[0, head, query].item() for k, v in lc.stats.items()}
        gate = f", gate {lc.gate[0, head, query].item():.2f}" if lc.gate is not None else ""
        ax.set(xlabel="key position j", ylabel="attention weight",
               title=f"layer {layer}, head {head}, query {query} ({text[query]!r}): looks back "
                     f"{st['mean_distance']:.1f} ± {st['std_distance']:.1f} tokens,\nmean logit "
                     f"{st['mean_logit']:.2f}{gate}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))

    fig, axes = plt.subplots(len(static_points), 1, figsize=(6.4, 2.9 * len(static_points)), squeeze=False)
    for ax, (layer, head) in zip(axes[:, 0], static_points):
        draw(layer % n_layer, head, T - 1, ax)
    plt.show()

    out = W.Output()
    sliders = dict(layer=W.IntSlider(0, 0, n_layer - 1, description="layer"),
                   head=W.IntSlider(0, 0, n_head - 1, description="head"),
                   query=W.IntSlider(T - 1, 0, T - 1, description="query"))

    def update(**kw):
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(6.4, 3.0))
            draw(kw["layer"], kw["head"], kw["query"], ax)
            plt.show()

    W.interactive_output(lambda layer, head, query: update(layer=layer, head=head, query=query), sliders)
    _show(W.VBox([W.HBox(list(sliders.values())), out]), "figure", "layer, head and query sliders")


def sampling_box(model, itos, prompt="ROMEO:", max_new_tokens=200, seed=0):
    """Prompt, temperature, top-k and seed controls; prints one sample with the defaults for the static book.

    Each click draws a new seed unless "keep seed" is ticked, and writes the seed it used into the seed box, so a
    sample worth keeping can be drawn again. The prompt syncs when the box loses focus (continuous_update off),
    which pressing the button does first: the sample always starts from the prompt as it stands at the press.
    While it generates, the button is disabled and reads "sampling…" (a sample takes a few seconds on a CPU).
    Returns the controls (tests press the button with `click()`).
    """
    import random

    import ipywidgets as W

    print(f"seed {seed}:\n" + generate_text(model, itos, prompt, 1, max_new_tokens, 0.8, 200, seed)[0])
    wide = {"description_width": "initial"}  # labels in full, not "temperat…"
    text = W.Text(prompt, description="prompt", style=wide, continuous_update=False)
    temp = W.FloatSlider(0.8, min=0.1, max=2.0, step=0.1, description="temperature", style=wide)
    topk = W.IntSlider(len(itos), min=1, max=len(itos), description="top-k", style=wide)
    seed_box = W.BoundedIntText(seed, min=0, max=2**31 - 1, description="seed", style=wide,
                                layout=W.Layout(width="12em"))
    keep = W.Checkbox(False, description="keep seed", indent=False, layout=W.Layout(width="8em"))
    button, out = W.Button(description="sample", icon="play", button_style="primary"), W.Output()
    rng = random.Random()

    def on_click(_):
        button.disabled, button.description, button.icon = True, "sampling…", "hourglass-half"
        try:
            if not keep.value:
                seed_box.value = rng.randrange(2**31)
            with out:
                out.clear_output()
                try:
                    sample = generate_text(model, itos, text.value or "\n", 1, max_new_tokens, temp.value,
                                           topk.value, seed_box.value)[0]
                    print(f"seed {seed_box.value}:\n{sample}")
                except ValueError as e:
                    print(f"error: {e}")
        finally:
            button.disabled, button.description, button.icon = False, "sample", "play"

    button.on_click(on_click)
    controls = W.VBox([W.HBox([text, temp, topk]), W.HBox([seed_box, keep, button]), out])
    _show(controls, "sample", "prompt, temperature, top-k, seed and a button")
    return dict(prompt=text, temperature=temp, top_k=topk, seed=seed_box, keep=keep, button=button, out=out)
