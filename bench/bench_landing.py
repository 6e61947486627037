"""Median time of one `land_ticket` (one new file, one commit, no checkout to bring along)
over N landings on a fresh repository.

    .venv/bin/python bench/bench_landing.py 60

Compare two versions by running it with each on PYTHONPATH, alternately (BENCHMARKS.md).
"""
import statistics, subprocess, sys, tempfile, time
from pathlib import Path
import sage_stream
from sage_stream.engine.landing import commit_message, land_ticket
from sage_stream.git import Git
from sage_stream.tickets.models import Ticket
n = int(sys.argv[1])
root = Path(tempfile.mkdtemp()); repo = root / "r"; repo.mkdir()
def sh(*a): subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True)
sh("init", "-q", "-b", "main"); sh("config", "user.name", "b"); sh("config", "user.email", "b@b")
(repo / "README").write_text("x\n"); sh("add", "README"); sh("commit", "-qm", "init")
git = Git(repo, worktree_lock=repo / ".sage/wt.lock")
work = repo / ".sage/work"; git.worktree_add_detached(work, "main")
times = []
for i in range(n):
    base = git.rev_parse("main")
    git.run("checkout", "-q", "--detach", base, cwd=work)
    (work / f"f{i}.txt").write_text(f"{i}\n")
    tip = git.snapshot(work, "w")
    t = Ticket.model_validate({"id": f"T-{i}", "title": "Add a file", "state": "IN_PROGRESS", "type": "implementation"})
    start = time.perf_counter()
    r = land_ticket(git, target_branch="main", ticket_tip=tip, base=base, ticket=t,
                    message=commit_message(t, summary="wrote a file"), allowed_globs=[], allow_empty=False,
                    landing_lock=repo / ".sage/commit.lock", check_earlier=False)
    times.append(time.perf_counter() - start)
    assert r.outcome == "landed", r
print(f"{Path(sage_stream.__file__).parent.parent}: median {statistics.median(times)*1000:.1f} ms per landing over {n}")
