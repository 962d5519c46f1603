"""Checks what the schema linters cannot: that the shipped cluster
definitions (docs/ci/memeval-sharded.yml, docs/k8s/*.yaml) agree with
themselves and with memeval's flags. Exit 1 with every problem named.

usage: cluster_defs.py REPO_ROOT
"""

import pathlib
import sys

import yaml

root = pathlib.Path(sys.argv[1])
problems = []


def check(ok, what):
    if not ok:
        problems.append(what)


# GitHub Actions: the matrix's shards are 0..N-1 (strategy.job-index), the
# shard jobs read them from the environment, and the merge job downloads
# every shard's artifact into one folder, which it merges.
wf_path = root / "docs/ci/memeval-sharded.yml"
wf = yaml.safe_load(wf_path.read_text())
jobs = wf["jobs"]
shard = jobs["shard"]
shards = shard["strategy"]["matrix"]["shard"]
check(shards == list(range(len(shards))), f"{wf_path}: matrix shards {shards} are not 0..N-1")
run_step = next(s for s in shard["steps"] if "run" in s and "memeval" in s["run"])
check("--shard-from-env" in run_step["run"], f"{wf_path}: the shard step does not pass --shard-from-env")
check(run_step["env"].get("MEMEVAL_SHARD_INDEX") == "${{ strategy.job-index }}",
      f"{wf_path}: MEMEVAL_SHARD_INDEX is not strategy.job-index")
check(run_step["env"].get("MEMEVAL_SHARD_COUNT") == "${{ strategy.job-total }}",
      f"{wf_path}: MEMEVAL_SHARD_COUNT is not strategy.job-total")
uploads = [s for s in shard["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
check(len(uploads) == 1 and uploads[0]["with"]["name"].startswith("memeval-shard-"),
      f"{wf_path}: each shard uploads one memeval-shard-* artifact")
merge = jobs["merge-and-gate"]
check(merge["needs"] == "shard", f"{wf_path}: the merge job does not wait for the shards")
downloads = [s["with"] for s in merge["steps"] if s.get("uses", "").startswith("actions/download-artifact")]
shard_dl = [d for d in downloads if d.get("pattern") == "memeval-shard-*"]
check(len(shard_dl) == 1 and not shard_dl[0].get("merge-multiple", False),
      f"{wf_path}: the merge job must download every shard, a folder each")
merge_run = next(s["run"] for s in merge["steps"] if "run" in s and " merge " in s["run"])
check(f"merge {shard_dl[0]['path']} " in merge_run if shard_dl else False,
      f"{wf_path}: the merge does not read the folder the shards download to")

# Kubernetes: an Indexed Job whose count is memeval's, writing a folder
# per index into the folder the merge Job reads.
k8s = root / "docs/k8s"
job = yaml.safe_load((k8s / "memeval-shards.yaml").read_text())
spec = job["spec"]
check(spec.get("completionMode") == "Indexed", "memeval-shards.yaml: not an Indexed Job")
container = spec["template"]["spec"]["containers"][0]
env = {e["name"]: e.get("value") for e in container.get("env", [])}
check(env.get("MEMEVAL_SHARD_COUNT") == str(spec["completions"]),
      f"memeval-shards.yaml: MEMEVAL_SHARD_COUNT {env.get('MEMEVAL_SHARD_COUNT')} is not completions {spec['completions']}")
args = container["args"]
check(args[0] == "run" and "--shard-from-env" in args, "memeval-shards.yaml: not `memeval run --shard-from-env`")
out = args[args.index("--out") + 1]
check(out.endswith("$(JOB_COMPLETION_INDEX)"), f"memeval-shards.yaml: --out {out} is not a folder per index")
shards_dir = out.rsplit("/", 1)[0]
merge_job = yaml.safe_load((k8s / "memeval-merge.yaml").read_text())
margs = merge_job["spec"]["template"]["spec"]["containers"][0]["args"]
check(margs[:2] == ["merge", shards_dir], f"memeval-merge.yaml: does not merge {shards_dir}")
merged = margs[margs.index("--out") + 1]
check(not merged.startswith(shards_dir + "/"), "memeval-merge.yaml: --out is inside the shards' folder")
pvc = yaml.safe_load((k8s / "memeval-results-pvc.yaml").read_text())
claim = pvc["metadata"]["name"]
for name, doc in [("memeval-shards.yaml", job), ("memeval-merge.yaml", merge_job)]:
    vols = doc["spec"]["template"]["spec"]["volumes"]
    check(any(v.get("persistentVolumeClaim", {}).get("claimName") == claim for v in vols),
          f"{name}: does not mount the claim {claim}")
check("ReadWriteMany" in pvc["spec"]["accessModes"], "memeval-results-pvc.yaml: shards write at once: ReadWriteMany")

if problems:
    sys.exit("\n".join(problems))
print("cluster definitions: consistent")
