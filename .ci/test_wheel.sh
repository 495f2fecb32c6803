#!/usr/bin/env bash
# `make test-wheel`: vidgen as a user installs it, checked from a folder outside the repository.
#
#   1. builds the wheel from a copy of this checkout's pyproject.toml, README.md, vidgen/ and conf/ (so no
#      stale build/ folder can leak into it), with the development environment's setuptools (offline);
#   2. checks that the wheel holds every YAML file of conf/ (as vidgen/conf/...) and the console scripts;
#   3. installs it, without dependencies, into a new virtual environment; the third-party packages are the
#      development environment's, reused read-only through a .pth file (nothing downloaded or copied; the
#      development environment's editable vidgen is not seen: its .pth hook is not run there);
#   4. from a temporary folder outside the repository: vidgen is imported from the new environment (not from
#      the repository) and reads its configs there, every console script starts (`--help` composes its
#      config), and `python -m vidgen.train trainer.max_steps=2` (the default config; 2 final samples of 10
#      sampler steps) trains and writes checkpoints/last.ckpt and samples/final/.
#
# Usage: .ci/test_wheel.sh [PYTHON of the development environment, default .venv/bin/python]
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
dev_python="${1:-.venv/bin/python}"
case "$dev_python" in /*) ;; *) dev_python="$repo/$dev_python" ;; esac
start=$SECONDS

fail() {
    echo "test-wheel: FAIL: $*" >&2
    exit 1
}

work="$(mktemp -d "${TMPDIR:-/tmp}/vidgen-wheel.XXXXXX")"
trap 'rm -rf "$work"' EXIT
case "$work/" in "$repo"/*) fail "the temporary folder $work is inside the repository" ;; esac

# 1. build
mkdir "$work/src"
cp -R "$repo/pyproject.toml" "$repo/README.md" "$repo/vidgen" "$repo/conf" "$work/src/"
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
"$dev_python" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$work/dist" "$work/src" \
    || fail "could not build the wheel"
wheel="$(ls "$work"/dist/vidgen-*.whl)"

# 2. contents
"$dev_python" - "$wheel" "$repo/conf" <<'EOF'
import sys
import zipfile
from pathlib import Path

wheel, conf = Path(sys.argv[1]), Path(sys.argv[2])
archive = zipfile.ZipFile(wheel)
names = set(archive.namelist())
wanted = {f"vidgen/conf/{path.relative_to(conf).as_posix()}" for path in conf.rglob("*.yaml")}
missing = sorted(wanted - names)
if missing:
    sys.exit(
        f"test-wheel: FAIL: {len(missing)} of the {len(wanted)} YAML files of conf/ are not in {wheel.name} "
        f"(e.g. {', '.join(missing[:3])}): an installed vidgen would find no configs"
    )
entry_points = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
text = archive.read(entry_points).decode() if entry_points else ""
scripts = [f"vidgen-{cli} = vidgen.{cli}:main" for cli in ("train", "sample", "evaluate", "bench", "precompute")]
absent = [line for line in scripts if line not in text]
if absent:
    sys.exit(f"test-wheel: FAIL: {wheel.name} lacks the console scripts {absent}")
print(f"test-wheel: {wheel.name} holds all {len(wanted)} YAML files of conf/ as vidgen/conf/ and the console "
      "scripts vidgen-train, vidgen-sample, vidgen-evaluate, vidgen-bench, vidgen-precompute")
EOF

# 3. install into a new environment
"$dev_python" -m venv --without-pip "$work/venv"
python="$work/venv/bin/python"
"$dev_python" -m pip --python "$python" install --quiet --no-deps "$wheel" || fail "could not install $wheel"
site="$("$python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
"$dev_python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))' >"$site/vidgen_test_dependencies.pth"

# 4. use it from outside the repository
mkdir "$work/run"
cd "$work/run"
unset PYTHONPATH PYTHONHOME
export VIDGEN_OUTPUT_DIR="$work/run/outputs"
"$python" - "$repo" "$site" <<'EOF'
import sys
from pathlib import Path

import vidgen
from vidgen.runtime import CONFIG_DIR

repo, site = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
package = Path(vidgen.__file__).resolve().parent
if package != site / "vidgen":
    sys.exit(f"test-wheel: FAIL: vidgen was imported from {package}, not from the installed wheel in {site}")
if Path(CONFIG_DIR) != package / "conf" or not (package / "conf" / "train.yaml").is_file():
    sys.exit(f"test-wheel: FAIL: the installed vidgen reads its configs from {CONFIG_DIR}, not {package / 'conf'}")
print(f"test-wheel: from {Path.cwd()}: vidgen is imported from {package} (not from {repo}), configs from {CONFIG_DIR}")
EOF
# the five --help runs are mostly start-up (imports): run them side by side. Every run has a time limit
# (coreutils `timeout`, exit status 124): a hang fails this check instead of holding CI until its own limit
clis=(train sample evaluate bench precompute)
pids=()
for cli in "${clis[@]}"; do
    timeout 300 "$work/venv/bin/vidgen-$cli" --help >"$work/help-$cli.txt" 2>&1 &
    pids+=("$!")
done
for i in "${!clis[@]}"; do
    help="$work/help-${clis[$i]}.txt"
    wait "${pids[$i]}" || {
        tail -n 20 "$help" >&2
        fail "vidgen-${clis[$i]} --help failed"
    }
    grep -q "Powered by Hydra" "$help" || fail "vidgen-${clis[$i]} --help printed no Hydra help"
done
echo "test-wheel: vidgen-train, vidgen-sample, vidgen-evaluate, vidgen-bench, vidgen-precompute --help compose their configs"
# the default config (the tiny synthetic recipe); only the final sampling is shortened (2 videos, 10 steps)
train_args=(trainer.max_steps=2 samples.final_num_videos=2 sampler.steps=10)
timeout 600 "$python" -m vidgen.train "${train_args[@]}" >"$work/train.txt" 2>&1 || {
    tail -n 30 "$work/train.txt" >&2
    fail "python -m vidgen.train ${train_args[*]} failed"
}
run_dir="$(ls -d "$VIDGEN_OUTPUT_DIR"/train/runs/*/ 2>/dev/null | head -n 1 || true)"
[ -n "$run_dir" ] && [ -f "$run_dir/checkpoints/last.ckpt" ] && [ -f "$run_dir/samples/final/grid.mp4" ] \
    && grep -q "Done in .* (2 steps)" "$work/train.txt" \
    || fail "python -m vidgen.train ${train_args[*]} did not train 2 steps and write last.ckpt and the samples"
echo "test-wheel: python -m vidgen.train ${train_args[*]} trained 2 steps and wrote" \
    "${run_dir#"$work/run/"}checkpoints/last.ckpt and samples/final/"
echo "test-wheel: passed in $((SECONDS - start)) s"
