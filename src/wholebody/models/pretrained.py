"""Pretrained HRNet weights mapped into the package's networks (``pretrained`` of ZoomNet / HRNetPose).

Sources, each given as a timm model name or a local file:

* a timm HRNet name (``hrnet_w32``, ``hrnet_w18``, ``hrnet_w48``, ``hrnet_w18_small_v2``, optionally
  with a tag, ``hrnet_w32.ms_in1k``): its ImageNet weights from timm's own local cache (the Hugging
  Face hub cache timm downloads into). Nothing is downloaded unless the setting says
  ``download: true``;
* a file: a timm state dict (``.pth`` / ``.bin`` / ``.safetensors``), an original HRNet ImageNet
  checkpoint of the HRNet authors (``hrnetv2_w32_imagenet_pretrained.pth``; the same module names
  as timm's, which ported that code, possibly under a ``module.`` prefix and without
  ``num_batches_tracked``), or an mmpose checkpoint (``state_dict`` with ``backbone.*`` and, for
  top-down heatmap models, ``head.final_layer.*`` (mmpose 1.x) or ``keypoint_head.final_layer.*``
  (0.x)).

Files are read with ``torch.load(..., weights_only=True)``: tensors, torch's storages, dtypes and sizes,
and plain data (dict, OrderedDict, list, tuple, set, str, bytes, int, float, complex, bool, None).
mmpose and mmengine also put numpy scalars and arrays in a checkpoint's ``meta``; those are read as
inert :class:`NumpyValue` placeholders that keep nothing of the value: numpy's own pickle
reconstruction never runs (a crafted dtype state makes it dereference bytes of the file as pointers,
a crash of the process), and the package takes nothing from ``meta``. The numpy names read so are
:data:`NUMPY_NAMES`; every other global is refused with a one-line error naming it. ``.safetensors``
files are read with safetensors.

The mapping is structural: the package builds HRNet from timm's blocks, so below a module the
names are timm's, and only the containers differ (``d`` = a destination name inside the module,
``s`` = stage index from 0, ``i`` = branch, ``m`` = module of a stage)::

    stem    conv1.0.*  <- conv1.*        conv1.1.* <- bn1.*       (FeatureNet)
            conv2.0.*  <- conv2.*        conv2.1.* <- bn2.*       layer1.* <- layer1.*
    stages  transitions.s.i.*  <- transition{s+1}.i.*     (a branch kept: conv-BN-ReLU)
            transitions.s.i.*  <- transition{s+1}.i.0.*   (the new lowest branch, i = s + 1)
            stages.s.m.*       <- stage{s+2}.m.*          (branches, fuse_layers)
    body    body_net.stages.*  as above; final.out.* <- head.final_layer.* | keypoint_head.final_layer.*
            (HRNetPose, whose heatmaps are in the 133-keypoint order; ZoomNet's BodyNet, kind ``stages``,
            takes the stages only: its 38 heatmaps of keypoints and box points have no counterpart)
    head    layer1.* <- layer1.*; stages.* as above     (Face/HandHead: the F1 RoI enters HRNet's layer1)

A module's mapped part must be complete and of the right shapes, or the file does not fit (one-line
``ValueError`` naming the file, the module and what is wrong, e.g. an HRNet-W18 file for a W32
BodyNet). Tensors the file has no counterpart for keep their own initialisation (ZoomNet's heatmap
layers, the heads' F2 projection and last 1x1 layer) and are listed in the log; ImageNet-only tensors
(classifier, incre/downsamp/final layers) and the last module's fusions into the lower branches,
which pose HRNet does not compute, have no place and are counted as unused.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

#: Roles a ``pretrained`` mapping names, besides ``download``.
ROLES = ("body", "heads")
#: A tensor every HRNet state dict has (timm, the HRNet authors', mmpose's backbone); its rows are the width.
HRNET_MARK = "transition1.0.0.weight"
#: Module kinds of the mapping (see the module docstring).
KINDS = ("stem", "body", "stages", "head")
#: Hugging Face hub cache folder timm uses (None: huggingface_hub's default, ``$HF_HUB_CACHE``).
HF_CACHE_DIR: str | None = None
#: The final-layer names of mmpose's top-down heatmap heads (1.x, 0.x).
MMPOSE_HEADS = ("head.final_layer", "keypoint_head.final_layer")
_TIMM_NAME = re.compile(r"^hrnet_w\d+(_small(_v2)?|_ssld)?(\.[A-Za-z0-9_]+)?$")


class PretrainedError(ValueError):
    """A pretrained source that cannot be read or does not fit: one line naming the source."""


# ----------------------------------------------------------------------------- the setting
def parse_pretrained(pretrained: Any, network: str) -> tuple[dict[str, str], bool]:
    """The ``pretrained`` setting as ({role: source}, download).

    ``pretrained``: None (nothing), a string (the ``body`` source) or a mapping with ``body`` /
    ``heads`` (a timm name or a file path, or null) and ``download`` (bool, default False).
    """
    if pretrained is None or pretrained is False:
        return {}, False
    if isinstance(pretrained, (str, Path)):
        return {"body": str(pretrained)}, False
    if not isinstance(pretrained, Mapping):
        raise PretrainedError(f"{network}: pretrained must be a timm name, a file or a mapping "
                              f"{{body: ..., heads: ..., download: false}}, got {type(pretrained).__name__}")
    unknown = [k for k in pretrained if k not in (*ROLES, "download")]
    if unknown:
        raise PretrainedError(f"{network}: pretrained has unknown key(s) {unknown}; keys are {[*ROLES, 'download']}")
    download = pretrained.get("download", False)
    if not isinstance(download, bool):
        raise PretrainedError(f"{network}: pretrained.download must be true or false, got {download!r}")
    sources = {}
    for role in ROLES:
        v = pretrained.get(role)
        if v is None:
            continue
        if not isinstance(v, (str, Path)) or not str(v):
            raise PretrainedError(f"{network}: pretrained.{role} must be a timm model name or a file path, got {v!r}")
        sources[role] = str(v)
    return sources, download


# ----------------------------------------------------------------------------- reading sources
class NumpyValue:
    """What a numpy scalar, array or dtype in a weights file reads as: a placeholder holding nothing of
    the file's bytes. Building one and setting its state run no numpy code."""

    __slots__ = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> NumpyValue:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __repr__(self) -> str:
        return "NumpyValue()"


