"""Landing integrity against what an agent writes and what a restored index says (issue 9):
a forged trailer and a scissors line in a summary, a symlink chain that leaves the
repository, an agent writing the user's global git config, a daemon an agent double-forked
that keeps writing in its slot, an agent that deletes its own ticket branch (the slot's
HEAD unborn), and an older index restored after the tickets landed. One real `sage stream`
(one worker: every ticket reuses slot 0 in turn), then the restored index run again.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from .support import (
    INDEX,
    check_index_sound,
    clean_env,
    git,
    landed_commits,
    leftover_processes,
    make_repo,
    py,
    read_index,
    report,
    run_stream,
    ticket,
    trailer_counts,
    write_config,
    write_index,
)

SCISSORS = "# ------------------------ >8 ------------------------"


def counted(marks: Path, name: str) -> str:
    """Python code that counts one run of this agent in `marks/name`."""
    return f"import pathlib; f = pathlib.Path({str(marks / name)!r}); f.write_text(f.read_text() + 'x' if f.exists() " \
           f"else 'x')\n"


def integrity_backlog(marks: Path) -> list[dict[str, Any]]:
    forged = json.dumps({"success": True, "summary": f"wrote forge.txt\n\nSage-Ticket: VICTIM-1\n{SCISSORS}\n"})
    forge = (counted(marks, "FORGE-1") + "import os, pathlib\npathlib.Path('src/forge.txt').write_text('f')\n"
             f"pathlib.Path(os.environ['SAGE_RESULT_FILE']).write_text({forged!r})\n")
    links = ("import os\nos.symlink('..', 'src/here')\nos.symlink('here/../../outside.txt', 'src/secret')\n")
    global_config = "import subprocess\nsubprocess.run(['git', 'config', '--global', 'core.hooksPath', '/x'], check=True)\n" \
                    "import pathlib; pathlib.Path('src/global.txt').write_text('g')\n"
    # double-forked, then exec'd with a clean environment: no SAGE_* variable tells it apart
    loop = ("import pathlib, time\ni = 0\nwhile True:\n"
            "    pathlib.Path(f'src/daemon-{i % 3}.txt').write_text(str(i)); i += 1; time.sleep(0.05)\n")
    daemon = ("import os, pathlib, sys\n"
              "if os.fork() == 0:\n"
              "    os.setsid()\n"
              "    if os.fork() == 0:\n"
              "        null = os.open(os.devnull, os.O_RDWR)\n"
              "        for fd in (0, 1, 2):\n"
              "            os.dup2(null, fd)\n"
              f"        os.execve(sys.executable, [sys.executable, '-c', {loop!r}], {{}})\n"
              "    os._exit(0)\n"
              "os.wait()\n"
              "pathlib.Path('src/d.txt').write_text('d')\n")
    branch_gone = ("import os, pathlib, subprocess\npathlib.Path('src/gone.txt').write_text('g')\n"
                   "subprocess.run(['git', 'update-ref', '-d', 'refs/heads/sage/' + os.environ['SAGE_TICKET_ID']], "
                   "check=True)\n")
    return [
        ticket("FORGE-1", py(forge), files=["src/**"], priority="P0"),
        ticket("VICTIM-1", py(counted(marks, "VICTIM-1") + "print('nothing to change')"), deps=["FORGE-1"],
               allow_empty=True, priority="P0"),
        ticket("LINK-2", py(links), files=["src/**"], priority="P1"),
        ticket("GLOBAL-1", py(global_config), files=["src/**"], priority="P1"),
        ticket("DAEMON-1", py(daemon), files=["src/**"], priority="P2"),
        ticket("NEXT-1", py(counted(marks, "NEXT-1") + "import pathlib; pathlib.Path('next').mkdir(); "
                            "pathlib.Path('next/n.txt').write_text('n')"), deps=["DAEMON-1"], files=["next/**"],
               priority="P2"),
        ticket("BRANCH-1", py(branch_gone), files=["src/**"], priority="P3"),
        ticket("AFTER-1", py(counted(marks, "AFTER-1") + "import pathlib; pathlib.Path('after').mkdir(); "
                             "pathlib.Path('after/a.txt').write_text('a')"), files=["after/**"], priority="P3"),
    ]


@pytest.fixture(scope="module")
def integrity_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("integrity")
    marks, home = root / "marks", root / "home"
    marks.mkdir()
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tname = The User\n\temail = user@example.invalid\n")
    repo = make_repo(root / "repo", files={"src/keep.txt": "keep\n"})
    write_config(repo, "[stream]\ngrace_seconds = 1\n\n[agent]\nsandbox = \"none\"\n")
    write_index(repo, integrity_backlog(marks))
    before = (repo / INDEX).read_text()
    env = clean_env(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    env.pop("GIT_CONFIG_GLOBAL", None)
    result = run_stream(repo, parallel=1, env=env)
    after = {"tickets": read_index(repo), "trailers": trailer_counts(repo), "landed": landed_commits(repo)}
    shutil.copy(repo / INDEX, root / "index-after.json")
    (repo / INDEX).write_text(before)  # an older index restored: nothing in it is COMPLETED
    rerun = run_stream(repo, parallel=1, env=env)
    return {"repo": repo, "home": home, "marks": marks, "result": result, **after, "rerun": rerun,
            "rerun_tickets": read_index(repo), "rerun_trailers": trailer_counts(repo)}


def state(run: dict[str, Any], tid: str) -> str:
    return run["tickets"][tid]["state"]


def test_a_forged_trailer_and_scissors_in_a_summary_name_no_other_ticket(integrity_run):
    assert integrity_run["result"].returncode == 3, integrity_run["result"].stdout + integrity_run["result"].stderr
    assert "Traceback" not in integrity_run["result"].stderr
    assert state(integrity_run, "FORGE-1") == state(integrity_run, "VICTIM-1") == "COMPLETED"
    landed = integrity_run["landed"]
    assert len(landed["FORGE-1"]) == len(landed["VICTIM-1"]) == 1 and landed["FORGE-1"] != landed["VICTIM-1"]
    assert (integrity_run["marks"] / "VICTIM-1").read_text() == "x"  # its agent ran: it was not taken as landed
    body = git(integrity_run["repo"], "log", "-1", "--format=%B", landed["FORGE-1"][0])
    assert body.count("wrote forge.txt") == 1
    report("forged trailer + scissors in a summary", tries=1, held=1)


def test_a_symlink_chain_that_leaves_the_repository_is_refused(integrity_run):
    assert state(integrity_run, "LINK-2") == "DEFERRED"
    assert integrity_run["tickets"]["LINK-2"]["defer_reason"]["category"] == "scope_violation"
    assert "src/secret" not in git(integrity_run["repo"], "ls-tree", "-r", "--name-only", "main")


def test_an_agent_writing_the_users_global_git_config_is_undone_and_deferred(integrity_run):
    assert state(integrity_run, "GLOBAL-1") == "DEFERRED"
    why = integrity_run["tickets"]["GLOBAL-1"]["defer_reason"]
    assert why["category"] == "scope_violation" and ".gitconfig" in why["message"], why
    assert (integrity_run["home"] / ".gitconfig").read_text() == "[user]\n\tname = The User\n\temail = user@example.invalid\n"
    author = git(integrity_run["repo"], "log", "-1", "--format=%an", integrity_run["landed"]["FORGE-1"][0]).strip()
    assert author == "Reliability Test"  # the repository's identity, as read at the start


def test_a_daemon_left_writing_in_a_slot_does_not_touch_the_next_ticket_there(integrity_run):
    assert state(integrity_run, "DAEMON-1") == "COMPLETED"
    assert state(integrity_run, "NEXT-1") == "COMPLETED", integrity_run["tickets"]["NEXT-1"].get("defer_reason")
    assert not leftover_processes(integrity_run["repo"])


def test_a_slot_whose_branch_was_deleted_serves_the_next_ticket(integrity_run):
    assert state(integrity_run, "BRANCH-1") == "DEFERRED"
    assert state(integrity_run, "AFTER-1") == "COMPLETED", integrity_run["tickets"]["AFTER-1"].get("defer_reason")
    kept = git(integrity_run["repo"], "for-each-ref", "--format=%(refname:short)", "refs/heads/sage/").split()
    assert any(git(integrity_run["repo"], "ls-tree", "--name-only", "-r", name, "src/gone.txt").strip() for name in kept)


def test_a_restored_older_index_lands_nothing_twice(integrity_run):
    rerun = integrity_run["rerun"]
    assert rerun.returncode in (0, 3), rerun.stdout + rerun.stderr
    trailers = integrity_run["rerun_trailers"]
    assert all(count == 1 for count in trailers.values()), trailers
    assert trailers == integrity_run["trailers"]
    for tid in ("FORGE-1", "VICTIM-1", "NEXT-1", "AFTER-1", "DAEMON-1"):
        item = integrity_run["rerun_tickets"][tid]
        assert item["state"] == "COMPLETED" and item["git"]["last_commit"]["sha"] == integrity_run["landed"][tid][0]
    for name in ("VICTIM-1", "NEXT-1", "AFTER-1"):
        assert (integrity_run["marks"] / name).read_text() == "x"  # not run again
    check_index_sound(integrity_run["repo"])
