"""A package people can install (issue 17, item 8).

The sdist and the wheel are built here as a release would build them, from the files git
would commit (copied to a temporary folder, so the working tree is not written to), with
``python -m build --no-isolation``: the setuptools of this environment, no download. Then:
the build says nothing about warnings; the sdist holds every file of the repository and
its tests pass from it; the wheel holds the package, its data and the LICENSE; the
metadata needs the Redis client only for the ``redis`` extra; the package index's page
(README-pypi.md, made absolute by setup.py) has no relative link and every link points
into the one repository setup.cfg names; the version is the changelog's newest release.
A Redis storage without the Redis client stops ``init_app`` with a message naming the
extra, in a Python where ``import redis`` fails as it does when redis was never installed.
"""

from __future__ import annotations

import configparser
import email
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest

import flask_smtp_senders

ROOT = Path(__file__).resolve().parent.parent.parent
SETUP_CFG = configparser.ConfigParser()
SETUP_CFG.read(ROOT / "setup.cfg", encoding="utf-8")
URL = SETUP_CFG["metadata"]["url"]
VERSION = SETUP_CFG["metadata"]["version"]
#: The extras a host picks from (the others, test, demo and bench, are this repository's).
HOST_EXTRAS = ["postgres", "redis", "valkey", "celery", "flask-admin"]
DEVELOPER_EXTRAS = ["test", "demo", "bench"]
#: Every link target of a Markdown text: inline ``[text](target)``, ``![alt](target)``,
#: reference ``[name]: target``, and HTML ``src=``/``href=``.
LINK_TARGETS = re.compile(r"\]\(\s*<?([^)\s>]+)|^\s*\[[^\]]+\]:\s*<?(\S+?)>?\s*$"
                          r"|\b(?:src|href)\s*=\s*[\"']([^\"']+)", re.MULTILINE)


def _git_files() -> list[str]:
    """What a release would ship from: every file git tracks or would commit (untracked,
    not ignored) that exists in the working tree."""
    if not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout (the sdist is built from one)")
    listed = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",  # noqa: S607
         "--exclude-standard"], capture_output=True, check=True).stdout.decode()
    return sorted(name for name in set(listed.split("\0")) if name and (ROOT / name).is_file())


@dataclass
class Build:
    files: list[str]  # what the sdist was built from
    output: str
    sdist: Path
    wheel: Path

    def sdist_names(self) -> set[str]:
        prefix = f"flask_smtp_senders-{VERSION}/"
        with tarfile.open(self.sdist) as archive:
            return {member.name.removeprefix(prefix) for member in archive.getmembers()
                    if member.isfile()}

    def wheel_names(self) -> set[str]:
        with zipfile.ZipFile(self.wheel) as archive:
            return set(archive.namelist())

    def metadata(self) -> Message:
        with zipfile.ZipFile(self.wheel) as archive:
            text = archive.read(f"flask_smtp_senders-{VERSION}.dist-info/METADATA")
        return email.message_from_bytes(text)


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    files = _git_files()
    source = tmp_path_factory.mktemp("source")
    for name in files:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    dist = tmp_path_factory.mktemp("dist")
    # PYTHONDONTWRITEBYTECODE makes setuptools say "byte-compiling is disabled": a
    # warning about this environment, not about the package.
    env = {key: value for key, value in os.environ.items()
           if key != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist),
         str(source)], capture_output=True, text=True, env=env, timeout=120)
    output = done.stdout + done.stderr
    sdists, wheels = sorted(dist.glob("*.tar.gz")), sorted(dist.glob("*.whl"))
    assert done.returncode == 0 and len(sdists) == len(wheels) == 1, output
    return Build(files, output, sdists[0], wheels[0])


# -- the build ---------------------------------------------------------------------------


def test_the_build_gives_no_warning(build):
    """No setuptools deprecation, no "package would be ignored", no MANIFEST.in pattern
    that matched nothing: any line saying warning, in any case, fails."""
    assert "Successfully built" in build.output
    warnings = [line for line in build.output.splitlines() if re.search("warning", line, re.I)]
    assert warnings == []