#: The numpy globals a weights file may name; each reads as a :class:`NumpyValue`: what numpy's pickles
#: of scalars, arrays and dtypes name (protocols 2 to 4), under numpy 1's and numpy 2's module spellings.
NUMPY_NAMES = ("numpy.ndarray", "numpy.dtype", "numpy.core.multiarray.scalar", "numpy.core.multiarray._reconstruct",
               "numpy._core.multiarray.scalar", "numpy._core.multiarray._reconstruct")


def _inert_numpy_globals() -> list[tuple[type, str]]:
    """``torch.serialization.safe_globals`` entries that bind every name of :data:`NUMPY_NAMES` to
    :class:`NumpyValue` (never to numpy itself)."""
    return [(NumpyValue, name) for name in NUMPY_NAMES]


def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: a state dict, or a checkpoint dict holding one under
    ``state_dict`` / ``model`` (a ``module.`` prefix is stripped). ``.safetensors`` via safetensors,
    everything else via ``torch.load(weights_only=True)`` with numpy values read as inert placeholders
    (see the module docstring). Raises FileNotFoundError or :class:`PretrainedError` (one line naming the file)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"pretrained: {p} does not exist" if not p.exists() else f"pretrained: {p} is not a file")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(p))
        except Exception as e:  # noqa: BLE001 - a damaged or foreign file
            raise PretrainedError(f"pretrained: {p} is not a readable safetensors file ({_first_line(e)})") from None
    else:
        try:
            with torch.serialization.safe_globals(_inert_numpy_globals()):
                obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - pickle, zip, EOF: all "not a weights file"
            refused = _refused_globals(p)
            if refused:
                raise PretrainedError(
                    f"pretrained: {p} holds objects other than tensors and plain data ({', '.join(refused[:4])}), "
                    "refused by torch.load(weights_only=True); save its state_dict alone and pass that file"
                ) from None
            raise PretrainedError(f"pretrained: {p} is not readable with torch.load(weights_only=True) ({_first_line(e)})") from None
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise PretrainedError(f"pretrained: {p} holds a {type(obj).__name__}, not a state dict")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise PretrainedError(f"pretrained: {p} holds no tensors")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def _refused_globals(p: Path) -> list[str]:
    """The globals of the checkpoint ``p`` that ``torch.load(weights_only=True)`` refuses, the numpy names
    of :data:`NUMPY_NAMES` allowed."""
    try:
        with open(p, "rb") as f, torch.serialization.safe_globals(_inert_numpy_globals()):
            return torch.serialization.get_unsafe_globals_in_checkpoint(f)
    except Exception:  # noqa: BLE001 - not a zip checkpoint at all
        return []


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def is_timm_name(source: str) -> bool:
    """``source`` names a timm HRNet (``hrnet_w32``, ``hrnet_w18_small_v2.ms_in1k``) rather than a file."""
    return bool(_TIMM_NAME.match(source)) and not Path(source).exists()


