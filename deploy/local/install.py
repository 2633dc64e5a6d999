"""Installs what the stack needs, once, and caches it: Debian packages, Kafka jars, TimescaleDB.

Nothing here names a package repository: the Debian mirror is read from the machine's own apt
sources, and Maven uses its configured central repository.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from pilotstream.errors import PilotstreamError

APT_PACKAGES = (
    "mosquitto",
    "mosquitto-clients",
    "kcat",
    "postgresql-15",
    "postgresql-server-dev-15",
    "build-essential",
    "cmake",
    "dpkg-dev",
    "libssl-dev",
    "maven",
    "openjdk-17-jre-headless",
)
PG_CONFIG = Path("/usr/lib/postgresql/15/bin/pg_config")
Say = Callable[[str], None]


class InstallError(PilotstreamError):
    """An install step failed; the message carries the output tail and how to retry."""

    reason = "install_failed"


def _run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        out = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        msg = f"`{' '.join(cmd)}` failed with exit code {proc.returncode}:\n{out}"
        raise InstallError(msg)
    return proc.stdout


def missing_apt_packages(packages: tuple[str, ...] = APT_PACKAGES) -> list[str]:
    """Debian packages of the list that are not installed."""
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\n", *packages],
        capture_output=True,
        text=True,
        check=False,
    )
    installed = {ln.split()[0] for ln in proc.stdout.splitlines() if ln.split()[1:2] == ["ii"]}
    return [p for p in packages if p not in installed]


def ensure_apt_packages(say: Say) -> None:
    """apt-get install whatever is missing (needs root); fast when all are there."""
    missing = missing_apt_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        msg = f"missing Debian packages {missing}; run as root or install them: apt-get install ..."
        raise InstallError(msg)
    say(f"installing Debian packages: {' '.join(missing)}")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-q"], env=env)
    _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)


def debian_mirror() -> tuple[str, str]:
    """(mirror URI, keyring) of the machine's main Debian archive, read from its apt sources."""
    codename = _os_release().get("VERSION_CODENAME", "")
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = _deb822(stanza)
            suites = fields.get("Suites", "").split()
            if "deb" in fields.get("Types", "").split() and codename in suites:
                keyring = fields.get("Signed-By", "/usr/share/keyrings/debian-archive-keyring.gpg")
                return fields["URIs"].split()[0], keyring
    sources_list = Path("/etc/apt/sources.list")
    if sources_list.exists():
        for line in sources_list.read_text().splitlines():
            m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line.strip())
            if m and m.group(2) == codename:
                return m.group(1), "/usr/share/keyrings/debian-archive-keyring.gpg"
    msg = f"no Debian archive for {codename!r} found in the machine's apt sources"
    raise InstallError(msg)


def _deb822(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        if line.startswith("#") or ":" not in line or line.startswith(" "):
            continue
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def _os_release() -> dict[str, str]:
    out = {}
    for line in Path("/etc/os-release").read_text().splitlines():
        key, _, value = line.partition("=")
        out[key] = value.strip('"')
    return out


def timescaledb_installed() -> str | None:
    """Version of the TimescaleDB extension installed for PostgreSQL 15, or None."""
    sharedir = Path(_run([str(PG_CONFIG), "--sharedir"]).strip())
    control = sharedir / "extension" / "timescaledb.control"
    if not control.exists():
        return None
    m = re.search(r"default_version\s*=\s*'([^']+)'", control.read_text())
    pkglib = Path(_run([str(PG_CONFIG), "--pkglibdir"]).strip())
    if m and (pkglib / f"timescaledb-{m.group(1)}.so").exists():
        return m.group(1)
    return None


def ensure_timescaledb(cache: Path, suite: str, say: Say) -> str:
    """Build TimescaleDB (Apache edition) from Debian's source package of ``suite`` and install it."""
    version = timescaledb_installed()
    if version:
        return version
    mirror, keyring = debian_mirror()
    apt_dir = cache / "apt"
    for sub in ("lists/partial", "cache/archives/partial"):
        (apt_dir / sub).mkdir(parents=True, exist_ok=True)
    (apt_dir / "sources.list").write_text(f"deb-src [signed-by={keyring}] {mirror} {suite} main\n")
    opts = [
        "-o", f"Dir::Etc::SourceList={apt_dir / 'sources.list'}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={apt_dir / 'lists'}",
        "-o", f"Dir::Cache={apt_dir / 'cache'}",
    ]  # fmt: skip
    src = cache / "timescaledb-src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    say(f"fetching the timescaledb source package of Debian {suite}")
    _run(["apt-get", *opts, "update", "-q"])
    _run(["apt-get", *opts, "source", "--download-only", "timescaledb"], cwd=src)
    orig = next(src.glob("timescaledb_*.orig.tar.*"))
    _run(["tar", "xf", orig.name], cwd=src)
    tree = next(p for p in src.iterdir() if p.is_dir())
    say(f"building {tree.name} (Apache edition) against PostgreSQL 15")
    _run(
        [
            "./bootstrap",
            "-DAPACHE_ONLY=1",
            "-DREGRESS_CHECKS=OFF",
            "-DTAP_CHECKS=OFF",
            "-DWARNINGS_AS_ERRORS=OFF",
            "-DSEND_TELEMETRY_DEFAULT=NO",
            f"-DPG_CONFIG={PG_CONFIG}",
        ],
        cwd=tree,
    )
    _run(["make", f"-j{os.cpu_count() or 2}"], cwd=tree / "build")
    _run(["make", "install"], cwd=tree / "build")
    version = timescaledb_installed()
    if not version:
        msg = "TimescaleDB built but its control file or library is not where PostgreSQL looks"
        raise InstallError(msg)
    return version


def ensure_kafka_jars(pom: Path, cache: Path, libs: Path, say: Say) -> Path:
    """Resolve the broker's jars from Maven Central into ``libs`` (once per POM content)."""
    stamp = libs / ".pom-stamp"
    pom_text = pom.read_text()
    if stamp.exists() and stamp.read_text() == pom_text and any(libs.glob("kafka_2.13-*.jar")):
        return libs
    say("resolving Apache Kafka jars with Maven")
    shutil.rmtree(libs, ignore_errors=True)
    libs.mkdir(parents=True)
    _run(
        [
            "mvn", "-q", "-B", "-f", str(pom),
            f"-Dmaven.repo.local={cache / 'm2'}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ]
    )  # fmt: skip
    stamp.write_text(pom_text)
    return libs