def test_the_sdist_holds_every_file_of_the_repository(build):
    """Tests, their support files, the docs, the example portal, the LICENSE: a file git
    would commit but MANIFEST.in leaves out fails here. Nothing compiled goes in."""
    names = build.sdist_names()
    missing = sorted(set(build.files) - {".gitignore"} - names)
    assert missing == [], "add them to MANIFEST.in"
    assert {"LICENSE", "tests/conftest.py", "tests/docs/test_packaging.py", "setup.py",
            "README-pypi.md", "docs/install.md", "Makefile"} <= names
    assert [name for name in names if "__pycache__" in name or name.endswith(".pyc")] == []
    extra = {name for name in names - set(build.files)
             if name != "PKG-INFO" and not name.startswith("flask_smtp_senders.egg-info/")}
    assert extra == set()


def test_the_tests_run_from_the_unpacked_sdist(build, tmp_path):
    """The sdist's own tests pass against the sdist's own package (not this checkout's):
    every test module of the suite imports and collects, and the documentation tests,
    which read docs/, mkdocs.yml and the templates, pass."""
    with tarfile.open(build.sdist) as archive:
        archive.extractall(tmp_path, filter="data")
    unpacked = tmp_path / f"flask_smtp_senders-{VERSION}"
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    where = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-c", "import flask_smtp_senders; print(flask_smtp_senders.__file__)"],
        cwd=unpacked, env=env, capture_output=True, text=True, check=True).stdout
    assert Path(where.strip()).is_relative_to(unpacked)
    pytest_command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    logs = [tmp_path / "collect.log", tmp_path / "docs.log"]
    runs = []
    for log, arguments in zip(logs, (["--collect-only", "tests"], ["tests/docs", "--ignore",
                                     "tests/docs/test_packaging.py"]), strict=True):
        with log.open("w") as out:  # both at once; files, so that no pipe fills up
            runs.append(subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
                [*pytest_command, *arguments], cwd=unpacked, env=env, stdout=out,
                stderr=subprocess.STDOUT))
    for run in runs:
        run.wait(timeout=120)
    collected, ran = (log.read_text() for log in logs)
    assert runs[0].returncode == 0, collected[-3000:]
    assert re.search(r"^\d{4,} tests collected", collected, re.MULTILINE), collected[-500:]
    assert runs[1].returncode == 0, ran[-3000:]
    assert re.search(r"\d+ passed", ran)


def test_the_wheel_holds_the_package_its_data_and_the_license(build):
    names = build.wheel_names()
    info = f"flask_smtp_senders-{VERSION}.dist-info/"
    package = {name for name in build.files if name.startswith("flask_smtp_senders/")}
    assert sorted(package - names) == [], "add them to package_data in setup.cfg"
    assert {name for name in names if not name.startswith(("flask_smtp_senders/", info))} \
        == set()  # no tests, no example portal
    assert f"{info}licenses/LICENSE" in names
    with zipfile.ZipFile(build.wheel) as archive:
        shipped = archive.read(f"{info}licenses/LICENSE").decode()
    assert shipped == (ROOT / "LICENSE").read_text() and shipped.startswith("MIT License")


# -- the metadata ------------------------------------------------------------------------


def _requirements(metadata: Message) -> list[tuple[str, str]]:
    """(requirement, extra or "") for every Requires-Dist."""
    found = []
    for line in metadata.get_all("Requires-Dist") or []:
        requirement, _, marker = line.partition(";")
        extra = re.search(r"extra\s*==\s*[\"']([^\"']+)", marker)
        found.append((requirement.strip(), extra.group(1) if extra else ""))
    return found


def test_the_redis_client_is_only_in_an_extra(build):
    requirements = _requirements(build.metadata())
    plain = [requirement for requirement, extra in requirements if not extra]
    assert "limits>=5.0" in plain
    assert [name for name in plain if re.match(r"(limits\[|redis\b|valkey\b)", name)] == []
    assert ("limits[redis]>=5.0", "redis") in requirements
    assert ("limits[valkey]>=5.0", "valkey") in requirements


