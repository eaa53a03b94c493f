"""The test suite's machinery: markers that skip what this machine cannot run, the data fixtures (../shared, the
GPT-2 vocab), the one way to load microsoft/LoRA's own code, and the tiny models several test files share.

Markers (registered in setup.cfg): ``gpu`` (skipped without CUDA), ``java`` (without a Java runtime),
``shared_data`` (without ../shared) and ``upstream`` (without the microsoft/LoRA checkout). A test that asks for
the ``shared_data`` / ``metrics_cases`` or ``upstream`` fixture gets the matching marker by itself, so
``-m "not upstream"`` leaves out every test that would run upstream's code."""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

import helpers
from helpers import METRICS_CASES, ROOT, SHARED, SHARED_DATA, UPSTREAM_NLG_SRC  # noqa: F401 (imported from here)

# marker -> (whether this machine has what it needs, the skip reason)
REQUIREMENTS = {
    "gpu": (torch.cuda.is_available, "needs CUDA"),
    "java": (lambda: shutil.which("java") is not None, "needs a Java runtime"),
    "shared_data": (SHARED.is_dir, f"../shared is absent ({SHARED})"),
    "upstream": (lambda: (UPSTREAM_NLG_SRC / "model.py").is_file(),
                 f"the microsoft/LoRA checkout is absent (GPT2_LORA_UPSTREAM: {UPSTREAM_NLG_SRC.parents[2]})"),
}
FIXTURE_MARKERS = {"shared_data": "shared_data", "metrics_cases": "shared_data", "upstream": "upstream"}

# The old spellings, kept while other branches still decorate with them: the markers do the skipping.
requires_shared = pytest.mark.shared_data
requires_cuda = pytest.mark.gpu
requires_java = pytest.mark.java


def pytest_collection_modifyitems(config, items):
    met: dict[str, bool] = {}
    for item in items:
        for fixture, marker in FIXTURE_MARKERS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)
        for marker, (available, reason) in REQUIREMENTS.items():
            if item.get_closest_marker(marker) is None:
                continue
            if marker not in met:
                met[marker] = bool(available())
            if not met[marker]:
                item.add_marker(pytest.mark.skip(reason=reason))


# ------------------------------------------------------------------------------------------------ data
@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def metrics_cases() -> Path:
    if not METRICS_CASES.is_dir():
        pytest.skip("../shared/metrics-cases is absent")
    return METRICS_CASES


@pytest.fixture(scope="session")
def vocab_dir() -> Path:
    """The official GPT-2 BPE files: ../shared/data/gpt2 here, data/gpt2 after download_data.sh."""
    for candidate in (SHARED_DATA / "gpt2", ROOT / "data" / "gpt2"):
        if (candidate / "encoder.json").is_file():
            return candidate
    pytest.skip("GPT-2 BPE files not available")


@pytest.fixture(scope="session")
def tokenizer(vocab_dir):
    from gpt2_lora.tokenizer import Tokenizer

    return Tokenizer(vocab_dir)


# -------------------------------------------------------------------------------------------- upstream
class Upstream:
    """microsoft/LoRA's examples/NLG/src. ``upstream("gpt2_beam")`` imports a module of it by its own name with
    that folder on sys.path, then takes upstream's modules back out of sys.modules (and puts back whatever held
    those names before), so upstream's ``model`` / ``data_utils`` / ``gpu`` never shadow anything, nor are
    shadowed; modules imported once are shared by later imports. ``copy`` puts scripts in a folder of their own
    for a subprocess run."""

    def __init__(self, src: Path):
        self.src = src
        self.names = {p.stem for p in src.glob("*.py")}
        self.modules: dict[str, object] = {}

    def __call__(self, name: str):
        if name not in self.modules:
            self._import(name)
        return self.modules[name]

    def _import(self, name: str) -> None:
        others = {n: sys.modules.pop(n) for n in self.names if n in sys.modules}
        sys.modules.update(self.modules)
        sys.path.insert(0, str(self.src))
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name in self.names:
                raise
            pytest.skip(f"upstream {name}.py needs {error.name}")
        finally:
            sys.path.remove(str(self.src))
            for n in self.names:
                if n in sys.modules:
                    self.modules[n] = sys.modules.pop(n)
            sys.modules.update(others)

    def copy(self, dest: Path, *names: str) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy(self.src / name, dest / name)
        return dest


@pytest.fixture(scope="session")
def upstream() -> Upstream:
    if not (UPSTREAM_NLG_SRC / "model.py").is_file():
        pytest.skip(REQUIREMENTS["upstream"][1])
    return Upstream(UPSTREAM_NLG_SRC)


# ------------------------------------------------------------------------------------ shared tiny models
@pytest.fixture(scope="module")
def one_thread():
    # the CI box has 2 cores shared by many jobs; one thread is several times faster here
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def train_files(tmp_path_factory) -> Path:
    """The copy task: train.jsonl (16 examples), valid.jsonl (8) and TINY's config.json."""
    return helpers.write_copy_task(tmp_path_factory.mktemp("train"))


@pytest.fixture(scope="session")
def hf_dir(tmp_path_factory):
    """A random HF GPT-2 (REAL_VOCAB_TINY) saved by save_pretrained (safetensors), plus the same weights as a
    pytorch_model.bin with HF keys and as a legacy hub .bin (no 'transformer.', attn mask buffers):
    (folder, the transformers model)."""
    pytest.importorskip("transformers")
    hf = helpers.hf_gpt2(0, **helpers.REAL_VOCAB_TINY)
    path = tmp_path_factory.mktemp("hf")
    hf.save_pretrained(path)
    state = hf.state_dict()
    (path / "bin").mkdir()
    torch.save(state, path / "bin" / "pytorch_model.bin")
    legacy = {k.removeprefix("transformer."): v for k, v in state.items() if k != "lm_head.weight"}
    for i in range(helpers.REAL_VOCAB_TINY["n_layer"]):
        legacy[f"h.{i}.attn.bias"] = torch.ones(128, 128).tril().view(1, 1, 128, 128)
        legacy[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(legacy, path / "legacy.bin")
    return path, hf


class Adapter(NamedTuple):
    path: Path  # model.10.pt with its description, over tiny_base
    undescribed: Path  # the same weights without one (as written before descriptions existed)
    model: torch.nn.Module  # the model they come from


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    """A random HF GPT-2 (HF_TINY) written by transformers' save_pretrained."""
    pytest.importorskip("transformers")
    return helpers.hf_base(tmp_path_factory.mktemp("base") / "hf")


@pytest.fixture(scope="module")
def tiny_adapter(tiny_base, tmp_path_factory) -> Adapter:
    """A LoRA adapter (r 2, alpha 8, nonzero B) over tiny_base, as training saves it."""
    folder = tmp_path_factory.mktemp("adapter")
    model = helpers.lora_model(tiny_base, r=2, alpha=8)
    return Adapter(helpers.save_adapter(model, folder / "model.10.pt", tiny_base),
                   helpers.save_adapter(model, folder / "old.pt", None, False), model)


@pytest.fixture(scope="session")
def beam_model():
    """helpers.pattern_model(): trained once per process."""
    return helpers.pattern_model()


@pytest.fixture(scope="session")
def beam_contexts() -> list[list[int]]:
    return helpers.pattern_contexts()
