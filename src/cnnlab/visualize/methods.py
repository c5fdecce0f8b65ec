"""The explanation methods, each described once: the one list every other module reads.

A :class:`Method` declares its name (in files, score rows and ``cnnlab visualize --method``),
its title (figures and the report), whether it explains at a layer (CAM-style) or at the input
(gradient-style), whether the scoreboard scores it, where its function lies and the picture it
is drawn in. A new method is its function (a module of its own, as ``gradcam_pp.py``) and one
:func:`register` call below.

No torch here: the command line and the report read this list; a method's function is imported
when it is first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cnnlab.errors import CnnlabError


@dataclass(frozen=True)
class Method:
    """One explanation method.

    ``compute`` names its function, ``module:function``. A method ``from_pass`` is computed from
    the forward and backward pass a batch's gradient methods share:
    ``function(shared: cam.Pass, layer) -> (maps, raw)``; any other from the model:
    ``function(model, inputs[, layer], *, head, target, batch_size, **options) -> Heatmap``.
    ``picture``: the figure ``visualize_run`` draws it in (``<picture>[_<head>].png``; the methods
    sharing one are its panels; None: not drawn); ``label``: its panels' label there (default
    the title); ``heading``: the report's heading of the picture it leads, when not the titles.
    """

    name: str
    title: str
    layer: bool
    scored: bool
    compute: str
    from_pass: bool = False
    picture: str | None = None
    label: str | None = None
    heading: str | None = None

    def at(self, layers: Iterable[str]) -> list[str | None]:
        """Where it is computed: at each of ``layers`` (CAM-style), else once (None: the input)."""
        return list(layers) if self.layer else [None]

    def panel(self, layer: str | None) -> str:
        """Its panel's label in a picture: ``Grad-CAM conv1`` or ``saliency``."""
        name = self.label or self.title
        return name if layer is None else f"{name} {layer}"

    @property
    def function(self) -> Callable[..., Any]:
        """The function ``compute`` names, imported now."""
        module, _, name = self.compute.partition(":")
        return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Picture:
    """A figure of heatmaps: one panel per method (and per layer of a CAM-style method)."""

    name: str
    methods: tuple[Method, ...]

    @property
    def title(self) -> str:
        """``Grad-CAM`` or ``saliency and guided backprop``: in the figure's title."""
        return " and ".join(m.title for m in self.methods)

    @property
    def heading(self) -> str:
        """The report's heading of this picture."""
        title = self.methods[0].heading or self.title
        return title[:1].upper() + title[1:]


REGISTRY: dict[str, Method] = {}
"""Every method by name, in the order of the heatmaps in files and of the scoreboard's rows."""


def register(method: Method) -> Method:
    """Add ``method`` to :data:`REGISTRY` (its name must be new)."""
    if method.name in REGISTRY:
        raise CnnlabError(f"an explanation method named {method.name!r} is already registered")
    REGISTRY[method.name] = method
    return method


def lookup(name: str) -> Method:
    """The method named ``name``; a one-line error naming the others if there is none."""
    if name not in REGISTRY:
        raise CnnlabError(f"unknown attribution method {name!r}; choose from {', '.join(REGISTRY)}")
    return REGISTRY[name]


def chosen(names: Iterable[str] | None = None) -> tuple[Method, ...]:
    """The methods ``names`` (checked) in registry order; None: every method."""
    if names is None:
        return tuple(REGISTRY.values())
    wanted = {lookup(name).name for name in names}
    return tuple(m for m in REGISTRY.values() if m.name in wanted)


def drawn() -> tuple[str, ...]:
    """The methods ``visualize_run`` draws by default: those with a picture."""
    return tuple(m.name for m in REGISTRY.values() if m.picture is not None)


def scored() -> tuple[str, ...]:
    """The methods on the scoreboard by default."""
    return tuple(m.name for m in REGISTRY.values() if m.scored)


def pictures(methods: Iterable[Method]) -> tuple[Picture, ...]:
    """The pictures ``methods`` are drawn in, in page order: CAM-style ones first."""
    groups: dict[str, list[Method]] = {}
    for m in sorted(methods, key=lambda m: not m.layer):  # stable: registry order within
        if m.picture is not None:
            groups.setdefault(m.picture, []).append(m)
    return tuple(Picture(name, tuple(group)) for name, group in groups.items())


_CAM = "cnnlab.visualize.cam"
_CAPTUM = "cnnlab.visualize.attribution"

register(Method("gradcam", "Grad-CAM", layer=True, scored=True, compute=f"{_CAM}:gradcam_maps",
                from_pass=True, picture="gradcam"))  # fmt: skip
# Scored: a map of its own (unlike Captum's Grad-CAM below), so the scoreboard says whether
# its weighting points at the object better than Grad-CAM's; from the same pass, nearly free.
register(Method("gradcam_pp", "Grad-CAM++", layer=True, scored=True,
                compute="cnnlab.visualize.gradcam_pp:gradcam_pp_maps", from_pass=True,
                picture="gradcam_pp"))  # fmt: skip
register(Method("saliency", "saliency", layer=False, scored=True,
                compute=f"{_CAM}:saliency_maps", from_pass=True, picture="saliency",
                heading="saliency and guided backpropagation"))  # fmt: skip
register(Method("guided_backprop", "guided backprop", layer=False, scored=True,
                compute=f"{_CAM}:guided_backprop_maps", from_pass=True,
                picture="saliency"))  # fmt: skip
register(Method("guided_gradcam", "Guided Grad-CAM", layer=True, scored=True,
                compute=f"{_CAM}:guided_gradcam_maps", from_pass=True, picture="guided_gradcam",
                label="Guided G-CAM"))  # fmt: skip
register(Method("integrated_gradients", "Integrated Gradients", layer=False, scored=True,
                compute=f"{_CAPTUM}:integrated_gradients"))  # fmt: skip
register(Method("occlusion", "Occlusion", layer=False, scored=True,
                compute=f"{_CAPTUM}:occlusion"))  # fmt: skip
register(Method("deeplift", "DeepLIFT", layer=False, scored=True,
                compute=f"{_CAPTUM}:deeplift"))  # fmt: skip
register(Method("gradient_shap", "GradientSHAP", layer=False, scored=True,
                compute=f"{_CAPTUM}:gradient_shap"))  # fmt: skip
# Captum's Grad-CAM is the same map as cnnlab's: a cross-check in the tests, not scored twice.
register(Method("layer_gradcam", "Grad-CAM (Captum)", layer=True, scored=False,
                compute=f"{_CAPTUM}:captum_layer_gradcam"))  # fmt: skip
