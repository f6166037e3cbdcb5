"""The backup user attacks a root night: each test FAILS where the product is vulnerable and PASSES once fixed.

cback3 runs the store action as root, but the staged day belongs to the backup user (stage chowns it), and in
legacy ``<encrypt>`` mode so does the work area. The attacker here is a real process of a real unprivileged
account (``attackkit.ATTACKER``) running a script from ``tests/attackers/``; its goal is a root-only file
(``/root/cedar-attack-*/secret``, 0600). A defended night either fails (no indicator, the previous copy of the
day intact) or stores only what was legitimately staged; either way the secret's bytes are in no object of the
bucket and the secret's owner, mode and content are unchanged. Nights that could hang run in a child process
with a deadline; a hang is the product's failure.

Run as root: ``python -m pytest tests/test_attacks.py`` (about 4 minutes today, most of it the FIFO and hang
tests waiting out their wall limits), or ``-m "not slow"`` for the deterministic attacks (about 12 s).
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from attackkit import (
    ATTACKERS,
    Attacker,
    ChildNight,
    RootTarget,
    attackNight,
    attackTree,
    bucketContains,
    cback3Argv,
    cback3Env,
    chownTree,
    dayObjects,
    defenceFailures,
    descendants,
    ensureAttacker,
    isIndicator,
    killAll,
    processesMatching,
    rootTarget,
    runNight,
    stageFiles,
    stopAgent,
    storeGoodNight,
    waitFor,
)
from faultkit import keyPath, onceFired
from faultproxy import FaultProxy, delay
from gpgkit import decrypt, newHome, writePassphraseFile
from nightkit import MotoServer, Night, environment, newBucketName

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="the attacks need root and a real backup user")]
NEEDS_CBACK3 = pytest.mark.skipif(shutil.which("cback3") is None, reason="cback3 is not on PATH")

# The deadline setting: a night must not wait forever on gpg or an <encrypt> command (10 s is its smallest value).
CHILD_DEADLINE: dict[str, str] = {"child_timeout": "10"}
HANG_WALL_LIMIT = 120.0  # seconds a night under a hanging child may take before the test calls it hung
FIFO_WALL_LIMIT = 60.0  # seconds a night with a FIFO in its staged day may take (a good night takes ~2 s)
NIGHT_WALL_LIMIT = 120.0  # any other child night
RACE_ROUNDS = 50
HANG_SECONDS = 100_000 + secrets.randbelow(100_000)  # the hanging command's, unique: its leftovers can be found
SWAP_DELAY = 2.0  # seconds the marker PUT is held: the listing is done, no staged file is read yet
COPY = "cp ${input} ${output}"  # an <encrypt> command whose "ciphertext" is the plaintext, so leaks are visible


def legitimateFiles(secretSize: int = 0) -> dict[str, bytes]:
    """The day as collect and stage leave it; ``notes.txt`` gets the secret's size, so a swap keeps the size."""
    notes = b"meeting notes\n" * 8
    if secretSize:
        notes = (notes * (secretSize // len(notes) + 1))[:secretSize]
    return {"localhost/notes.txt": notes, "localhost/blob.tar": os.urandom(40_000)}


# -- fixtures ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def attacker() -> pwd.struct_passwd:
    return ensureAttacker()


@pytest.fixture
def tree(attacker: pwd.struct_passwd) -> Iterator[Path]:
    with attackTree(attacker) as root:
        yield root


@pytest.fixture
def target() -> Iterator[RootTarget]:
    with rootTarget() as made:
        yield made


@pytest.fixture
def night(tree: Path, bucket: str, endpoint: str, attacker: pwd.struct_passwd) -> Night:
    """Overrides conftest's: under /var/tmp/cedar-attack-*, the attacker as backup user (conftest's proxy uses it)."""
    return attackNight(tree, bucket, endpoint, attacker)


@pytest.fixture
def swapper(attacker: pwd.struct_passwd) -> Iterator[Attacker]:
    with Attacker(attacker, "swapper.py") as hands:
        yield hands


@pytest.fixture
def tempDir(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A short, fresh temp dir for the night's private GnuPG homes (in-process: ``tempfile``; children: TMPDIR)."""
    tmp_path_factory.getbasetemp()  # pytest's own tmp dirs come from tempfile too: settle them first
    path = Path(tempfile.mkdtemp(prefix="cs3a-", dir="/tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    try:
        yield path
    finally:
        for home in path.glob("cedar-s3-gnupg-*"):
            stopAgent(home)  # a killed night's agent; the product's own are stopped by the product
        shutil.rmtree(path, ignore_errors=True)


def swapWhenMarkerHeld(proxy: FaultProxy, swap: Callable[[], str]) -> tuple[threading.Thread, list[str]]:
    """Hold the first PUT (the day's incomplete marker: after the listing, before any file is read) and swap then.

    The reply list gets the attacker's answer, ``ok`` only if the marker was still unanswered after the swap (so
    the night cannot have read a staged file yet).
    """
    rule = proxy.add_rule(delay(SWAP_DELAY), method="PUT", first=1)
    replies: list[str] = []

    def swapWhileHeld() -> None:
        reply = swap()
        marker = next(record for record in proxy.records if record.action == "delay")
        replies.append(reply if marker.status is None else f"{reply}, but only after the marker PUT was answered")

    thread = onceFired(lambda: rule.injected >= 1, swapWhileHeld, timeout=NIGHT_WALL_LIMIT)
    return thread, replies


def childNight(night: Night, tempDir: Path, path: str = "", **env: str) -> ChildNight:
    return ChildNight(cback3Argv(night, night.root / "cback3.log"), cback3Env(tempDir, path, **env)).start()


def report(problems: list[str], child: ChildNight | None = None) -> str:
    return "\n".join(problems) + (f"\n--- cback3 output:\n{child.text()[-3000:]}" if child else "")


# -- 1. legacy <encrypt>: the work area races ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode",
    [
        pytest.param("sample", id="self-check-sample-swapped-for-symlink"),
        pytest.param("area", id="work-area-swapped-for-symlink"),
    ],
)
def test_attack1_work_area_races_never_reach_root_files(
    mode: str, night: Night, s3: Any, target: RootTarget, attacker: pwd.struct_passwd
) -> None:
    """Root creates ``self-check.txt`` in the backup user's work area, then writes and chowns it by path; and it
    chmods and chowns the work area itself by path. The attacker renames a symlink to the target over each, as
    soon as it appears, for ``RACE_ROUNDS`` nights in a row. Not one night may change the target or leak it."""
    files = legitimateFiles()
    stageFiles(night, attacker, files)
    night.settings["encrypt"] = COPY
    previous = storeGoodNight(night, s3)
    aim = str(target.path) if mode == "sample" else str(target.path.parent)
    won: list[str] = []
    with Attacker(attacker, "racer.py", [mode, str(night.workDir), aim]) as racer:
        for number in range(RACE_ROUNDS):
            error = runNight(night)
            problems = defenceFailures(night, s3, target, previous, error is not None, files)
            if problems:
                won.append(f"round {number}: {'; '.join(problems)}")
            target.reset()
            if night.indicator().exists():
                night.indicator().unlink()
            previous = dayObjects(s3, night) if error is None else previous
        tally = racer.stop()
    assert won == [], f"the race won {len(won)} of {RACE_ROUNDS} nights ({tally.strip()}):\n" + "\n".join(won)


# -- 2. legacy <encrypt>: ${output} a symlink to a root-only file -------------------------------------------------


def test_attack2_encrypt_output_symlink_is_not_read_by_root(
    night: Night, s3: Any, target: RootTarget, attacker: pwd.struct_passwd
) -> None:
    """The command runs as the backup user and leaves ``${output}`` as a symlink to the target (as an attacker
    racing the real command would): root must not upload what the link points to."""
    files = legitimateFiles()
    stageFiles(night, attacker, files)
    night.settings["encrypt"] = COPY
    previous = storeGoodNight(night, s3)
    night.settings["encrypt"] = f"cp ${{input}} ${{output}}.real; ln -sf {target.path} ${{output}}"
    error = runNight(night)
    assert defenceFailures(night, s3, target, previous, error is not None, files) == []


@NEEDS_CBACK3
def test_attack2_encrypt_output_symlink_through_real_cback3(
    night: Night, s3: Any, target: RootTarget, attacker: pwd.struct_passwd, tempDir: Path
) -> None:
    """The same attack through the real ``cback3 --full amazons3`` as root (its ``su`` to the backup user)."""
    files = legitimateFiles()
    stageFiles(night, attacker, files)
    night.settings["encrypt"] = COPY
    previous = storeGoodNight(night, s3)
    night.settings["encrypt"] = f": ${{input}}; ln -s {target.path} ${{output}}"
    child = childNight(night, tempDir)
    try:
        status = child.wait(NIGHT_WALL_LIMIT)
        assert status is not None, "the night hung"
        problems = defenceFailures(night, s3, target, previous, status != 0, files)
        assert problems == [], report(problems, child)
    finally:
        child.close()


# -- 3. a symlink planted in the staged day -----------------------------------------------------------------------


def test_attack3_planted_symlink_to_root_file_is_not_stored(
    night: Night, s3: Any, target: RootTarget, attacker: pwd.struct_passwd, swapper: Attacker
) -> None:
    """``localhost/evil.txt -> /root/.../secret`` planted by the backup user before the night: upstream read the
    day through ``su`` as that user and could not follow it; root must not either."""
    files = legitimateFiles()
    day = stageFiles(night, attacker, files)
    previous = storeGoodNight(night, s3)
    assert swapper.command(op="symlink", path=str(day / "localhost" / "evil.txt"), target=str(target.path)) == "ok"
    error = runNight(night)
    assert defenceFailures(night, s3, target, previous, error is not None, files) == []


# -- 4. a staged file swapped for a symlink after the listing -----------------------------------------------------


def test_attack4_file_swapped_for_symlink_after_listing_is_not_read(
    night: Night, s3: Any, target: RootTarget, attacker: pwd.struct_passwd, swapper: Attacker, proxy: FaultProxy
) -> None:
    """``notes.txt`` has the target's size and mtime; once the day is listed (the marker PUT is held), the
    attacker renames a symlink to the target over it, so a stat by path sees nothing changed."""
    files = legitimateFiles(len(target.content))
    day = stageFiles(night, attacker, files)
    victim = day / "localhost" / "notes.txt"
    info = os.stat(target.path)
    os.utime(victim, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)
    previous = storeGoodNight(night, s3)
    thread, replies = swapWhenMarkerHeld(
        proxy, lambda: swapper.command(op="symlink", path=str(victim), target=str(target.path))
    )
    error = runNight(night)
    thread.join()
    assert replies == ["ok"], "the swap did not happen while the marker PUT was held"
    assert defenceFailures(night, s3, target, previous, error is not None, files) == []


# -- 5. a staged file swapped for a FIFO after the listing --------------------------------------------------------


@pytest.mark.slow
@NEEDS_CBACK3
def test_attack5_file_swapped_for_fifo_does_not_hang_the_night(
    night: Night,
    s3: Any,
    target: RootTarget,
    attacker: pwd.struct_passwd,
    swapper: Attacker,
    proxy: FaultProxy,
    tempDir: Path,
) -> None:
    """A FIFO nobody writes to, renamed over ``notes.txt`` after the listing: opening it by path blocks forever.
    The night (real cback3, in a child) must end within ``FIFO_WALL_LIMIT`` and record nothing as stored."""
    files = legitimateFiles()
    day = stageFiles(night, attacker, files)
    previous = storeGoodNight(night, s3)
    victim = day / "localhost" / "notes.txt"
    thread, replies = swapWhenMarkerHeld(proxy, lambda: swapper.command(op="fifo", path=str(victim)))
    child = childNight(night, tempDir)
    try:
        status = child.wait(FIFO_WALL_LIMIT)
        thread.join()
        assert replies == ["ok"], "the swap did not happen while the marker PUT was held"
        assert status is not None, f"the night hung on the FIFO for {FIFO_WALL_LIMIT:.0f} s and was killed"
        problems = defenceFailures(night, s3, target, previous, status != 0, files)
        assert problems == [], report(problems, child)
    finally:
        child.close()


# -- 6. the staged day itself a symlink ---------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["attacker-dir", "root-only-dir"])
def test_attack6_day_dir_swapped_for_symlink_is_not_followed(
    where: str,
    night: Night,
    s3: Any,
    target: RootTarget,
    attacker: pwd.struct_passwd,
    swapper: Attacker,
    tree: Path,
) -> None:
    """Stage chowns ``YYYY/MM`` to the backup user, so it can rename the day away and put a symlink in its place:
    to a day of its own making, or to a root-only dir holding a ``cback.stage`` (another config's staging dir).
    Nothing outside the staging dir may be read, and no indicator written into the link's target."""
    files = legitimateFiles()
    day = stageFiles(night, attacker, files)
    previous = storeGoodNight(night, s3)
    planted = f"PLANTED {os.urandom(8).hex()}\n".encode()
    if where == "attacker-dir":
        elsewhere = tree / "attacker-own" / "fakeday"
        (elsewhere / "localhost").mkdir(parents=True)
        (elsewhere / "localhost" / "notes.txt").write_bytes(planted)
        (elsewhere / "cback.stage").touch()
        chownTree(tree / "attacker-own", attacker)
    else:
        elsewhere = target.path.parent
        (elsewhere / "cback.stage").touch()
    aside = day.with_name(day.name + ".orig")
    assert swapper.command(op="dirlink", path=str(day), target=str(elsewhere), aside=str(aside)) == "ok"
    error = runNight(night)
    problems = defenceFailures(night, s3, target, previous, error is not None, files)
    if bucketContains(s3, night.bucket, planted):
        problems.append("the night stored files from outside the staging dir")
    if os.path.lexists(elsewhere / "cback.amazons3"):
        problems.append(f"the store indicator was written into {elsewhere}")
    assert problems == []


# -- 7. hanging children ------------------------------------------------------------------------------------------


def hangingNight(
    night: Night, s3: Any, attacker: pwd.struct_passwd, target: RootTarget, how: str, files: dict[str, bytes]
) -> dict[str, bytes]:
    """A good night stored, then the settings that make the next one wait on a child that never answers."""
    stageFiles(night, attacker, files)
    if how == "gpg":
        previous = storeGoodNight(night, s3)
        passphrase = writePassphraseFile(target.path.parent / "passphrase")
        night.settings |= {"gpg_passphrase_file": str(passphrase), "gpg_s2k_count": 65536}
    else:
        night.settings["encrypt"] = COPY
        previous = storeGoodNight(night, s3)
        night.settings["encrypt"] = f"sleep {HANG_SECONDS}; cp ${{input}} ${{output}}"
    night.settings |= CHILD_DEADLINE
    return previous


@pytest.mark.slow
@NEEDS_CBACK3
def test_attack7_hanging_children_fail_the_night_in_bounded_time(
    night: Night, s3: Any, target: RootTarget, attacker: pwd.struct_passwd, tempDir: Path, endpoint: str
) -> None:
    """Two nights at once (one wall limit for both): one whose ``gpg`` (first on PATH) never answers, one whose
    ``<encrypt>`` command (run as the backup user) never exits. Each must fail by itself in bounded time (the
    deadline setting, ``CHILD_DEADLINE``), with no indicator and the previous copy intact, not wait forever."""
    files = legitimateFiles()
    hanging = night.root / "hang-bin"
    hanging.mkdir()
    shutil.copy(ATTACKERS / "gpg_sleeps.py", hanging / "gpg")
    (hanging / "gpg").chmod(0o755)
    with attackTree(attacker) as otherTree:
        other = attackNight(otherTree, newBucketName(), endpoint, attacker)
        s3.create_bucket(Bucket=other.bucket)
        nights = {"gpg": night, "encrypt": other}
        needles = {"gpg": str(hanging / "gpg"), "encrypt": f"sleep {HANG_SECONDS}"}
        previous = {how: hangingNight(each, s3, attacker, target, how, files) for how, each in nights.items()}
        children = {
            "gpg": childNight(night, tempDir, str(hanging)),
            "encrypt": childNight(other, tempDir),
        }
        try:
            deadline = time.monotonic() + HANG_WALL_LIMIT
            statuses = {how: child.wait(max(1.0, deadline - time.monotonic())) for how, child in children.items()}
            problems = []
            for how, status in statuses.items():
                if status is None:
                    problems.append(f"the night with a hanging {how} ran past {HANG_WALL_LIMIT:.0f} s and was killed")
                elif status == 0:
                    problems.append(f"the night with a hanging {how} claimed success")
                failures = defenceFailures(nights[how], s3, target, previous[how], True, files)
                problems += [f"{how}: {failure}" for failure in failures]
            # a deadline that kills only ``su`` leaves its session (sh, sleep) running as the backup user
            left = {how: processesMatching(needle) for how, needle in needles.items()}
            problems += [f"{how}: processes left running after the night: {pids}" for how, pids in left.items() if pids]
            assert problems == [], "\n".join(problems)
        finally:
            for child in children.values():
                child.close()
            for needle in needles.values():
                killAll(processesMatching(needle))


# -- 8. leftovers of a night killed mid-upload --------------------------------------------------------------------


@NEEDS_CBACK3
def test_attack8_leftovers_of_a_killed_night_are_gone_after_the_next(
    night: Night,
    s3: Any,
    target: RootTarget,
    attacker: pwd.struct_passwd,
    proxy: FaultProxy,
    tempDir: Path,
    moto: MotoServer,
) -> None:
    """cback3 SIGKILLed while a PUT of the day is held: its work area (with ciphertext in flight) and its private
    GnuPG home stay behind. The next night must store the day and leave neither behind."""
    files = legitimateFiles()
    stageFiles(night, attacker, files)
    passphrase = writePassphraseFile(target.path.parent / "passphrase")
    night.settings |= {"gpg_passphrase_file": str(passphrase), "gpg_s2k_count": 65536}
    held = proxy.add_rule(delay(NIGHT_WALL_LIMIT), method="PUT", path=keyPath(night, "localhost/blob.tar"))
    first = childNight(night, tempDir)
    try:
        waitFor(lambda: held.injected >= 1 or first.process is None or first.process.poll() is not None, 60, "PUT")
        assert held.injected >= 1, "the night never reached the upload:\n" + first.text()
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(NIGHT_WALL_LIMIT) == -signal.SIGKILL
    finally:
        first.close()
    proxy.clear_rules()
    proxy.sever_all()
    killed = sorted(p.name for p in night.workDir.glob("cedar-s3-*")) + sorted(p.name for p in tempDir.iterdir())
    killed += [f"{len(processesMatching(f'--homedir {tempDir}/'))} gpg process(es)"]
    night.settings["sweep_after_minutes"] = 0  # sweep whatever no live night holds, however fresh
    second = childNight(night, tempDir)
    try:
        status = second.wait(NIGHT_WALL_LIMIT)
        assert status == 0, second.text()
    finally:
        second.close()
    stored = dayObjects(s3, night)
    home = newHome(night.root / "decrypt")
    try:
        for relative, data in files.items():
            assert decrypt(stored[night.key(relative)], passphraseFile=passphrase, home=home) == data
    finally:
        stopAgent(home)
        shutil.rmtree(home)
    assert night.indicator().exists()
    left = sorted(p.name for p in night.workDir.glob("cedar-s3-*")) + sorted(p.name for p in tempDir.iterdir())
    assert left == [], f"left behind after the next night (the killed night left {killed})"
    waitFor(lambda: processesMatching(f"--homedir {tempDir}/") == [], 5, "the private homes' gpg-agents to exit")


# -- 9. secrets in the children's environments --------------------------------------------------------------------

SECRET_NAMES = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN")


@pytest.mark.parametrize("mode", ["encrypt-command", "native-gpg"])
def test_attack9_children_never_see_aws_credentials(
    mode: str,
    night: Night,
    s3: Any,
    target: RootTarget,
    attacker: pwd.struct_passwd,
    tree: Path,
    tempDir: Path,
) -> None:
    """The night holds AWS credentials in its environment; no child it starts (the ``<encrypt>`` command as the
    backup user, or gpg) may inherit them: each child dumps its whole environment and none of the names is there."""
    files = legitimateFiles()
    stageFiles(night, attacker, files)
    dumps = tree / "dumps"
    dumps.mkdir()
    path = os.environ["PATH"]
    if mode == "encrypt-command":
        os.chown(dumps, attacker.pw_uid, attacker.pw_gid)
        night.settings["encrypt"] = f"env > {dumps}/env-$$.txt; cp ${{input}} ${{output}}"
    else:
        shutil.copy(ATTACKERS / "gpg_envdump.py", dumps / "gpg")
        (dumps / "gpg").chmod(0o755)
        passphrase = writePassphraseFile(target.path.parent / "passphrase")
        night.settings |= {"gpg_passphrase_file": str(passphrase), "gpg_s2k_count": 65536}
        path = f"{dumps}:{path}"
    with environment(AWS_SESSION_TOKEN="cedar-attack-session-token", PATH=path):
        night.run()
    seen = sorted(p.name for p in dumps.glob("env-*"))
    assert seen, "no child of the night dumped its environment"
    leaked = {}
    for dump in dumps.glob("env-*"):
        text = dump.read_text()
        names = json.loads(text).keys() if dump.suffix == ".json" else {line.split("=")[0] for line in text.split()}
        leaked[dump.name] = sorted(set(names) & set(SECRET_NAMES))
    assert all(names == [] for names in leaked.values()), f"credentials in child environments: {leaked}"
    assert bucketContains(s3, night.bucket, target.content) == []


# -- 10. the store indicator planted as a symlink -----------------------------------------------------------------


def test_attack10_planted_indicator_symlink_does_not_truncate_root_file(
    night: Night, s3: Any, target: RootTarget, attacker: pwd.struct_passwd, swapper: Attacker
) -> None:
    """``cback.amazons3 -> /root/.../secret`` planted in the day: writing the indicator by path truncates the
    target and chowns it to the backup user."""
    files = legitimateFiles()
    day = stageFiles(night, attacker, files)
    previous = storeGoodNight(night, s3)
    assert swapper.command(op="symlink", path=str(day / "cback.amazons3"), target=str(target.path)) == "ok"
    error = runNight(night)
    problems = defenceFailures(night, s3, target, previous, error is not None, files)
    if error is None and not isIndicator(night.indicator()):
        problems.append("a successful night left the planted symlink as its indicator")
    assert problems == []


def test_descendants_finds_a_grandchild(tmp_path: Path) -> None:
    """The kit's own check: a killed night's children are found by pid (they must not outlive the test)."""
    script = "import subprocess,sys; subprocess.run(['sleep','30']); sys.exit(0)"
    child = ChildNight(["/usr/bin/python3", "-c", script], {"PATH": "/usr/bin:/bin"}).start()
    try:
        waitFor(lambda: descendants(child.pid) != [], 10, "the grandchild")
        grandchild = descendants(child.pid)[0]
        child.kill()
        waitFor(lambda: not Path(f"/proc/{grandchild}").exists() or _isZombie(grandchild), 10, "the grandchild's end")
    finally:
        child.close()


def _isZombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