def test_the_metadata_names_license_urls_and_extras(build):
    metadata = build.metadata()
    assert metadata["Name"] == "flask-smtp-senders" and metadata["Version"] == VERSION
    assert metadata["License"] == "MIT" and metadata["License-File"] == "LICENSE"
    assert metadata["Home-page"] == URL and URL.startswith("https://")
    urls = dict(line.split(", ", 1) for line in metadata.get_all("Project-URL"))
    assert set(urls) == {"Documentation", "Changelog", "Source", "Issues"}
    assert all(url.startswith(URL) for url in urls.values()), urls
    assert sorted(metadata.get_all("Provides-Extra")) == sorted(HOST_EXTRAS + DEVELOPER_EXTRAS), \
        "a new extra for hosts goes in HOST_EXTRAS, docs/install.md and README-pypi.md"
    assert metadata["Description-Content-Type"] == "text/markdown"


# -- the package index's page ------------------------------------------------------------


def _repository_file(link: str) -> str | None:
    """``docs/x.md`` for ``{URL}/blob/main/docs/x.md`` (or ``/raw/``), else None."""
    match = re.fullmatch(re.escape(URL) + r"/(?:blob|raw)/main/([^#?]+)(?:#.*)?", link)
    return match.group(1) if match else None


def test_the_long_description_has_no_relative_link(build):
    """Every link and image of the page is an absolute https URL; those into the
    repository are files that exist there, images as raw bytes."""
    description = build.metadata().get_payload()
    links = [next(filter(None, groups)) for groups in LINK_TARGETS.findall(description)]
    assert len(links) >= 12  # the screenshots, every docs page, the LICENSE
    assert [link for link in links if not link.startswith("https://")] == []
    into = {link: _repository_file(link) for link in links if link.startswith(URL + "/")}
    assert [link for link, path in into.items() if path is None] == []
    assert [path for path in into.values() if path not in build.files] == []
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)", description)
    assert images and all(f"{URL}/raw/main/" in image for image in images)
    # and the page is README-pypi.md's, link for link
    source = (ROOT / "README-pypi.md").read_text()
    assert re.sub(r"\([^)\s]+\)", "()", description) == re.sub(r"\([^)\s]+\)", "()", source)


def test_the_long_description_is_for_hosts_first(build):
    """It opens with what the extension is and how to install it, with every host extra;
    the developer's ``make demo`` and ``make test`` (README.md's first lines) are not in it."""
    description = build.metadata().get_payload()
    assert description.startswith("# flask-smtp-senders\n\nA Flask extension")
    sections = re.findall(r"^## (.+)$", description, re.MULTILINE)
    assert sections[:2] == ["Install", "The two lines"]
    assert "\npip install flask-smtp-senders\n" in description.split("\n## ")[1]
    for extra in HOST_EXTRAS:
        assert f"| `{extra}` |" in description
    assert "pip install 'flask-smtp-senders[postgres,redis,celery]'" in description
    assert "make demo" not in description and "make test" not in description


def test_readme_still_starts_with_make_demo_and_make_test():
    """README.md is the repository's page: its first block gives the developer's two
    commands first (the package index gets README-pypi.md instead)."""
    first_block = (ROOT / "README.md").read_text().split("```")[1].splitlines()
    commands = [line.split("#")[0].strip() for line in first_block[1:] if line.strip()]
    assert [command for command in commands if command][:2] == ["make demo", "make test"]


@pytest.mark.parametrize("extra", HOST_EXTRAS)
def test_the_install_page_tells_when_each_host_extra_is_needed(extra):
    page = (ROOT / "docs" / "install.md").read_text()
    assert f"| `{extra}` |" in page
    assert extra in SETUP_CFG["options.extras_require"]


# -- the version -------------------------------------------------------------------------


