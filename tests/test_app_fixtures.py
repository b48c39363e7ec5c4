"""The shared fixtures keep a developer's own RESNET_EXPLORER_* settings away from AppTests and served apps."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO, SETTINGS_PREFIX, server_environment
from streamlit.testing.v1 import AppTest

from resnet_core.runs import settings


@pytest.fixture(scope="module")
def developer_home(tmp_path_factory) -> Iterator[Path]:
    """A developer's own data folder and settings in the environment, set before any test's fixtures run (a
    module's fixtures start before a test's), as a shell's exports would be."""
    home = tmp_path_factory.mktemp("developer-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(settings.HOME_VARIABLE, str(home))
        patch.setenv(settings.PER_USER_VARIABLE, "7")
        yield home


def test_an_apptest_gets_a_fresh_data_folder_and_none_of_the_developers_settings(developer_home, app_clear_caches,
                                                                                  app_torch_threads):
    assert settings.PER_USER_VARIABLE not in os.environ
    home = Path(os.environ[settings.HOME_VARIABLE])
    assert home != developer_home
    at = AppTest.from_file(str(REPO / "pages" / "4_Runs.py"), default_timeout=60).run()
    assert at.info[0].value.startswith("No runs yet")
    assert (home / "runs.sqlite").exists()  # the page opened its store in the test's folder
    assert not any(developer_home.iterdir())


def test_a_server_gets_only_the_settings_its_fixtures_chose(app_server_settings, monkeypatch, tmp_path):
    monkeypatch.setenv(settings.HOME_VARIABLE, str(tmp_path / "developer-home"))
    monkeypatch.setenv(settings.PER_USER_VARIABLE, "7")
    environment = server_environment(app_server_settings)
    chosen = {name: value for name, value in environment.items() if name.startswith(SETTINGS_PREFIX)}
    assert chosen == app_server_settings  # neither the developer's folder nor their per-person limit