def timm_weights(name: str, download: bool = False, cache_dir: str | None = None) -> dict[str, torch.Tensor]:
    """The ImageNet weights of timm model ``name`` from the local Hugging Face cache timm uses,
    fetched from the hub only with ``download=True``. Raises :class:`PretrainedError` (one line,
    saying how to get them) when they are not cached."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None or not getattr(cfg, "hf_hub_id", None):
        raise PretrainedError(f"pretrained: {name!r} is not a timm model with hub weights (timm.list_pretrained('hrnet*') "
                              "lists them)")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo = cfg.hf_hub_id
    files = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
    cache = cache_dir if cache_dir is not None else HF_CACHE_DIR
    last: Exception | None = None
    for filename in files:
        try:
            path = hf_hub_download(repo, filename, cache_dir=cache, local_files_only=not download)
        except LocalEntryNotFoundError as e:
            last = e
            continue
        except Exception as e:  # noqa: BLE001 - network or hub errors when downloading
            raise PretrainedError(f"pretrained: downloading {name!r} from the hub ({repo}) failed: {_first_line(e)}") from None
        return read_weights_file(path)
    if download:
        raise PretrainedError(f"pretrained: {repo} has none of {files} ({_first_line(last) if last else ''})")
    raise PretrainedError(
        f"pretrained: the ImageNet weights of {name!r} ({repo}) are not in timm's local cache "
        f"({cache or '$HF_HUB_CACHE, default ~/.cache/huggingface/hub'}); fetch them once with "
        "model.net.pretrained.download=true (or python -c \"import timm; timm.create_model('" + name.split('.')[0]
        + "', pretrained=True)\"), or give a local file, e.g. model.net.pretrained.body=/path/hrnetv2_w32_imagenet_pretrained.pth"
    )


def read_source(source: str, download: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a source (timm name or file), HRNet names canonical: mmpose's ``backbone.`` prefix
    stripped (its head's final layer kept under its own name)."""
    sd = timm_weights(source, download) if is_timm_name(source) else read_weights_file(source)
    if any(k.startswith("backbone.") for k in sd):
        sd = {k[len("backbone."):] if k.startswith("backbone.") else k: v for k, v in sd.items()}
    return sd


# ----------------------------------------------------------------------------- the name rules
def _stages_source(d: str) -> list[str]:
    """Source names for a name inside :class:`~wholebody.models.backbone.HRNetStages`."""
    m = re.match(r"^transitions\.(\d+)\.(\d+)\.(.+)$", d)
    if m:
        s, i, rest = int(m[1]), int(m[2]), m[3]
        return [f"transition{s + 1}.{i}.0.{rest}" if i == s + 1 else f"transition{s + 1}.{i}.{rest}"]
    m = re.match(r"^stages\.(\d+)\.(\d+)\.(.+)$", d)
    if m:
        return [f"stage{int(m[1]) + 2}.{m[2]}.{m[3]}"]
    return []