def test_the_version_is_the_changelogs_newest_release(build):
    """setup.cfg's version, the built wheel's, ``flask_smtp_senders.__version__`` (read
    from the installed metadata) and the first ``## x.y.z`` heading of the changelog (after
    *Unreleased*) are one number."""
    headings = re.findall(r"^## (\S+)\s*$", (ROOT / "docs" / "changelog.md").read_text(), re.M)
    releases = [heading for heading in headings if re.fullmatch(r"\d+(\.\d+)+", heading)]
    assert releases and headings[0] in ("Unreleased", releases[0])
    assert releases[0] == VERSION == build.metadata()["Version"]
    assert flask_smtp_senders.__version__ == VERSION, "reinstall: pip install -e '.[test]'"


# -- a Redis URL without the Redis client ------------------------------------------------

#: A host's app with a Redis rate-limit storage, built in a fresh Python. With ``hide``,
#: ``import redis`` fails there as it does when redis was never installed.
HOST_WITH_REDIS = r'''
import importlib.abc, json, sys

class NeverInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "redis":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

if sys.argv[1] == "hide":
    sys.meta_path.insert(0, NeverInstalled())

from cryptography.fernet import Fernet
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from limits.errors import ConfigurationError as LimitsConfigurationError
from limits.storage import storage_from_string

from flask_smtp_senders import ConfigurationError, SMTPSenders

URI = "redis://:s3cret-pass@127.0.0.1:6379/0"
app = Flask("portal")
app.config.update(SECRET_KEY="k", SQLALCHEMY_DATABASE_URI="sqlite://",
                  SMTP_SENDERS_ENCRYPTION_KEYS=[Fernet.generate_key().decode()],
                  SMTP_SENDERS_RATELIMIT_STORAGE_URI=URI)
answer = {}
try:
    SMTPSenders(app, db=SQLAlchemy(app))
    answer["init_app"] = "ok"
except ConfigurationError as exc:
    answer["init_app"] = str(exc)
try:  # what limits itself says, at the first counted request
    storage_from_string(URI)
    answer["limits"] = "ok"
except LimitsConfigurationError as exc:
    answer["limits"] = str(exc)
print(json.dumps(answer))
'''


def test_a_redis_url_without_the_redis_client_stops_init_app_naming_the_extra():
    """The same host app, in two fresh Pythons: with redis importable init_app passes (and
    connects to nothing); with redis missing, init_app raises a ConfigurationError naming
    the setting and the extra, and not the URL's password. Without this check limits would
    only fail when the storage is built, at the first Send Test Email, naming no extra."""
    runs = {mode: subprocess.Popen(  # noqa: S603 - this interpreter, fixed code
        [sys.executable, "-c", HOST_WITH_REDIS, mode], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for mode in ("keep", "hide")}
    answers = {}
    for mode, run in runs.items():
        out, err = run.communicate(timeout=60)
        assert run.returncode == 0, err
        answers[mode] = json.loads(out)
    assert answers["keep"] == {"init_app": "ok", "limits": "ok"}
    message = answers["hide"]["init_app"]
    assert message.startswith("SMTP_SENDERS_RATELIMIT_STORAGE_URI is a redis:// URL")
    assert "pip install 'flask-smtp-senders[redis]' (the `redis` extra)" in message
    assert "s3cret-pass" not in message
    assert "prerequisite not available" in answers["hide"]["limits"]
    assert "flask-smtp-senders" not in answers["hide"]["limits"]


def test_a_valkey_url_without_the_valkey_client_names_the_valkey_extra():
    """valkey is not installed here (no extra of the test environment brings it), so this
    is the real thing, in this process."""
    from cryptography.fernet import Fernet
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy

    from flask_smtp_senders import ConfigurationError, SMTPSenders

    try:
        import valkey  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("valkey is installed")
    app = Flask("portal")
    app.config.update(SECRET_KEY="k", SQLALCHEMY_DATABASE_URI="sqlite://",
                      SMTP_SENDERS_ENCRYPTION_KEYS=[Fernet.generate_key().decode()],
                      SMTP_SENDERS_RATELIMIT_STORAGE_URI="valkeys://:pw@127.0.0.1:6380/0")
    with pytest.raises(ConfigurationError) as error:
        SMTPSenders(app, db=SQLAlchemy(app))
    assert "valkeys:// URL but the valkey client library is not installed" in str(error.value)
    assert "pip install 'flask-smtp-senders[valkey]'" in str(error.value)
