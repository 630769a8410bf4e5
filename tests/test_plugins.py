"""Plugin discovery through real entry points, clashes, broken plugins, environment control."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

import mmcore
from mmcore.errors import PluginError, SpecError
from mmcore.plugins.discovery import build_registry, new_plugin_manager
from mmcore.plugins.registry import Registry
from mmcore.version import DISTRIBUTION
from tests.toy import ToyPlugin


def make_dist(root: Path, dist: str, module: str, source: str, ep_name: str | None = None) -> None:
    """A minimal installed distribution: a module and a dist-info with an ``mmcore`` entry point."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[mmcore]\n{ep_name or module} = {module}\n")


GOOD = """
import mmcore

@mmcore.hookimpl
def register_modalities(register):
    register("{name}", "tests.toy:ToyModality", "tests.toy:ToyOptions", "toy")
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    for var in ("MMCORE_PLUGINS", "MMCORE_DISABLE_PLUGINS", "MMCORE_STRICT_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("mmtest_")]:
        del sys.modules[name]


def test_entry_point_plugin_is_discovered_with_its_distribution(site):
    make_dist(site, "mmtest-good", "mmtest_good", GOOD.format(name="goodmod"))
    registry = build_registry()
    reg = registry.get("modality", "goodmod")
    assert (reg.plugin, reg.distribution, reg.version) == ("mmtest_good", "mmtest-good", "1.2.3")
    assert reg.load().__name__ == "ToyModality"
    assert registry.plugins["mmtest_good"].provides == {"modality": ["goodmod"]}


def test_broken_import_is_reported_and_others_still_load(site):
    make_dist(site, "mmtest-good", "mmtest_good", GOOD.format(name="goodmod"))
    make_dist(site, "mmtest-broken", "mmtest_broken", "import not_a_module_xyz\n")
    registry = build_registry()
    assert registry.get("modality", "goodmod")
    info = registry.plugins["mmtest_broken"]
    assert info.status == "failed" and "not_a_module_xyz" in info.error
    with pytest.raises(PluginError, match="mmtest_broken.*failed to load"):
        registry.get("modality", "mmtest_broken")


def test_raising_hook_leaves_the_plugin_out_whole(site):
    make_dist(
        site,
        "mmtest-half",
        "mmtest_half",
        """
        import mmcore

        @mmcore.hookimpl
        def register_modalities(register):
            register("halfmod", "tests.toy:ToyModality")
            raise RuntimeError("boom")
    """,
    )
    registry = build_registry()
    assert "halfmod" not in registry.names("modality")
    assert registry.plugins["mmtest_half"].status == "failed"
    with pytest.raises(PluginError, match="mmtest_half.*failed to load.*boom"):
        registry.get("modality", "halfmod")


def test_unknown_hook_and_wrong_api_version_are_refused(site):
    make_dist(
        site,
        "mmtest-typo",
        "mmtest_typo",
        """
        import mmcore

        @mmcore.hookimpl
        def register_modalitys(register):
            pass
    """,
    )
    make_dist(
        site,
        "mmtest-future",
        "mmtest_future",
        "MMCORE_API_VERSION = 2\n" + textwrap.dedent(GOOD.format(name="futuremod")),
    )
    registry = build_registry()
    assert "register_modalitys" in registry.plugins["mmtest_typo"].error
    assert "API" in registry.plugins["mmtest_future"].error
    assert "futuremod" not in registry.names("modality")


def test_strict_mode_reraises(site, monkeypatch):
    make_dist(site, "mmtest-broken", "mmtest_broken", "import not_a_module_xyz\n")
    monkeypatch.setenv("MMCORE_STRICT_PLUGINS", "1")
    with pytest.raises(ModuleNotFoundError):
        build_registry()


def test_clash_names_both_distributions(site):
    make_dist(site, "mmtest-one", "mmtest_one", GOOD.format(name="same"))
    make_dist(site, "mmtest-two", "mmtest_two", GOOD.format(name="same"))
    registry = build_registry()
    with pytest.raises(PluginError, match="mmtest-one.*mmtest-two"):
        registry.get("modality", "same")
    assert ("modality", "same") in registry.clashes()


def test_environment_selects_plugins(site, monkeypatch):
    make_dist(site, "mmtest-one", "mmtest_one", GOOD.format(name="one"))
    make_dist(site, "mmtest-two", "mmtest_two", GOOD.format(name="two"))
    monkeypatch.setenv("MMCORE_PLUGINS", "")
    registry = build_registry()
    assert not {"one", "two"} & set(registry.names("modality"))
    assert "concat" in registry.names("fusion")  # the core's built-ins always load
    monkeypatch.setenv("MMCORE_PLUGINS", "mmtest_one")
    assert "one" in build_registry().names("modality")
    assert "two" not in build_registry().names("modality")
    monkeypatch.delenv("MMCORE_PLUGINS")
    monkeypatch.setenv("MMCORE_DISABLE_PLUGINS", "mmtest_two")
    registry = build_registry()
    assert "one" in registry.names("modality") and "two" not in registry.names("modality")
    assert registry.plugins["mmtest_two"].status == "disabled"


def test_registered_with_pm_register(toy_registry: Registry):
    assert toy_registry.names("modality") == ["toy", "toy2"]
    assert toy_registry.get("modality", "toy").distribution == "toy-dist"


def test_unknown_name_suggests_close_names_and_install_hint(toy_registry: Registry):
    with pytest.raises(PluginError, match="did you mean 'toy'"):
        toy_registry.get("modality", "tyo")
    with pytest.raises(PluginError, match="pip install mmcore-plugin-audio"):
        toy_registry.get("modality", "audio")


def test_builtin_registers_through_the_same_hooks():
    pm = new_plugin_manager()
    registry = Registry(pm)
    assert registry.get("fusion", "concat").plugin == "mmcore"
    assert registry.get("head", "classification").distribution == DISTRIBUTION == "mmcore-torch"


def test_sys_exit_at_import_or_in_a_hook_isolates_the_plugin(site):
    make_dist(site, "mmtest-good", "mmtest_good", GOOD.format(name="goodmod"))
    make_dist(site, "mmtest-quits", "mmtest_quits", "import sys\nsys.exit(7)\n")
    make_dist(
        site,
        "mmtest-hookquits",
        "mmtest_hookquits",
        """
        import sys
        import mmcore

        @mmcore.hookimpl
        def register_modalities(register):
            register("quitmod", "tests.toy:ToyModality")
            sys.exit(8)
    """,
    )
    registry = build_registry()
    assert registry.get("modality", "goodmod")
    quits = registry.plugins["mmtest_quits"]
    assert quits.status == "failed" and "sys.exit(7)" in quits.error
    hook = registry.plugins["mmtest_hookquits"]
    assert hook.status == "failed" and "sys.exit(8)" in hook.error
    assert "quitmod" not in registry.names("modality")


def test_sys_exit_in_strict_mode_is_a_plugin_error(site, monkeypatch):
    make_dist(site, "mmtest-quits", "mmtest_quits", "import sys\nsys.exit(7)\n")
    monkeypatch.setenv("MMCORE_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"mmtest_quits.*sys\.exit\(7\)"):
        build_registry()


def test_entry_point_name_clash_leaves_both_out_naming_both(site):
    make_dist(site, "mmtest-real", "mmtest_real", GOOD.format(name="realmod"), ep_name="image")
    make_dist(site, "mmtest-impostor", "mmtest_fake", GOOD.format(name="fakemod"), ep_name="image")
    registry = build_registry()
    info = registry.plugins["image"]
    assert info.status == "failed"
    assert "mmtest-impostor and mmtest-real" in info.error
    assert not {"realmod", "fakemod"} & set(registry.names("modality"))
    with pytest.raises(PluginError, match="image.*failed to load.*mmtest-impostor"):
        registry.get("modality", "image")


def test_entry_point_name_clash_in_strict_mode_raises(site, monkeypatch):
    make_dist(site, "mmtest-real", "mmtest_real", GOOD.format(name="realmod"), ep_name="image")
    make_dist(site, "mmtest-impostor", "mmtest_fake", GOOD.format(name="fakemod"), ep_name="image")
    monkeypatch.setenv("MMCORE_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="mmtest-impostor and mmtest-real"):
        build_registry()


def test_misspelt_hook_suggests_the_hook_meant(site):
    make_dist(
        site,
        "mmtest-typo",
        "mmtest_typo",
        """
        import mmcore

        @mmcore.hookimpl
        def register_fusion(register):
            pass

        @mmcore.hookimpl
        def frobnicate():
            pass
    """,
    )
    error = build_registry().plugins["mmtest_typo"].error
    assert "register_fusion (did you mean register_fusions?)" in error
    assert "frobnicate" in error and "frobnicate (did" not in error


class EpochLog:
    """A callback a plugin provides: the trainer creates it with no arguments, so what it
    saw is kept on the class."""

    seen: list[int] = []

    @mmcore.hookimpl
    def on_epoch_end(self, trainer, epoch, metrics):
        EpochLog.seen.append(epoch)


class Components:
    """A third-party plugin providing a fusion, a head and a callback under its own names,
    by import path as a distribution registers them (the fusion and head are built-in
    classes: what is under test is the route from the hook to a spec, not the classes)."""

    @mmcore.hookimpl
    def register_fusions(self, register):
        register("joined", "mmcore.fusions.concat:ConcatFusion",
                 "mmcore.fusions.options:ConcatOptions", "concatenation, by another name")

    @mmcore.hookimpl
    def register_heads(self, register):
        register("scores", "mmcore.heads.regression:RegressionHead",
                 "mmcore.heads.options:RegressionOptions", "regression, by another name")

    @mmcore.hookimpl
    def register_callbacks(self, register):
        register("epochs", "tests.test_plugins:EpochLog", description="records epoch numbers")


@pytest.fixture
def components() -> Registry:
    pm = new_plugin_manager()
    pm.register(ToyPlugin(), name="toy")
    pm.register(Components(), name="components")
    return Registry(pm, distributions={"components": ("mmcore-components", "0.3")})


def _components_spec(fusion_options=None, head_options=None, callbacks=("epochs",)):
    return {
        "data": {"path": "rows.csv"},
        "modalities": {"a": {"plugin": "toy", "column": "a"}},
        "fusion": {"name": "joined", "options": fusion_options or {"size": 6}},
        "heads": {"y": {"kind": "scores", "target": "y", "options": head_options or {}}},
        "train": {"callbacks": list(callbacks)},
    }


@pytest.mark.parametrize(("kind", "name"),
                         [("fusion", "joined"), ("head", "scores"), ("callback", "epochs")])
def test_registration_hooks_record_the_plugin_and_its_distribution(components, kind, name):
    entry = components.get(kind, name)
    assert (entry.plugin, entry.distribution, entry.version) == (
        "components", "mmcore-components", "0.3")
    assert isinstance(entry.impl, str)  # imported on use, not at registration
    assert components.plugins["components"].provides[kind] == [name]


def test_a_fusion_and_head_registered_by_a_plugin_build_by_name(components):
    from mmcore.fusions.concat import ConcatFusion
    from mmcore.heads.regression import RegressionHead
    from mmcore.model import build_model

    with pytest.raises(SpecError) as err:
        mmcore.validate_spec(_components_spec({"size": 0}, {"loss": "cubic"}), registry=components)
    assert {"fusion.options.size", "heads.y.options.loss"} <= dict(err.value.problems).keys()
    spec = mmcore.validate_spec(_components_spec(), registry=components)
    model = build_model(spec, registry=components)
    assert type(model.fusion) is ConcatFusion and model.fusion.output_size == 6
    assert type(model.heads["y"]) is RegressionHead


def test_a_callback_registered_by_a_plugin_receives_trainer_events(components, monkeypatch):
    from mmcore.train.callbacks import callback_manager

    with pytest.raises(SpecError, match="train.callbacks.0"):
        mmcore.validate_spec(_components_spec(callbacks=["epoch"]), registry=components)
    mmcore.validate_spec(_components_spec(), registry=components)
    monkeypatch.setattr(EpochLog, "seen", [])
    pm = callback_manager(["epochs"], components)
    pm.hook.on_epoch_end(trainer=None, epoch=4, metrics={})
    assert EpochLog.seen == [4]
    assert any(isinstance(p, EpochLog) for p in pm.get_plugins())