def source_names(kind: str, d: str) -> list[str]:
    """Candidate source names (first found wins) of destination name ``d`` inside a module of ``kind``;
    empty when the tensor has no counterpart in an HRNet checkpoint."""
    if kind == "stem":
        m = re.match(r"^conv([12])\.([01])\.(.+)$", d)
        if m:
            return [f"{'conv' if m[2] == '0' else 'bn'}{m[1]}.{m[3]}"]
        return [d] if d.startswith("layer1.") else []
    if kind == "head":
        if d.startswith("layer1."):
            return [d]
        return _stages_source(d[len("stages."):]) if d.startswith("stages.") else []
    if kind in ("body", "stages"):
        if d.startswith("stages."):
            return _stages_source(d[len("stages."):])
        m = re.match(r"^final\.out\.(weight|bias)$", d) if kind == "body" else None
        return [f"{h}.{m[1]}" for h in MMPOSE_HEADS] if m else []
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def _optional(kind: str, d: str) -> bool:
    """Tensors a source may lack without failing to fit: BN batch counters (old checkpoints) and the
    pose head's final layer (ImageNet checkpoints have none)."""
    return d.endswith("num_batches_tracked") or (kind == "body" and d.startswith("final."))


# ----------------------------------------------------------------------------- loading
@dataclass
class ModuleMapping:
    """What one source gave one module."""

    module: str
    source: str
    mapped: int = 0
    total: int = 0
    kept: list[str] = field(default_factory=list)  # module tensors left at their own initialisation


@dataclass
class PretrainedReport:
    """Per module: tensors mapped / kept; per source: tensors it had no place for."""

    modules: list[ModuleMapping] = field(default_factory=list)
    unused: dict[str, list[str]] = field(default_factory=dict)  # source -> its tensors nothing took

    def mapped(self) -> dict[str, int]:
        return {m.module: m.mapped for m in self.modules}

    def summary(self) -> str:
        lines = []
        for m in self.modules:
            line = f"pretrained {m.source} -> {m.module}: {m.mapped}/{m.total} tensors mapped"
            if m.kept:
                line += f"; kept their own initialisation ({len(m.kept)}): {_groups(m.kept)}"
            lines.append(line)
        for src, names in self.unused.items():
            if names:
                lines.append(f"pretrained {src}: {len(names)} tensors unused (no place in the network): {_groups(names)}")
        return "\n".join(lines)


def _groups(names: Sequence[str], n: int = 6) -> str:
    """Names collapsed to their module (``incre_modules.0`` x 24) for the log."""
    counts: dict[str, int] = {}
    for k in names:
        parts = k.split(".")
        head = ".".join(parts[:-1]) if len(parts) <= 3 else ".".join(parts[:3])
        counts[head] = counts.get(head, 0) + 1
    items = [f"{k} ({v})" for k, v in counts.items()]
    return ", ".join(items[:n]) + (f", ... (+{len(items) - n} groups)" if len(items) > n else "")


def name_prefixes(sd: Mapping[str, torch.Tensor]) -> list[str]:
    """The first few top-level names of a state dict, for messages about a file that is not what it should be."""
    return sorted({k.split(".")[0] for k in sd})[:6]


def _hrnet_width(sd: Mapping[str, torch.Tensor]) -> str:
    t = sd.get(HRNET_MARK)
    return f"HRNet-W{t.shape[0]}" if t is not None else "an HRNet of another size"


def tensor_problem(v: torch.Tensor, own: torch.Tensor) -> str | None:
    """What makes the file's tensor ``v`` unusable for the network's tensor ``own`` (same shape), or None.

    ``copy_`` would convert silently: integer or boolean weights into float (a file of truncated or
    quantised numbers), complex ones dropping their imaginary part, NaN / inf as they are. A float
    tensor must come from a finite float tensor (any float width); an integer one (BN's
    ``num_batches_tracked``) from an integer tensor; the layout must be dense."""
    if v.layout != torch.strided:
        return f"is a {v.layout} tensor, not a dense one"
    if own.is_floating_point():
        if not v.is_floating_point():
            return f"is {str(v.dtype).removeprefix('torch.')}, not floating point"
        bad = int(v.numel() - torch.isfinite(v).sum())
        if bad:
            return f"holds {bad} non-finite value(s) (NaN / inf)"
    elif v.is_floating_point() or v.is_complex() or v.dtype == torch.bool:
        return f"is {str(v.dtype).removeprefix('torch.')}, not an integer tensor"
    return None


def map_module(module: nn.Module, kind: str, sd: Mapping[str, torch.Tensor], label: str, name: str,
               rows: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], ModuleMapping, set[str]]:
    """The tensors of ``sd`` for ``module`` (a module of ``kind``): ({destination name: tensor},
    the mapping's record, the source names used). ``rows``: heatmap channels of a 133-channel
    final layer the module predicts (HRNetPose with a subset of parts). Raises
    :class:`PretrainedError` when the source does not fit."""
    own = module.state_dict()
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    rec = ModuleMapping(module=name, source=label, total=len(own))
    lacking, bad = [], []
    for d, t in own.items():
        cands = source_names(kind, d)
        src = next((c for c in cands if c in sd), None)
        if src is None:
            if cands and not _optional(kind, d):
                lacking.append(f"{d} <- {cands[0]}")
            rec.kept.append(d)
            continue
        v = sd[src]
        if rows is not None and src.split(".")[-2] == "final_layer" and v.shape[0] != t.shape[0] and v.shape[0] > int(rows.max()):
            v = v[rows]
        if tuple(v.shape) != tuple(t.shape):
            bad.append(f"{src} {tuple(v.shape)} vs {name}.{d} {tuple(t.shape)}")
            continue
        problem = tensor_problem(v, t)
        if problem is not None:
            raise PretrainedError(f"pretrained: {label}: tensor {src} {problem} (for {name}.{d}); not usable weights")
        out[d] = v
        used.add(src)
    if bad:
        raise PretrainedError(
            f"pretrained: {label} does not fit {name}: {len(bad)} tensor shape(s) differ, e.g. {bad[0]} "
            f"(the file is {_hrnet_width(sd)}; {name} needs the widths of its config)")
    if lacking and not out:
        raise PretrainedError(
            f"pretrained: {label} holds no HRNet tensors for {name} (e.g. {lacking[0]}; its names start with "
            f"{name_prefixes(sd)}): not an HRNet ImageNet / timm / mmpose file")
    if lacking:
        raise PretrainedError(
            f"pretrained: {label} does not fit {name}: it lacks {len(lacking)} of the module's HRNet tensors, "
            f"e.g. {lacking[0]} (a shallower HRNet than {name}'s config, e.g. an hrnet_w18_small?)")
    rec.mapped = len(out)
    return out, rec, used


def load_pretrained(net: nn.Module, plan: Mapping[str, Sequence[tuple[str, str]]], pretrained: Any,
                    rows: torch.Tensor | None = None) -> PretrainedReport | None:
    """Map the ``pretrained`` setting's sources into ``net``.

    ``plan``: role -> [(sub-module name, kind)], the modules each role's source initialises (a role
    with no modules refuses a source). Logs the :class:`PretrainedReport` at INFO and returns it
    (None without sources). Every tensor loaded equals its source tensor.
    """
    network = type(net).__name__
    sources, download = parse_pretrained(pretrained, network)
    if not sources:
        return None
    report = PretrainedReport()
    for role, source in sources.items():
        targets = plan.get(role) or []
        if not targets:
            raise PretrainedError(f"{network}: has no modules for pretrained.{role} (it takes {[r for r in plan if plan[r]]}); "
                                  f"set pretrained.{role}=null")
        place_tensors(net, targets, read_source(source, download), source, rows, report)
    log.info("%s", report.summary())
    return report


def place_tensors(net: nn.Module, targets: Sequence[tuple[str, str]], sd: Mapping[str, torch.Tensor], source: str,
                  rows: torch.Tensor | None = None, report: PretrainedReport | None = None) -> PretrainedReport:
    """Copy the HRNet tensors ``sd`` (read from ``source``) into the ``targets`` of ``net``
    ([(sub-module name, kind)]); the modules' records and the file's unused tensors go into ``report``
    (a new one by default), which is returned. :class:`PretrainedError` when they do not fit."""
    report = report if report is not None else PretrainedReport()
    if HRNET_MARK not in sd:
        raise PretrainedError(f"pretrained: {source} holds no HRNet tensors (no transition1.*; its names start with "
                              f"{name_prefixes(sd)}): not an HRNet ImageNet / timm / mmpose file")
    used: set[str] = set()
    for name, kind in targets:
        module = getattr(net, name)
        tensors, rec, u = map_module(module, kind, sd, source, name, rows if name == "body_net" else None)
        with torch.no_grad():
            own = module.state_dict()
            for d, v in tensors.items():
                own[d].copy_(v)
        report.modules.append(rec)
        used |= u
    report.unused[source] = [k for k in sd if k not in used]
    return report
